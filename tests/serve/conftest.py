"""Fixtures of the server tests: a real ``metis serve`` in a subprocess on a free loopback port.

The servers run the shipped small model (or ``random:tiny`` for the tasks the small model
lacks) with few decoding steps and one thread, so that the whole folder stays fast on two
cores. ``TMPDIR`` of each server is a folder of its own, to check that uploads are never
written outside the server's data folder.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server tests need the serve extra (pip install 'metis-speech[serve]')")
pytest.importorskip("uvicorn", reason="the server tests need the serve extra (pip install 'metis-speech[serve]')")
httpx = pytest.importorskip("httpx", reason="the server tests need httpx (the test extra)")

REPO = Path(__file__).resolve().parents[2]
PROMPT = REPO / "examples" / "prompt.wav"
PROMPT_TEXT = (REPO / "examples" / "prompt.txt").read_text().strip()
FAST = ["--steps", "2", "--s2a-steps", "2,1", "--threads", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m metis_speech serve ARGS`` on a free port; ``.client`` talks to it."""

    def __init__(self, data_dir: Path, tmp_env: Path, *args: str, timeout: float = 240.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(data_dir)
        self.tmp_env = Path(tmp_env)
        self.tmp_env.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   TMPDIR=str(self.tmp_env), OMP_NUM_THREADS="1")
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "metis_speech", "serve", "--port", str(self.port),
                                      "--data-dir", str(self.data_dir), *args], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=300)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer /health within {timeout:.0f} s: {self.log_text()[-3000:]}")
            time.sleep(0.5)

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def small_server(tmp_path_factory):
    """The shipped small model; uploads limited to 1 MB; batches wait up to 300 ms."""
    root = tmp_path_factory.mktemp("small")
    server = Server(root / "data", root / "tmpdir", "--model", "small", "--max-upload-mb", "1", "--max-wait-ms", "300",
                    *FAST)
    yield server
    server.stop()


def error_of(r, status: int, code: str = None) -> dict:
    """Assert ``r`` is an OpenAI-shaped error with ``status`` (and ``code``); return its body."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
    assert body["error"]["message"] and "Traceback" not in r.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
