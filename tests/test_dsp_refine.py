"""dsp.wiener_refine and dsp.lsa_refine: a noisy recording filtered with the help of a speech
estimate (SE's refine="wiener" / "lsa")."""

import numpy as np
import pytest

from metis_speech.dsp import _floor_bias, lsa_refine, wiener_refine
from tests.pipeline.conftest import speechlike

SR = 16000


def _si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    a = float(est @ ref) / float(ref @ ref)
    e = est - a * ref
    return 10 * np.log10(float((a * ref) @ (a * ref)) / float(e @ e))


def _bursts(seconds: float = 3.0) -> np.ndarray:
    """Speech-like bursts with pauses between them (where only the noise sounds)."""
    x = speechlike(seconds, SR)
    gate = (np.sin(2 * np.pi * 1.5 * np.arange(x.size) / SR) > 0).astype(np.float32)
    return (x * gate).astype(np.float32)


def test_a_good_estimate_removes_stationary_noise_and_keeps_the_speech():
    clean = _bursts()
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(clean.size).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-5 / 20)  # 5 dB SNR
    noisy = clean + noise
    # an estimate with the right spectrum but not the recording's waveform: other phase, other level
    est = 0.3 * np.roll(clean, 40)
    out = wiener_refine(noisy, est, SR)
    assert out.shape == noisy.shape and out.dtype == np.float32
    gain = _si_sdr(clean, out) - _si_sdr(clean, noisy)
    assert gain > 3.0, gain
    pauses = np.sin(2 * np.pi * 1.5 * np.arange(clean.size) / SR) < -0.5  # well inside the pauses
    assert np.mean(out[pauses] ** 2) < 0.1 * np.mean(noisy[pauses] ** 2)  # noise there is 10 dB down or more


def test_an_empty_estimate_leaves_the_floor_and_the_floor_bounds_the_gain():
    rng = np.random.default_rng(1)
    noisy = rng.standard_normal(SR).astype(np.float32) * 0.1
    quiet = wiener_refine(noisy, np.zeros(SR, np.float32), SR, floor=0.1)
    assert np.sqrt(np.mean(quiet**2) / np.mean(noisy**2)) == pytest.approx(0.1, rel=0.05)
    same = wiener_refine(noisy, np.zeros(SR, np.float32), SR, floor=1.0)
    np.testing.assert_allclose(same, noisy, atol=1e-5)  # gain 1 everywhere: the input back


def test_lengths_and_bad_arguments():
    x = _bursts(1.0)
    assert wiener_refine(x, x[:1000], SR).shape == x.shape  # a short estimate is padded with silence
    assert wiener_refine(x, np.concatenate([x, x]), SR).shape == x.shape  # a long one is cut
    np.testing.assert_array_equal(wiener_refine(x[:100], x[:100], SR), x[:100])  # shorter than a frame: unchanged
    with pytest.raises(ValueError, match="floor"):
        wiener_refine(x, x, SR, floor=1.5)
    with pytest.raises(ValueError, match="percentile"):
        wiener_refine(x, x, SR, noise_percentile=0)
    with pytest.raises(ValueError, match="mono"):
        wiener_refine(np.stack([x, x]), x, SR)


def _noisy_bursts(snr_db: float = 5.0, seed: int = 0):
    clean = _bursts()
    noise = np.random.default_rng(seed).standard_normal(clean.size).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    return clean, clean + noise


def test_lsa_removes_stationary_noise_with_or_without_an_estimate():
    clean, noisy = _noisy_bursts()
    pauses = np.sin(2 * np.pi * 1.5 * np.arange(clean.size) / SR) < -0.5
    alone = lsa_refine(noisy, None, SR)  # the recording's own SNR estimate: a classical enhancer
    guided = lsa_refine(noisy, 0.3 * np.roll(clean, 40), SR)  # + an estimate with the right spectrum
    for out in (alone, guided):
        assert out.shape == noisy.shape and out.dtype == np.float32
        assert _si_sdr(clean, out) - _si_sdr(clean, noisy) > 3.0
        assert np.mean(out[pauses] ** 2) < 0.05 * np.mean(noisy[pauses] ** 2)  # 13 dB down or more
    assert _si_sdr(clean, guided) > _si_sdr(clean, alone)  # a good estimate helps
    np.testing.assert_array_equal(lsa_refine(noisy, clean, SR, speech_weight=0.0), alone)  # weight 0: no estimate


def test_lsa_leaves_clean_speech_alone_and_floors_pure_noise():
    clean = _bursts()
    kept = lsa_refine(clean, clean, SR)  # no noise floor (the pauses are digital silence)
    assert _si_sdr(clean, kept) > 25.0
    noise = np.random.default_rng(2).standard_normal(SR).astype(np.float32) * 0.1
    out = lsa_refine(noise, None, SR, floor=0.05)
    assert np.sqrt(np.mean(out**2) / np.mean(noise**2)) < 0.25  # 12 dB down or more (measured: 0.17)
    np.testing.assert_allclose(lsa_refine(noise, None, SR, floor=1.0), noise, atol=1e-5)  # gain 1: the input back


def test_lsa_noise_floor_is_unbiased_for_white_noise():
    """The percentile of a smoothed periodogram sits well under the mean power; the measured
    bias factor is below 1, the same on each call, and larger with more smoothing."""
    raw, smoothed = _floor_bias(512, (1, 1), 10.0), _floor_bias(512, (3, 5), 10.0)
    assert 0.05 < raw < 0.2 and raw < smoothed < 1.0  # exponential: 10th percentile = 0.105 x mean
    assert _floor_bias(512, (3, 5), 10.0) == smoothed


def test_lsa_lengths_and_bad_arguments():
    x = _bursts(1.0)
    assert lsa_refine(x, x[:1000], SR).shape == x.shape
    assert lsa_refine(x, np.concatenate([x, x]), SR).shape == x.shape
    np.testing.assert_array_equal(lsa_refine(x[:100], x[:100], SR), x[:100])
    for kw, msg in (({"floor": -0.1}, "floor"), ({"speech_weight": 2.0}, "speech_weight"),
                    ({"smoothing": 1.0}, "smoothing"), ({"noise_percentile": 100}, "percentile")):
        with pytest.raises(ValueError, match=msg):
            lsa_refine(x, x, SR, **kw)
    with pytest.raises(ValueError, match="mono"):
        lsa_refine(np.stack([x, x]), x, SR)
