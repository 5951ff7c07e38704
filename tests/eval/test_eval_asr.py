"""pocketsphinx transcribes clean flite speech well enough for a relative WER."""

import numpy as np
import pytest

from metis_speech.audio import load_audio
from metis_speech.eval.asr import get_asr, transcribe
from metis_speech.eval.backends import EvalError
from metis_speech.eval.text import wer

from .speech import SENTENCES, SR, VOICES


def test_pocketsphinx_wer_on_flite_voices(clips):
    scores, hyps = {}, {}
    for voice, key in zip(VOICES, "abab"):  # one clip per voice keeps the test short
        hyps[voice] = transcribe(load_audio(clips[(voice, key)], SR)[0], SR)
        assert isinstance(hyps[voice], str)
        scores[(voice, key)] = wer(SENTENCES[key], hyps[voice])
    assert np.mean(list(scores.values())) < 0.25, scores
    assert max(scores.values()) <= 0.5, scores
    assert min(scores.values()) == 0.0, scores  # at least one clip transcribed exactly
    assert hyps["awb"] == "my brother plays the piano every evening"  # lowercase words, no punctuation


def test_silence_gives_empty_transcript():
    assert transcribe(np.zeros(SR, np.float32), SR) == ""
    assert wer("turn left", "") == 1.0  # so silent output scores as all deletions


def test_asr_backend_errors():
    with pytest.raises(EvalError, match="unknown ASR backend"):
        get_asr("nope")
    with pytest.raises(EvalError, match="only has an English model"):
        get_asr("pocketsphinx", None, "zh")
