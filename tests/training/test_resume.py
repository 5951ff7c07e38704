"""Kill-and-resume: a run stopped mid-way and resumed logs the same losses as an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from metis_speech.errors import MetisError
from metis_speech.training.trainer import Trainer, load_train_config, read_log

from conftest import small_config

TOL = 1e-5


def _by_step(out):
    return {r["step"]: r["loss"] for r in read_log(out)}


@pytest.mark.parametrize(
    "component,extra",
    [
        ("stage1_base", {"train": {"grad_accum": 2, "ema": 0.9}}),
        ("s2a_full", {}),
    ],
)
def test_stop_and_resume_matches_uninterrupted(tmp_path, component, extra):
    N, k = 8, 3
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(load_train_config(small_config(component, a, N, **extra))).train()
    cfg_b = load_train_config(small_config(component, b, N, **extra))
    Trainer(cfg_b).train(until=k)
    assert Trainer.latest_checkpoint(b).name == f"step_{k:08d}"
    with pytest.raises(MetisError):  # refuses to start over an existing run without --resume
        Trainer(cfg_b)
    resumed = Trainer(cfg_b, resume=True)
    assert resumed.step == k
    resumed.train()
    la, lb = _by_step(a), _by_step(b)
    assert sorted(lb) == list(range(1, N + 1))
    for s in range(k + 1, N + 1):
        assert abs(la[s] - lb[s]) <= TOL, (s, la[s], lb[s])


def test_sigkill_and_resume(tmp_path):
    N, every = 24, 3
    cfg = small_config("stage1_base", tmp_path / "killed", N, train={"checkpoint_every": every, "keep_checkpoints": 2})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "metis_speech.training.cli", str(path), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file():
            step = int(latest.read_text().strip().split("_")[1] or 0)
            if step >= 2 * every:
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    if killed_at is None:
        pytest.skip(f"the run ended before it could be killed (rc {proc.returncode})")
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "final").exists()
    r = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # the uninterrupted reference, in this process
    ref = tmp_path / "ref"
    Trainer(load_train_config(small_config("stage1_base", ref, N, train={"checkpoint_every": every}))).train()
    la, lb = _by_step(ref), _by_step(tmp_path / "killed")
    assert sorted(lb) == list(range(1, N + 1))
    for s in range(killed_at + 1, N + 1):
        assert abs(la[s] - lb[s]) <= TOL, (s, la[s], lb[s])
    assert (tmp_path / "killed" / "final" / "model.safetensors").is_file()
