"""measure(): wall time, real-time factor and peak memory of a call or a block."""

import time

import numpy as np
import pytest

from metis_speech.eval.speed import measure


def _fake_tts(seconds: float, sr: int = 24000):
    big = np.ones(40 * 2**20 // 8)  # hold 40 MiB for a moment
    time.sleep(0.05)
    del big
    return np.zeros(int(seconds * sr), np.float32)


def test_measure_a_function_call():
    m = measure(_fake_tts, 2.0, sample_rate=24000)
    assert m.result.shape == (48000,)
    assert m.audio_seconds == pytest.approx(2.0)
    assert m.wall_s >= 0.05
    assert m.rtf == pytest.approx(m.wall_s / 2.0)
    assert m.peak_rss_mb >= m.start_rss_mb + 30  # the 40 MiB array was seen
    assert m.peak_cuda_mb is None  # CPU-only here (or CUDA not initialised)


def test_measure_a_function_returning_wav_and_rate():
    m = measure(lambda: (np.zeros(16000), 16000))
    assert m.audio_seconds == pytest.approx(1.0)


def test_measure_as_context_manager():
    with measure(sample_rate=16000) as m:
        wav = _fake_tts(0.5, 16000)
        m.set_audio(wav)
    s = m.summary()
    assert s["audio_s"] == pytest.approx(0.5)
    assert s["rtf"] == pytest.approx(s["wall_s"] / 0.5)
    assert np.isnan(measure().rtf)  # unknown audio length


def test_set_audio_needs_a_rate():
    with pytest.raises(ValueError):
        with measure() as m:
            m.set_audio(np.zeros(10))
