"""Settings of one corpus build, checked up front (bad input -> :class:`CorpusError`)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import MetisError

__all__ = ["CorpusError", "CorpusConfig", "TASKS", "SAMPLE_RATE", "FPS", "parse_tasks"]

TASKS: Tuple[str, ...] = ("tts", "vc", "tse", "se", "l2s")
SAMPLE_RATE = 24000  # every audio file of the corpus
FPS = 25  # L2S videos
MAX_MINUTES = 60 * 1000  # a thousand hours is more than any machine here can make


class CorpusError(MetisError):
    """Bad corpus settings, an unwritable output folder, or a missing synthesiser."""


def parse_tasks(spec: str) -> List[str]:
    """``"tts,se"`` -> ["tts", "se"] (in canonical order); unknown names are an error."""
    names = [t.strip().lower() for t in str(spec).split(",") if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise CorpusError(f"unknown task {unknown[0]!r}; choose from {','.join(TASKS)}")
    if not names:
        raise CorpusError(f"no task given; choose from {','.join(TASKS)}")
    return [t for t in TASKS if t in names]


@dataclass
class CorpusConfig:
    """What to build. ``minutes`` is the clean speech of train + dev (dev = 5 %); the
    test sets (``test_items`` per task) come on top."""

    out_dir: Path
    minutes: float
    seed: int = 0
    tasks: List[str] = field(default_factory=lambda: list(TASKS))
    test_items: int = 100
    jobs: int = 1
    text_sources: str = "auto"
    dev_fraction: float = 0.05

    def validate(self) -> "CorpusConfig":
        if not isinstance(self.minutes, (int, float)) or not (self.minutes > 0):
            raise CorpusError(f"--minutes must be a positive number, got {self.minutes}")
        if self.minutes > MAX_MINUTES:
            raise CorpusError(f"--minutes {self.minutes:g} is more than the {MAX_MINUTES} this builder allows")
        if self.test_items < 0:
            raise CorpusError(f"--test-items must be 0 or more, got {self.test_items}")
        if self.jobs < 1:
            raise CorpusError(f"--jobs must be at least 1, got {self.jobs}")
        if self.seed < 0:
            raise CorpusError(f"--seed must be 0 or more, got {self.seed}")
        self.tasks = parse_tasks(",".join(self.tasks))
        self.out_dir = Path(self.out_dir)
        check_writable(self.out_dir)
        return self

    def to_dict(self) -> Dict[str, object]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` and prove a file can be written there, or raise CorpusError."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CorpusError(f"{out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CorpusError(f"{out_dir}: cannot write there ({e.strerror or e})") from None
