"""Synthesis engines give audio with phone timings; perturbation does what its name says."""

import numpy as np
import pytest

from metis_speech.corpus.config import SAMPLE_RATE
from metis_speech.corpus.synth import _pyworld, espeak_synth, normalize_level, render_utterance
from metis_speech.corpus.voices import Perturbation, voice_by_key

TEXT = "The old sailor carried a heavy basket to the market."


def _median_f0(wav):
    pw = _pyworld()
    f0, _ = pw.dio(wav.astype(np.float64), SAMPLE_RATE, frame_period=5.0)
    return float(np.median(f0[f0 > 0]))


@pytest.mark.parametrize("key", ["flite-awb", "festival-ked", "espeak-en-us-f1"])
def test_engines_give_audio_and_timings(key):
    wav, phones = render_utterance(voice_by_key(key), Perturbation(), TEXT)
    duration = len(wav) / SAMPLE_RATE
    assert 1.5 < duration < 8 and np.isfinite(wav).all() and np.abs(wav).max() <= 0.9 + 1e-6
    assert len(phones) > 20
    starts = [s for _, s, _ in phones]
    assert starts == sorted(starts) and phones[-1][2] <= duration + 1e-3


def test_perturbation_shifts_pitch_and_tempo():
    voice = voice_by_key("flite-slt")
    base, ph0 = render_utterance(voice, Perturbation(), TEXT)
    up, ph1 = render_utterance(voice, Perturbation(pitch=4.0, vtl=1.0, tempo=1.25), TEXT)
    ratio = _median_f0(up) / _median_f0(base)
    assert abs(12 * np.log2(ratio) - 4.0) < 1.0
    assert abs(len(base) / len(up) - 1.25) < 0.03
    assert abs(ph0[-1][2] / ph1[-1][2] - 1.25) < 0.03


def test_espeak_output_does_not_depend_on_earlier_calls():
    a = espeak_synth("en-us+f3", TEXT)[0]
    espeak_synth("en+klatt3", "Something else entirely, said by another voice.")
    b = espeak_synth("en-us+f3", TEXT)[0]
    assert np.array_equal(a, b)


def test_normalize_level():
    x = np.sin(np.linspace(0, 2000, 24000)).astype(np.float32) * 0.01
    y = normalize_level(x, SAMPLE_RATE)
    assert abs(20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))) + 25) < 0.5
