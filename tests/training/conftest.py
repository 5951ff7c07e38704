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


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every training test runs with one torch thread (tests/conftest.py)."""
    yield


def losses(out):
    from metis_speech.training.trainer import read_log

    return [r["loss"] for r in read_log(out)]


def head_tail(out, k=3):
    L = losses(out)
    return sum(L[:k]) / k, sum(L[-k:]) / k


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 40-step stage-1 pre-training run (shared by the fine-tuning tests of a module)."""
    from metis_speech.training.trainer import Trainer, load_train_config
    from tests.conftest import torch_threads

    out = tmp_path_factory.mktemp("pretrain")
    with torch_threads(1):
        tr = Trainer(load_train_config(small_config("stage1_base", out, 40)))
        summary = tr.train()
    return out, tr, summary
