"""train.max_seconds: the run shortens max_steps to fit the wall-clock budget, never raises it
again (a loop that stopped at an earlier estimate finds its run complete), and ends with final/."""

import pytest

from metis_speech.training import trainer as trainer_mod
from metis_speech.training.trainer import LoopSection, TimeBudget


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_budget_shrinks_steps_and_never_raises_them(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(trainer_mod.time, "perf_counter", clock)
    loop = LoopSection(max_steps=10_000, max_seconds=100.0)
    b = TimeBudget(loop, calibrate=10)
    assert b.update(1) == 10_000  # starts the clock
    for step in range(2, 12):  # 1 s per step
        clock.t += 1.0
        b.update(step)
    assert 95 <= loop.max_steps <= 105  # ~100 steps fit in 100 s
    first = loop.max_steps
    for step in range(12, 30):  # the steps get faster: the estimate would grow, but may not
        clock.t += 0.1
        assert b.update(step) <= first
    clock.t = 100.5  # past the budget: the run ends at this step
    assert b.update(31) == 31


def test_no_budget_changes_nothing(monkeypatch):
    loop = LoopSection(max_steps=50)
    b = TimeBudget(loop)
    for step in range(1, 40):
        assert b.update(step) == 50


@pytest.mark.parametrize("recipe", ["semantic_codec_tiny"])
def test_a_timed_run_ends_with_its_final_output(tmp_path, recipe):
    from metis_speech.training.trainer import load_train_config, make_trainer
    from metis_speech.recipes import recipe_path

    cfg = load_train_config(recipe_path(recipe))
    cfg.train.max_steps, cfg.train.max_seconds, cfg.train.progress = 100_000, 3.0, False
    cfg.train.checkpoint_every = 100_000
    tr = make_trainer(cfg, out=tmp_path / "run")
    summary = tr.train()
    assert summary["step"] < 100_000 and tr.step == cfg.train.max_steps
    assert (tmp_path / "run" / "final").is_dir()
