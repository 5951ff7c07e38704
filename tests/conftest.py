"""Shared fixtures: where the read-only conformance vectors live.

``../shared/parity`` sits beside the repository in development and CI. When it is absent
(a fresh clone elsewhere) the tests that need it are skipped with a message saying why.
Set ``METIS_SHARED`` to point at another copy.
"""

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("METIS_SHARED", REPO.parent / "shared"))
PARITY = SHARED / "parity"
HOLDOUT = PARITY / "holdout"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: these tests need the read-only shared/ inputs (conformance vectors, phone vocabulary); set METIS_SHARED to that folder")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return _need(PARITY)


@pytest.fixture(scope="session")
def holdout_dir() -> Path:
    return _need(HOLDOUT)


@pytest.fixture(scope="session", params=["parity", "holdout"])
def vector_dir(request) -> Path:
    """Both conformance sets, one after the other."""
    return _need(PARITY if request.param == "parity" else HOLDOUT)


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run a block with ``n`` torch intra-op threads (tiny models on a shared 2-core machine:
    one thread avoids oversubscription), restoring the previous count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def one_thread():
    with torch_threads(1):
        yield
