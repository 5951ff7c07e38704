"""L2S visual encoder trainer: synthetic crops -> frame-aligned semantic ids (loss falls),
shard data with bad items skipped, resume equivalence, final checkpoint loads back."""

import pytest
import torch

from metis_speech.loading import load_checkpoint
from metis_speech.models.visual import VisualEncoder
from metis_speech.training.trainer import load_train_config, make_trainer, read_log
from metis_speech.training.visual_train import (
    IDS_PER_FRAME,
    VisualEncoderTrainer,
    load_visual_head,
    synthetic_lip_pairs,
    write_visual_shard,
)


def visual_config(out, steps=30, data=None):
    return load_train_config(
        {
            "model": {"preset": "tiny", "component": "visual_encoder"},
            "data": data or {"synthetic": {"n": 24, "min_frames": 6, "max_frames": 10, "classes": 6, "seed": 0}, "max_frames": 40},
            "optim": {"lr": 3e-3, "betas": [0.9, 0.98], "warmup_steps": 5, "decay": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.0},
            "train": {"max_steps": steps, "seed": 0, "log_every": 1, "checkpoint_every": 1000, "out": str(out), "progress": False},
        }
    )


def test_synthetic_pairs_are_frame_aligned():
    items = synthetic_lip_pairs(n=3, min_frames=4, max_frames=6, vocab=64)
    for it in items:
        n = it["crops"].shape[0]
        assert it["crops"].shape == (n, 96, 96) and it["crops"].dtype == torch.uint8
        assert it["semantic"].shape == (IDS_PER_FRAME * n,) and int(it["semantic"].max()) < 64


def test_visual_encoder_trains_and_checkpoint_loads(tmp_path):
    out = tmp_path / "vis"
    tr = make_trainer(visual_config(out, 30))
    assert isinstance(tr, VisualEncoderTrainer)
    tr.train()
    recs = read_log(out)
    first = sum(r["loss"] for r in recs[:3]) / 3
    last = sum(r["loss"] for r in recs[-3:]) / 3
    # threshold: cross-entropy from ~ln(1024) = 6.9 to below 1.5 nats, accuracy above 0.5
    assert first > 5.0 and last < 1.5, (first, last)
    assert recs[-1]["accuracy"] > 0.5
    enc = load_checkpoint(out / "final")
    assert isinstance(enc, VisualEncoder)
    head = load_visual_head(out / "final")
    it = synthetic_lip_pairs(n=1, min_frames=8, max_frames=8, classes=6, seed=7)[0]
    with torch.no_grad():
        feats = enc(it["crops"][None].float() / 255)
        assert feats.shape == (1, 8, enc.cfg.out_dim)
        pred = head(feats).view(1, 16, -1).argmax(-1)[0]
    assert (pred == it["semantic"]).float().mean() > 0.5  # held-out synthetic video


def test_visual_shards_skip_bad_items_and_resume(tmp_path):
    good = synthetic_lip_pairs(n=12, min_frames=5, max_frames=8, classes=4, seed=1)
    items = [(f"u{i}", it["crops"], it["semantic"]) for i, it in enumerate(good)]
    items[0] = ("cut", good[0]["crops"], good[0]["semantic"][:-1])  # one id short: repeat-padded, kept
    items.append(("mismatch", good[1]["crops"], good[1]["semantic"][:4]))
    items.append(("badid", good[2]["crops"], good[2]["semantic"] + 5000))
    items.append(("badsize", torch.zeros(6, 64, 64, dtype=torch.uint8), good[3]["semantic"][:12]))
    write_visual_shard(tmp_path / "shards" / "a.safetensors", items)
    (tmp_path / "shards" / "b.safetensors").write_bytes(b"corrupt")
    data = {"path": str(tmp_path / "shards"), "max_frames": 32}
    a, b = tmp_path / "a", tmp_path / "b"
    tr = make_trainer(visual_config(a, 4, data))
    assert len(tr.items) == 12
    assert tr.skipped == {
        "semantic/video length mismatch": 1,
        "ids outside the vocabulary": 1,
        "crops not (N, 96, 96)": 1,
        "unreadable shard": 1,
    }
    tr.train()
    make_trainer(visual_config(b, 4, data)).train(until=2)
    make_trainer(visual_config(b, 4, data), resume=True).train()
    la, lb = {r["step"]: r["loss"] for r in read_log(a)}, {r["step"]: r["loss"] for r in read_log(b)}
    assert abs(la[4] - lb[4]) < 1e-5


def test_visual_trainer_rejects_unknown_objective(tmp_path):
    from metis_speech.errors import MetisError

    cfg = visual_config(tmp_path / "x", 2)
    cfg.objective = {"vocabulary": 10}
    with pytest.raises(MetisError, match="unknown setting"):
        make_trainer(cfg)
