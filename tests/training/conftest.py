"""Helpers for the training tests: very small configs on synthetic, learnable token data."""

import copy

import pytest

SMALL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4}


def small_config(component: str, out, steps: int = 40, **sections):
    """A TrainConfig dict: tiny preset shrunk to 2 layers x 64, short synthetic utterances."""
    d = {
        "model": {"preset": "tiny", "component": component, "overrides": dict(SMALL)},
        "data": {"synthetic": {"n": 64, "min_frames": 16, "max_frames": 32, "seed": 0}, "max_frames": 256},
        "optim": {"lr": 3e-3, "betas": [0.9, 0.98], "warmup_steps": 5, "decay": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.0},
        "train": {"max_steps": steps, "seed": 0, "log_every": 1, "checkpoint_every": 1000, "out": str(out), "progress": False},
    }
    for k, v in sections.items():
        d.setdefault(k, {}).update(copy.deepcopy(v))
    return d


@pytest.fixture
def make_config():
    return small_config
