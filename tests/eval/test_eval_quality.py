"""SI-SDR, PESQ, STOI and DNSMOS on known cases: identical signals and clean vs noisy speech."""

import numpy as np
import pytest

from metis_speech.audio import load_audio
from metis_speech.eval import dsp
from metis_speech.eval.quality import PESQ_MAX, dnsmos, pesq_wb, si_sdr, stoi

from .speech import SR, add_noise


@pytest.fixture(scope="module")
def speech(clips):
    return load_audio(clips[("slt", "a")], SR)[0]


def test_si_sdr_known_values(speech):
    assert si_sdr(speech, speech) > 90  # identical: limited only by the epsilon
    assert si_sdr(0.3 * speech, speech) > 90  # scale-invariant
    noise = np.random.default_rng(0).standard_normal(len(speech))
    noisy = speech + noise * np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10)  # exactly 10 dB SNR
    assert si_sdr(noisy, speech) == pytest.approx(10.0, abs=0.3)
    assert si_sdr(noisy[:-100], speech) == pytest.approx(10.0, abs=0.3)  # trimmed to common length


def test_pesq_stoi_identical_signals_hit_their_maximum(speech):
    assert pesq_wb(speech, speech) == pytest.approx(PESQ_MAX, abs=0.01)
    assert stoi(speech, speech) == pytest.approx(1.0, abs=1e-4)
    assert stoi(speech, speech, extended=True) == pytest.approx(1.0, abs=1e-4)


def test_pesq_nan_on_silence(speech):
    assert np.isnan(pesq_wb(np.zeros_like(speech), np.zeros_like(speech)))


def test_intrusive_metrics_order_clean_over_noisy(speech):
    scores = {}
    for snr in (30, 10, 0):
        x = add_noise(speech, snr, seed=snr)
        scores[snr] = (pesq_wb(speech, x), stoi(speech, x), stoi(speech, x, extended=True), si_sdr(x, speech))
    for i, name in enumerate(("pesq", "stoi", "estoi", "si_sdr")):
        assert scores[30][i] > scores[10][i] > scores[0][i], (name, scores)


def test_dnsmos_clean_over_noisy(speech):
    clean = dnsmos(speech, SR)
    noisy = dnsmos(add_noise(speech, 5, seed=1), SR)
    assert set(clean) == {"sig", "bak", "ovrl", "p808"}
    for k in ("bak", "ovrl", "p808"):
        assert clean[k] > noisy[k] + 0.3, (k, clean, noisy)
    assert all(1.0 <= v <= 5.0 for v in (*clean.values(), *noisy.values()))


def test_dnsmos_accepts_other_rates_and_silence(speech):
    from metis_speech.audio import resample

    at_24k = dnsmos(resample(speech, SR, 24000), 24000)
    assert at_24k["ovrl"] == pytest.approx(dnsmos(speech, SR)["ovrl"], abs=0.1)
    assert all(np.isnan(v) for v in dnsmos(np.zeros(SR, np.float32)).values())


def test_mel_helpers_match_the_librosa_definition():
    # closed-form checks of the librosa-compatible features used by DNSMOS and resemblyzer
    fb = dsp.mel_filterbank(16000, 400, 40)
    assert fb.shape == (40, 201) and (fb >= 0).all() and (fb.sum(axis=1) > 0).all()
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    power = dsp.stft_power(tone, 400, 160)
    assert power.shape == (201, 101)  # centred frames: 1 + S // hop
    assert int(power[:, 50].argmax()) == 25  # 1 kHz at 40 Hz per bin
    # Parseval: a periodic-Hann frame of a unit sine has energy sum(w^2)/2 spread over +-f
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    assert power[:, 50].sum() == pytest.approx(400 * np.sum(w**2) / 2 / 2, rel=0.02)
    db = dsp.power_to_db(np.array([1.0, 1e-3, 1e-20]))
    np.testing.assert_allclose(db, [0.0, -30.0, -80.0], atol=1e-6)
