"""Two CPU processes (accelerate launch, gloo) train a few steps and write a checkpoint.

``accelerate launch --cpu --num_processes 2`` starts ONE process in Accelerate 1.x unless MPI
is set up (its CPU path is the single-process launcher); ``--multi_gpu`` goes through
``torch.distributed.run`` and, with no GPU present, the trainer asks Accelerate for the
MULTI_CPU (gloo) backend. Both ranks write their RNG state into the checkpoint.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import small_config


def test_two_process_cpu_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test checks the CPU (gloo) path")
    launcher = shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not on PATH")
    out = tmp_path / "run"
    cfg = small_config("stage1_base", out, 3, train={"checkpoint_every": 2})
    cfg["data"]["synthetic"]["n"] = 48
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "metis_speech.training.cli", str(path), "--no-progress",
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ck = out / "checkpoints"
    assert (ck / "latest").read_text().strip() == "step_00000003"
    meta = json.loads((ck / "step_00000003" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == 3
    assert (ck / "step_00000003" / "rng_0.pt").is_file() and (ck / "step_00000003" / "rng_1.pt").is_file()
    assert (out / "final" / "model.safetensors").is_file()
    from metis_speech.loading import load_checkpoint

    load_checkpoint(out / "final")
