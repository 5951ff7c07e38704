"""Test-set manifests and the matching of generated audio to their items.

A test set is a JSONL file, one item per line, written by the corpus builder::

    {"id": "tse-0007", "task": "tse", "input": "mix/tse-0007.wav", "prompt": "prompt/p7.wav",
     "prompt_text": "...", "text": "...", "reference": "clean/tse-0007.wav",
     "speaker": "awb", "snr_db": 0.0}

``task`` is one of tts, vc, tse, se, l2s. ``input`` is the source (VC), mixture (TSE),
noisy speech (SE) or silent video (L2S) and is absent for TTS; ``prompt`` is absent for
SE; ``reference`` is the clean target when one exists. Paths are relative to the
manifest's folder. Any other field is kept in :attr:`EvalItem.extra`.

Generated speech comes either as a folder of audio files named ``<id>.<ext>`` or as a
JSONL manifest whose items carry a ``generated`` path (and optionally speed fields such as
``rtf``, ``wall_s``, ``peak_rss_mb``, ``peak_cuda_mb``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .backends import EvalError

__all__ = ["TASKS", "AUDIO_EXTS", "VIDEO_EXTS", "EvalItem", "read_jsonl", "load_testset", "match_folder", "load_items"]

TASKS = ("tts", "vc", "tse", "se", "l2s")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
_PATH_FIELDS = ("generated", "input", "prompt", "reference")
_KNOWN = {"id", "task", "text", "prompt_text", "speaker", *_PATH_FIELDS}


@dataclass
class EvalItem:
    """One test item; paths are absolute (resolved against the manifest's folder)."""

    id: str
    task: str
    generated: Optional[Path] = None
    input: Optional[Path] = None
    prompt: Optional[Path] = None
    reference: Optional[Path] = None
    text: Optional[str] = None
    prompt_text: Optional[str] = None
    speaker: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def input_is_audio(self) -> bool:
        """True when ``input`` is a waveform (VC source, TSE mixture, SE noisy), not a video."""
        return self.input is not None and self.input.suffix.lower() not in VIDEO_EXTS and self.task != "l2s"


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    """Parse a JSONL file into dicts; one-line errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise EvalError(f"{path}: no such manifest")
    if path.is_dir():
        raise EvalError(f"{path}: is a directory, expected a JSONL manifest")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise EvalError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise EvalError(f"{path}: manifest has no items")
    return rows


def _item_from_row(row: Dict[str, Any], base: Path, where: str) -> EvalItem:
    if "id" not in row or str(row["id"]).strip() == "":
        raise EvalError(f"{where}: item has no 'id'")
    item_id = str(row["id"])
    task = str(row.get("task", "")).lower()
    if task not in TASKS:
        raise EvalError(f"{where}: item {item_id!r} has task {row.get('task')!r}; expected one of {', '.join(TASKS)}")
    paths = {k: (base / str(row[k])).resolve() for k in _PATH_FIELDS if row.get(k) not in (None, "")}
    return EvalItem(
        id=item_id,
        task=task,
        text=row.get("text"),
        prompt_text=row.get("prompt_text"),
        speaker=None if row.get("speaker") is None else str(row["speaker"]),
        extra={k: v for k, v in row.items() if k not in _KNOWN},
        **paths,
    )


def _check_unique(items: Sequence[EvalItem], where: Path) -> None:
    seen = set()
    for it in items:
        if it.id in seen:
            raise EvalError(f"{where}: duplicate item id {it.id!r}")
        seen.add(it.id)


def load_testset(path: Path) -> List[EvalItem]:
    """Read a test-set manifest -> items with absolute paths."""
    path = Path(path)
    items = [_item_from_row(r, path.parent, f"{path}:{i}") for i, r in enumerate(read_jsonl(path), 1)]
    _check_unique(items, path)
    return items


def match_folder(items: Sequence[EvalItem], folder: Path, allow_missing: bool = False) -> List[EvalItem]:
    """Attach ``folder/<id>.<ext>`` to each item as its generated audio.

    Raises :class:`EvalError` when the folder is missing or holds no audio, when none of its
    files matches an item, or (unless ``allow_missing``) when an item has no file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"{folder}: no such folder of generated audio")
    files: Dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in AUDIO_EXTS and not p.name.startswith("."):
            if p.stem in files:
                raise EvalError(f"{folder}: two generated files for item {p.stem!r} ({files[p.stem].name}, {p.name})")
            files[p.stem] = p.resolve()
    if not files:
        raise EvalError(f"{folder}: no audio files ({', '.join(AUDIO_EXTS)}) in the folder")
    matched = [replace(it, generated=files[it.id]) for it in items if it.id in files]
    if not matched:
        raise EvalError(f"{folder}: none of its {len(files)} audio files is named after a test-set item id (e.g. {items[0].id}.wav)")
    missing = [it.id for it in items if it.id not in files]
    if missing and not allow_missing:
        raise EvalError(
            f"{len(missing)} of {len(items)} items have no generated file in {folder} (first: {missing[0]!r}); "
            "pass --allow-missing to score the others"
        )
    return matched


