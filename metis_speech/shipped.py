"""The small Metis shipped inside the package, and the ``auto`` / ``small`` model sources.

``metis_speech/assets/small`` is a bundle (see :mod:`metis_speech.bundle`) trained here with
``python -m metis_speech.training.small_model`` on an offline corpus of synthetic voices (tiny
preset, a project-own phone vocabulary, so nothing in it needs the network). It does the tasks
listed in its ``metis.json``; the official weights do all of them at far higher quality.

Model sources accepted by :meth:`metis_speech.Metis.from_pretrained` and ``--model``:

``auto`` (default)  the shipped small model for the tasks it was trained for, else ``hub``
``small``           the shipped small model (an error names the tasks it has)
``hub``             the official weights from the Hugging Face Hub (downloaded, cached)
a directory         official files (``metis download``) or a bundle
``random:PRESET``   random weights (benchmarks)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

from .errors import MetisError

__all__ = ["SMALL_MODEL_DIR", "small_model_dir", "small_model_tasks", "resolve_source"]

SMALL_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "small"


def small_model_dir() -> Optional[Path]:
    """The shipped small model's bundle directory, or None if this installation lacks it."""
    from .bundle import is_bundle

    return SMALL_MODEL_DIR if is_bundle(SMALL_MODEL_DIR) else None


def small_model_tasks() -> List[str]:
    """The tasks the shipped small model has a stage-1 network for (empty if not installed)."""
    from .bundle import read_manifest

    d = small_model_dir()
    return sorted(read_manifest(d)["stage1"]) if d is not None else []


def resolve_source(task: str, source: Union[str, os.PathLike]) -> Union[str, os.PathLike]:
    """Turn ``auto`` / ``small`` into a directory or ``hub``; other sources pass unchanged."""
    s = str(source)
    if s not in ("auto", "small"):
        return source
    have = small_model_tasks()
    if s == "auto":
        return SMALL_MODEL_DIR if task in have else "hub"
    if not have:
        raise MetisError(f"the shipped small model is not in this installation ({SMALL_MODEL_DIR}); "
                         "use --model hub (official weights) or a bundle directory")
    if task not in have:
        raise MetisError(f"the shipped small model does not do {task!r} (it does: {', '.join(have)}); "
                         "use --model hub for the official weights")
    return SMALL_MODEL_DIR
