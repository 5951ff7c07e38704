"""One tiny corpus, built once per session through the real CLI, shared by the corpus tests.

The build needs the Debian synthesisers (flite, festival + voices, espeak-ng, ffmpeg);
where one is missing the fixture fails with the builder's one-line message rather than
skipping, because CI installs them.
"""

from pathlib import Path

import pytest

from .util import TINY, run_cli


@pytest.fixture(scope="session")
def corpus_run(tmp_path_factory):
    """(corpus folder, CompletedProcess) of ``metis make-corpus`` at the tiny size, 2 jobs."""
    out = tmp_path_factory.mktemp("corpus") / "c"
    proc = run_cli("make-corpus", out, *TINY, "--jobs", "2")
    assert proc.returncode == 0, f"make-corpus failed:\n{proc.stderr[-3000:]}"
    return out, proc


@pytest.fixture(scope="session")
def corpus(corpus_run) -> Path:
    return corpus_run[0]
