"""Speaker similarity: same voice (different sentences) scores above different voices."""

import numpy as np
import pytest

from metis_speech.audio import load_audio
from metis_speech.eval.speaker import get_speaker_encoder, speaker_embedding, speaker_similarity

from .speech import SR, VOICES, synth


@pytest.fixture(scope="module")
def wavs(clips):
    return {key: load_audio(path, SR)[0] for key, path in clips.items()}


def test_embedding_is_unit_norm_and_deterministic(wavs):
    e1 = speaker_embedding(wavs[("awb", "a")], SR)
    e2 = speaker_embedding(wavs[("awb", "a")], SR)
    assert e1.shape == (256,)
    assert np.linalg.norm(e1) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(e1, e2, atol=1e-6)
    assert speaker_similarity(wavs[("awb", "a")], wavs[("awb", "a")], SR) == pytest.approx(1.0, abs=1e-5)


def test_same_voice_scores_above_different_voices(wavs):
    emb = {key: speaker_embedding(w, SR) for key, w in wavs.items()}
    same = {v: float(emb[(v, "a")] @ emb[(v, "b")]) for v in VOICES}
    for v in VOICES:
        others = [float(emb[(v, "a")] @ emb[(u, "b")]) for u in VOICES if u != v]
        assert same[v] > max(others), (v, same[v], others)
    assert np.mean(list(same.values())) > 0.8


def test_formant_voice_differs_from_flite_voices(wavs, tmp_path):
    espeak = load_audio(synth("She sells sea shells by the sea shore.", "espeak:en-us+m3", tmp_path / "e.wav"), SR)[0]
    slt_same = speaker_similarity(wavs[("slt", "a")], wavs[("slt", "b")], SR)
    assert speaker_similarity(espeak, wavs[("slt", "b")], SR) < slt_same


def test_resampling_and_unknown_backend(wavs):
    from metis_speech.audio import resample
    from metis_speech.eval.backends import EvalError

    w = wavs[("rms", "a")]
    e24 = speaker_embedding(resample(w, SR, 24000), 24000)  # resampled to 16 kHz inside
    assert float(e24 @ speaker_embedding(w, SR)) > 0.95
    with pytest.raises(EvalError, match="unknown speaker-similarity backend"):
        get_speaker_encoder("nope")
