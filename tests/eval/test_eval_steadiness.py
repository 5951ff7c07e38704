"""Window-boundary steadiness metric (eval/steadiness.py) and the pipeline's window rule."""

import numpy as np
import pytest

from metis_speech.eval.steadiness import active_level_db, steadiness
from metis_speech.pipeline import window_boundaries_s, window_count

SR = 16000


def _voice(seconds, f0, seed, bright=1.0):
    """Harmonic 'speech': a fixed f0 with vibrato, syllable-rate envelope and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / SR
    wav = sum(np.sin(k * phase) * bright**k / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.3 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.2 * wav * env / np.abs(wav).max() + 1e-4 * rng.standard_normal(t.size)).astype(np.float32)


def _spectral_embed(x):
    """A cheap stand-in speaker embedding: the normalised long-term log spectrum."""
    n = len(x) // 1024 * 1024
    spec = np.abs(np.fft.rfft(x[:n].reshape(-1, 1024), axis=1)).mean(0)
    v = np.log(spec[:256] + 1e-6)
    v = v - v.mean()
    return v / np.linalg.norm(v)


def test_active_level_ignores_pauses_and_tracks_gain():
    x = _voice(4, 130, 0)
    pause = np.concatenate([x, np.zeros(4 * SR, np.float32)])
    assert abs(active_level_db(pause, SR) - active_level_db(x, SR)) < 0.5
    assert active_level_db(0.5 * x, SR) == pytest.approx(active_level_db(x, SR) - 6.02, abs=0.05)
    assert active_level_db(np.zeros(SR), SR) == float("-inf")


def test_steady_signal_versus_a_loudness_jump_and_a_voice_change():
    steady = _voice(24, 130, 1)
    s = steadiness(steady, SR, [8.0, 16.0], embed=_spectral_embed)
    assert abs(s.boundary_excess_db) < 1.0 and s.level_spread_db < 1.5 and abs(s.boundary_sim_drop) < 0.05

    jump = steady.copy()
    jump[16 * SR :] *= 0.3  # -10.5 dB from the second boundary on
    j = steadiness(jump, SR, [8.0, 16.0], embed=_spectral_embed)
    assert j.boundary_steps_db[1] > 9.0 and j.boundary_excess_db > 3.0 and j.level_spread_db > 9.0

    other = np.concatenate([steady[: 8 * SR], _voice(16, 230, 2, bright=0.6)])  # a new voice after 8 s
    v = steadiness(other, SR, [8.0, 16.0], embed=_spectral_embed)
    assert v.boundary_sims[0] < min(s.boundary_sims) - 0.1 and v.boundary_sim_drop > 0.05
    assert v.window_sims_to_first[1] < s.window_sims_to_first[1] - 0.1


def test_resemblyzer_sees_the_voice_change():
    pytest.importorskip("resemblyzer")
    steady = _voice(24, 130, 1)
    other = np.concatenate([steady[: 8 * SR], _voice(16, 230, 2, bright=0.6)])
    same, diff = steadiness(steady, SR, [8.0, 16.0]), steadiness(other, SR, [8.0, 16.0])
    assert diff.boundary_sims[0] < same.boundary_sims[0] - 0.05


def test_errors_when_segments_do_not_fit():
    with pytest.raises(ValueError, match="no window boundary"):
        steadiness(_voice(3, 130, 0), SR, [1.0], seg_s=2.0, embed=_spectral_embed)


def test_window_rule():
    assert window_count(1500, 1500) == 1 and window_count(1875, 1500) == 1 and window_count(1876, 1500) == 2
    assert window_count(4500, 1500) == 3 and window_count(4501, 1500) == 4
    assert window_boundaries_s(70.0, 30.0) == [30.0, 60.0]
    assert window_boundaries_s(35.0, 30.0) == []
