"""The small Metis shipped inside the package, and the ``auto`` / ``small`` model sources.

``metis_speech/assets/small`` is a bundle (see :mod:`metis_speech.bundle`) trained here with
``python -m metis_speech.training.small_model`` on an offline corpus of synthetic voices (tiny
preset, a project-own phone vocabulary, so nothing in it needs the network). It does the tasks
listed in its ``metis.json``; the official weights do all of them at far higher quality.

Model sources accepted by :meth:`metis_speech.Metis.from_pretrained` and ``--model``:

``auto`` (default)  the official weights when every file the task needs is already in the
                    Hugging Face cache (``metis download TASK`` puts them there), else the
                    shipped small model when it does the task, else a one-line error naming
                    the options; it never downloads
``small``           the shipped small model (an error names the tasks it has)
``hub``             the official weights from the Hugging Face Hub (downloaded, cached)
a directory         official files (``metis download TASK --to DIR``) or a bundle
``random:PRESET``   random weights (benchmarks)

:func:`choose_source` returns the choice with one line saying which model and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from . import hub
from .errors import MetisError

__all__ = ["SMALL_MODEL_DIR", "Choice", "choose_source", "small_model_dir", "small_model_tasks", "resolve_source"]

SMALL_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "small"

NO_OFFICIAL_WEIGHTS = {"l2s": "the official release has no visual encoder"}
"""Tasks the official weights alone cannot run, and why (``auto`` never picks them for these)."""


def small_model_dir() -> Optional[Path]:
    """The shipped small model's bundle directory, or None if this installation lacks it."""
    from .bundle import is_bundle

    return SMALL_MODEL_DIR if is_bundle(SMALL_MODEL_DIR) else None


def small_model_tasks() -> List[str]:
    """The tasks the shipped small model has a stage-1 network for, read from its
    ``metis.json`` (empty if not installed); ``base`` (the unconditional model) is no task."""
    from .bundle import read_manifest

    d = small_model_dir()
    return sorted(t for t in read_manifest(d)["stage1"] if t != "base") if d is not None else []


@dataclass(frozen=True)
class Choice:
    """A resolved model source and the one line that says which model it is and why."""

    source: Union[str, os.PathLike]
    reason: str

    @property
    def line(self) -> str:
        return f"model: {self.reason}"


def _small(task: str, why: str) -> Choice:
    from .bundle import read_manifest

    try:
        preset = read_manifest(SMALL_MODEL_DIR).get("preset") or "?"
    except Exception:  # noqa: BLE001 - the description must never stop a command
        preset = "?"
    return Choice(SMALL_MODEL_DIR, f"the small model shipped with metis-speech ({SMALL_MODEL_DIR}; preset {preset}, "
                                   f"trained on synthetic voices, a demonstration: about half of its TTS words come through), {why}")


def _describe_dir(path: Path) -> str:
    from .bundle import is_bundle, read_manifest

    if is_bundle(path):
        m = read_manifest(path)
        return f"the bundle {path} (preset {m.get('preset', '?')}; --model)"
    return f"official files in {path} (--model)"


def choose_source(task: str, source: Union[str, os.PathLike] = "auto") -> Choice:
    """Resolve ``source`` for ``task`` without using the network (see the module docstring).

    ``auto``: official weights already on this machine, else the shipped small model for the
    tasks its ``metis.json`` lists, else a one-line :class:`MetisError` naming the options."""
    s = str(source)
    if s == "hub":
        report = hub.official_cache(task) if task in hub.TASKS else None
        how = ("all in the Hugging Face cache" if report is not None and report.complete
               else "downloaded from the Hugging Face Hub where not cached")
        return Choice("hub", f"the official weights (--model hub; {how})")
    if s.startswith("random:"):
        return Choice(source, f"random weights of preset {s[len('random:'):]} (--model {s}; for speed and memory measurements)")
    if s not in ("auto", "small"):
        return Choice(source, _describe_dir(Path(source)))
    have = small_model_tasks()
    if s == "small":
        if not have:
            raise MetisError(f"the shipped small model is not in this installation ({SMALL_MODEL_DIR}); "
                             "use --model hub (official weights) or a bundle directory")
        if task not in have:
            raise MetisError(f"the shipped small model does not do {task!r} (it does: {', '.join(have)}); "
                             "use --model hub for the official weights")
        return _small(task, "as asked (--model small)")
    # auto
    report = hub.official_cache(task) if task in hub.TASKS and task not in NO_OFFICIAL_WEIGHTS else None
    if report is not None and report.complete:
        return Choice("hub", f"the official weights, found complete in the Hugging Face cache ({hub.hub_cache_dir()}; "
                             "--model auto uses them without the network)")
    if task in have:
        if report is None:
            why = f"the default for {task} ({NO_OFFICIAL_WEIGHTS.get(task, 'no official weights for it')})"
        else:
            why = (f"the default because the official {task} weights are not on this machine "
                   f"({len(report.missing)} of {len(report.present) + len(report.missing)} files missing; "
                   f"`metis download {task}` or --model hub fetches them)")
        return _small(task, why)
    small = (f"the shipped small model does not do {task} (it does: {', '.join(have)})" if have
             else "the shipped small model is not in this installation")
    if report is None:
        official = f"the official release cannot run {task} ({NO_OFFICIAL_WEIGHTS.get(task, 'unknown task')})"
        options = "pass a bundle that holds it (--model DIR)"
    else:
        official = f"the official {task} weights are not on this machine ({len(report.missing)} files missing)"
        options = (f"use --model hub to download them, or `metis download {task} --to DIR` on a connected "
                   f"machine and --model DIR")
    raise MetisError(f"no model for {task} here: {official} and {small}; {options}")


def resolve_source(task: str, source: Union[str, os.PathLike]) -> Union[str, os.PathLike]:
    """Turn ``auto`` / ``small`` into a directory or ``hub``; other sources pass unchanged."""
    return choose_source(task, source).source


def acoustic_codec_dirs(src: Union[str, os.PathLike]):
    """An acoustic codec's (encoder dir, decoder dir) from ``small`` (the shipped model), a bundle
    (its ``acoustic_encoder`` / ``acoustic_decoder`` components) or a codec run's ``final/``
    (``encoder/``, ``decoder/``). Raises MetisError for anything else."""
    if str(src) == "small":
        path = small_model_dir()
        if path is None:
            raise MetisError("'small': the shipped small model is not installed")
    else:
        path = Path(src)
    from .bundle import is_bundle, read_manifest

    if is_bundle(path):
        comps = read_manifest(path).get("components") or {}
        if "acoustic_encoder" not in comps or "acoustic_decoder" not in comps:
            raise MetisError(f"{src}: the bundle has no acoustic codec")
        return path / comps["acoustic_encoder"], path / comps["acoustic_decoder"]
    if (path / "encoder").is_dir() and (path / "decoder").is_dir():
        return path / "encoder", path / "decoder"
    raise MetisError(f"{src}: neither a bundle (metis.json, acoustic_encoder/, acoustic_decoder/) nor an acoustic codec "
                     "run's final/ (encoder/, decoder/); 'small' is the shipped model")
