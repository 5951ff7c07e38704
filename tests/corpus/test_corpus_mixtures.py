"""TSE/SE mixtures: the SNR measured in the written files is the one the test set states."""

import numpy as np

from metis_speech.audio import load_audio
from metis_speech.corpus.noise import TEST_ONLY_NOISE_TYPES, TRAIN_NOISE_TYPES, make_noise, mix_at_snr, reverberate, room_rir, snr_db

from .util import read_jsonl


def _load(path):
    wav, sr = load_audio(path)
    assert sr == 24000
    return wav.astype(np.float64)


def test_tse_mixture_snr_is_as_stated(corpus):
    items = read_jsonl(corpus / "tests" / "tse.jsonl")
    assert items
    for it in items:
        mix, ref = _load(corpus / "tests" / it["input"]), _load(corpus / "tests" / it["reference"])
        assert len(mix) == len(ref)
        assert abs(snr_db(ref, mix - ref) - it["snr_db"]) < 0.1, it["id"]
        assert it["prompt"] != it["reference"] and it["interferer"] != it["speaker"]


def test_se_noisy_snr_is_as_stated(corpus):
    items = read_jsonl(corpus / "tests" / "se.jsonl")
    assert items
    for it in items:
        noisy, ref = _load(corpus / "tests" / it["input"]), _load(corpus / "tests" / it["reference"])
        speech = reverberate(ref, room_rir(it["room"])) if it["room"] else ref  # SNR is of the speech as heard
        assert abs(snr_db(speech, noisy - speech) - it["snr_db"]) < 0.15, it["id"]


def test_mix_at_snr_exact_and_peak_safe():
    rng = np.random.default_rng(0)
    s, n = rng.standard_normal(24000) * 0.5, rng.standard_normal(24000)
    for snr in (-5.0, 0.0, 12.5):
        mix, s2, n2 = mix_at_snr(s, n, snr)
        assert abs(snr_db(s2, n2) - snr) < 1e-4 and np.abs(mix).max() <= 0.9 + 1e-6
        assert np.allclose(mix, s2 + n2, atol=1e-6)


def test_every_noise_type_is_finite_and_levelled():
    rng = np.random.default_rng(1)
    voices, texts = ("en-us+m5", "en+f1"), ["A short babble sentence.", "Another one for the crowd."]
    for kind in TRAIN_NOISE_TYPES + TEST_ONLY_NOISE_TYPES:
        x = make_noise(kind, 12000, rng, voices, texts)
        assert x.shape == (12000,) and np.isfinite(x).all()
        assert abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 0.1) < 1e-3, kind


def test_room_rir_direct_path_first():
    rir = room_rir({"dims": [5.0, 4.0, 3.0], "rt60": 0.4, "source": [1.0, 1.0, 1.5], "mic": [3.5, 2.5, 1.5]})
    assert np.argmax(np.abs(rir)) <= 3 and len(rir) > 2400
