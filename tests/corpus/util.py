"""Helpers shared by the corpus tests."""

import json
import subprocess
import sys
from pathlib import Path

TINY = ["--minutes", "0.3", "--seed", "7", "--test-items", "2"]


def run_cli(*args, env=None, timeout=600):
    """``python -m metis_speech ARGS`` -> CompletedProcess (text mode)."""
    return subprocess.run([sys.executable, "-m", "metis_speech", *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def read_jsonl(path: Path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