def load_items(
    generated: Optional[Path] = None,
    testset: Optional[Path] = None,
    score_references: bool = False,
    allow_missing: bool = False,
) -> List[EvalItem]:
    """Resolve the evaluation input into items.

    - ``generated`` folder + ``testset``: files matched by stem to item ids;
    - ``generated`` JSONL with a ``generated`` field per item: the manifest is the test set,
      or, with ``testset``, its ``generated`` paths (and extra fields) are joined by id;
    - ``score_references``: the test set alone (``generated`` may be the test set path).
    """
    if score_references:
        path = testset or generated
        if path is None:
            raise EvalError("--score-references needs a test-set manifest")
        items = load_testset(Path(path))
        no_ref = [it.id for it in items if it.reference is None]
        if no_ref:
            raise EvalError(f"--score-references: {len(no_ref)} items have no 'reference' (first: {no_ref[0]!r})")
        return items
    if generated is None:
        raise EvalError("nothing to evaluate: give a folder of generated audio (with --testset) or a manifest with 'generated' paths")
    generated = Path(generated)
    if generated.is_dir():
        if testset is None:
            raise EvalError(f"{generated} is a folder: give the test set it was generated from with --testset")
        return match_folder(load_testset(Path(testset)), generated, allow_missing)
    if not generated.exists():
        raise EvalError(f"{generated}: no such folder or manifest")
    if generated.suffix.lower() not in (".jsonl", ".json"):
        raise EvalError(f"{generated}: expected a folder of generated audio or a .jsonl manifest")
    if testset is None:
        items = load_testset(generated)
    else:
        by_id = {it.id: it for it in load_testset(Path(testset))}
        items = []
        for i, row in enumerate(read_jsonl(generated), 1):
            rid = str(row.get("id", ""))
            if rid not in by_id:
                raise EvalError(f"{generated}:{i}: id {rid!r} is not in the test set {testset}")
            gen = row.get("generated")
            base = by_id[rid]
            extra = {**base.extra, **{k: v for k, v in row.items() if k not in _KNOWN}}
            items.append(replace(base, generated=(generated.parent / gen).resolve() if gen else None, extra=extra))
        _check_unique(items, generated)
    without = [it.id for it in items if it.generated is None]
    if without and not allow_missing:
        raise EvalError(f"{generated}: {len(without)} items have no 'generated' path (first: {without[0]!r})")
    items = [it for it in items if it.generated is not None]
    absent = [it for it in items if not it.generated.exists()]
    if absent and not allow_missing:
        raise EvalError(f"item {absent[0].id!r}: generated file {absent[0].generated} does not exist ({len(absent)} missing)")
    items = [it for it in items if it.generated.exists()]
    if not items:
        raise EvalError(f"{generated}: no item has an existing generated file")
    return items
