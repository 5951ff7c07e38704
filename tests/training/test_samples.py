"""Periodic audio samples (``train.samples``): files, lengths, and no effect on training."""

import pytest
import soundfile as sf

from metis_speech.errors import MetisError
from metis_speech.training.trainer import Trainer, load_train_config, read_log

from conftest import losses, small_config

SYN = {"num_quantizers": 4, "acoustic_vocab": 256}
HOP = 480  # tiny acoustic decoder: 24 kHz, 50 Hz


def _run(component, out, samples=None, steps=6, **sections):
    train = {"samples": samples} if samples else {}
    cfg = small_config(component, out, steps, data={"synthetic": {"n": 16, "min_frames": 16, "max_frames": 32, "seed": 0, **SYN}},
                       train=train, **sections)
    tr = Trainer(load_train_config(cfg))
    tr.train()
    return tr


@pytest.mark.parametrize("component", ["stage1_base", "s2a_full", "s2a_1layer"])
def test_samples_written_and_training_unchanged(component, tmp_path):
    samples = {"every": 3, "model": "random:tiny", "count": 2, "steps": 2, "s2a_steps": [2, 1, 1, 1]}
    tr = _run(component, tmp_path / "with", samples)
    plain = _run(component, tmp_path / "without")
    # sampling draws from its own generators: the losses are those of a run without samples
    assert losses(tmp_path / "with") == losses(tmp_path / "without")
    items = tr.samples.items
    assert len(items) == 2
    root = tmp_path / "with" / "samples"
    assert sorted(p.name for p in root.iterdir()) == ["reference", "step_00000003", "step_00000006"]
    for u in items:
        T = int(u["semantic"].shape[0])
        gen_frames = T - max(1, T // 3)
        for d in ("reference", "step_00000003", "step_00000006"):
            wav, sr = sf.read(root / d / f"{u['id']}.wav")
            assert sr == 24000 and len(wav) == gen_frames * HOP, (d, len(wav), gen_frames)
        assert (root / "step_00000006" / f"{u['id']}.png").stat().st_size > 1000
    recs = [r for r in read_log(tmp_path / "with") if "samples" in r]
    assert [r["step"] for r in recs] == [3, 6]
    assert plain.samples is None


def test_samples_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(MetisError, match="needs 'model'"):
        _run("stage1_base", tmp_path / "a", {"every": 3})
    with pytest.raises(MetisError, match="unknown setting"):
        _run("stage1_base", tmp_path / "b", {"every": 3, "model": "random:tiny", "evry": 1})
    with pytest.raises(MetisError, match="acoustic ids"):
        cfg = small_config("stage1_base", tmp_path / "c", 2, train={"samples": {"every": 1, "model": "random:tiny"}})
        Trainer(load_train_config(cfg))
    with pytest.raises(MetisError, match="train.samples.model"):
        _run("stage1_base", tmp_path / "d", {"every": 3, "model": str(tmp_path / "no_such_model")})
