"""Long SE/TSE/VC inputs are generated in the windows that ``window_boundaries_s`` reports
(the steadiness metric in eval/steadiness.py measures loudness / voice at those seconds)."""

from metis_speech.pipeline import window_boundaries_s
from tests.pipeline.conftest import speechlike

SR = 16000


def test_pipeline_generates_in_the_windows_the_rule_gives(monkeypatch, tiny_bundle):
    """Metis.se on a 5.3 s input with 2 s windows: stage 1 runs once per window of
    window_boundaries_s, with the lengths the rule gives (100, 100, rest)."""
    import metis_speech.pipeline as pl
    from metis_speech.pipeline import Metis

    calls = []
    real = pl.stage1_generate

    def spy(model, lens, *a, **k):
        calls.append(list(lens))
        return real(model, lens, *a, **k)

    monkeypatch.setattr(pl, "stage1_generate", spy)
    m = Metis.from_pretrained("se", tiny_bundle, device="cpu")
    m.window_s, m.context_s = 2.0, 0.5
    x = speechlike(5.3, SR, 130, 3)
    out = m.se((x, SR), steps=1, s2a_steps=[1, 1], seed=0)
    assert len(calls) == len(window_boundaries_s(5.3, 2.0)) + 1 == 3
    assert [c[0] for c in calls[:2]] == [100, 100]
    assert abs(out.duration - 5.3) < 0.05


def test_later_windows_see_the_first_windows_anchor(monkeypatch, tiny_bundle):
    """SE (no prompt): the S2A of windows 2 and 3 gets, before the previous window's context,
    anchor_s seconds of the first window's own output ids (the same ids each time)."""
    import torch

    from metis_speech.pipeline import Metis

    m = Metis.from_pretrained("se", tiny_bundle, device="cpu")
    m.window_s, m.context_s, m.anchor_s = 2.0, 0.5, 0.4
    calls = []
    real = m._acoustic

    def spy(sem, codes, *a, **k):
        out = real(sem, codes, *a, **k)
        calls.append((sem[0].clone(), codes[0].clone(), out[0].clone()))
        return out

    monkeypatch.setattr(m, "_acoustic", spy)
    out = m.se((speechlike(5.3, SR, 130, 3), SR), steps=1, s2a_steps=[1, 1], seed=0)
    assert len(calls) == 3
    A, C = int(0.4 * m.frame_rate), int(0.5 * m.frame_rate)
    assert calls[0][1].shape[0] == 0  # the first window: no context at all
    first_sem, first_codes = out.semantic_ids[:100], out.acoustic_ids[:100]
    for sem, codes, _ in calls[1:]:
        assert codes.shape[0] == A + C
        anchor = torch.as_tensor(first_codes)
        # the anchor is a contiguous span of the first window's output
        starts = [s for s in range(100 - A + 1) if torch.equal(anchor[s : s + A], codes[:A])]
        assert starts and torch.equal(torch.as_tensor(first_sem)[starts[0] : starts[0] + A], sem[:A])
    assert torch.equal(calls[1][1][:A], calls[2][1][:A])


def test_window_levels_follow_the_input_not_the_model():
    """align_window_levels: a window the model made 5 dB quieter is brought back; a window whose
    input was 6 dB quieter stays 6 dB quieter; a silent window and max_db=0 change nothing."""
    import numpy as np

    from metis_speech.audio import active_level_db
    from metis_speech.pipeline import align_window_levels

    sr_in, sr_out, W = 16000, 24000, 2.0
    x = speechlike(6.0, sr_in, 130, 1)
    x[int(4 * sr_in):] *= 0.5  # the third input window is 6 dB quieter
    y = speechlike(6.0, sr_out, 130, 2)
    y[int(4 * sr_out):] *= 0.5  # ... and so is the output's (a faithful model)
    y[int(2 * sr_out): int(4 * sr_out)] *= 10 ** (-5 / 20)  # the model's drop in window 2
    fixed = align_window_levels(y, sr_out, x, sr_in, W, max_db=6.0, ramp_s=0.1)

    def lvl(w, a, b, sr=sr_out):
        return active_level_db(w[int(a * sr): int(b * sr)], sr)

    def step(w, k, sr=sr_out):  # window k's level minus window 0's
        return lvl(w, 2 * k, 2 * k + 2, sr) - lvl(w, 0, 2, sr)

    assert step(y, 1) < step(x, 1, sr_in) - 4.0  # the drop is there before
    assert abs(step(fixed, 1) - step(x, 1, sr_in)) < 0.5  # and gone after
    assert abs(step(fixed, 2) - step(x, 2, sr_in)) < 0.5
    assert step(fixed, 2) < -5.0  # the quieter input stretch stays quieter
    assert np.array_equal(fixed[: int(1.9 * sr_out)], y[: int(1.9 * sr_out)])
    assert np.array_equal(align_window_levels(y, sr_out, x, sr_in, W, max_db=0.0), y)
    quiet = y.copy()
    quiet[int(2 * sr_out): int(4 * sr_out)] = 0.0
    out = align_window_levels(quiet, sr_out, x, sr_in, W)
    assert np.all(out[int(2.1 * sr_out): int(3.9 * sr_out)] == 0.0)
