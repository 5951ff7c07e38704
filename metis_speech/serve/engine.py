"""The models a server holds, and the one function that runs a batch of items through them.

Which tasks a model source can serve is read from the source itself (:func:`source_tasks`):
a bundle's manifest names its stage-1 networks, the official weights and ``random:PRESET``
have them all. Each task is one :class:`~metis_speech.Metis`; networks the tasks have in
common (SSL, codecs, S2A) are loaded once and shared.

An *item* is one request's inputs (or one sentence of a streamed request); a batch is
items of one task with one *key* (the decoding settings a task API call shares), run as one
call: ``tts(texts, prompts, prompt_texts, seed=[...], speed=[...])``, ``se(inputs)``, ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Hashable, List, Optional, Sequence, Union

from ..errors import MetisError

__all__ = ["SERVED_TASKS", "source_tasks", "Engine", "TaskUnavailable", "batch_key"]

# the tasks the server offers (lip-to-speech takes video and is not served)
SERVED_TASKS = ("tts", "vc", "tse", "se")


class TaskUnavailable(MetisError):
    """The loaded model cannot do this task."""


def source_tasks(model: Union[str, os.PathLike]) -> List[str]:
    """The served tasks that model source ``model`` has a stage-1 network for."""
    from ..bundle import is_bundle, read_manifest
    from ..shipped import small_model_tasks

    s = str(model)
    if s.startswith("random:") or s == "hub":
        return list(SERVED_TASKS)
    if s in ("auto", "small"):
        have = small_model_tasks()
        if not have:
            if s == "small":
                raise MetisError("the shipped small model is not in this installation; use --model hub or a bundle")
            return list(SERVED_TASKS)  # auto without the small model: the official weights
        return [t for t in SERVED_TASKS if t in have]
    if not Path(s).is_dir():
        raise MetisError(f"model source {s} is neither auto, small, hub, random:PRESET nor an existing directory")
    if is_bundle(s):
        return [t for t in SERVED_TASKS if t in read_manifest(s)["stage1"]]
    return list(SERVED_TASKS)  # a directory of official files


class Engine:
    """Loaded task models. ``defaults``: server-wide decoding settings (``steps``,
    ``guidance``, ``s2a_steps``) for requests that give none."""

    def __init__(self, model: str = "auto", tasks: Optional[Sequence[str]] = None, device: Optional[str] = None,
                 dtype: str = "fp32", defaults: Optional[Dict[str, Any]] = None, preset: str = "default",
                 quantize: Optional[str] = None):
        have = source_tasks(model)
        if tasks:
            missing = [t for t in tasks if t not in have]
            unknown = [t for t in tasks if t not in SERVED_TASKS]
            if unknown:
                raise MetisError(f"unknown task(s) {unknown}; the server offers {', '.join(SERVED_TASKS)}")
            if missing:
                raise MetisError(f"model {model} has no {', '.join(missing)} (it has: {', '.join(have) or 'none'})")
            have = [t for t in SERVED_TASKS if t in tasks]
        if not have:
            raise MetisError(f"model {model} has none of the served tasks ({', '.join(SERVED_TASKS)})")
        self.model_name = str(model)
        self.tasks = have
        self.device = device
        self.dtype = dtype
        self.defaults = dict(defaults or {})
        self.preset = preset  # decoding preset under the defaults: "default" or "fast"
        self.quantize = quantize
        self.models: Dict[str, Any] = {}
        self.sample_rate = 24000

    def load(self, log=print) -> None:
        """Load every task's networks (once; shared networks are reused)."""
        from ..pipeline import Metis
        from ..shipped import resolve_source

        for task in self.tasks:
            source = resolve_source(task, self.model_name)
            m = Metis.from_pretrained(task, source, device=self.device, dtype=self.dtype, lazy=True,
                                      preset=self.preset, quantize=self.quantize)
            for other in self.models.values():
                m.share_networks(other)
            m.load_all()
            self.models[task] = m
            self.sample_rate = m.sample_rate
            log(f"metis serve: {task} from {source} on {m.device}", file=sys.stderr)

    def model(self, task: str):
        if task not in self.models:
            raise TaskUnavailable(f"the model this server runs ({self.model_name}) does not do {task!r}; "
                                  f"it does: {', '.join(self.tasks)}")
        return self.models[task]

    def settings(self, steps=None, guidance=None, s2a_steps=None) -> Dict[str, Any]:
        """Request settings over the server defaults; the result is part of the batch key."""
        s2a = s2a_steps if s2a_steps is not None else self.defaults.get("s2a_steps")
        return {
            "steps": steps if steps is not None else self.defaults.get("steps"),
            "guidance": guidance if guidance is not None else self.defaults.get("guidance"),
            "s2a_steps": tuple(s2a) if s2a is not None else None,
        }

    def run(self, task: str, key: Hashable, items: List[Dict[str, Any]]):
        """Run ``items`` (one task, one key) as one batched call; returns their SpeechOutputs."""
        m = self.model(task)
        settings, language = dict(key[0]), key[1]
        seeds = [it.get("seed") for it in items]
        if task == "tts":
            return m.tts([it["text"] for it in items], [it["prompt"] for it in items], [it["prompt_text"] for it in items],
                         language=language, speed=[it.get("speed", 1.0) for it in items], seed=seeds, **settings)
        if task == "se":
            return m.se([it["audio"] for it in items], seed=seeds, **settings)
        if task == "vc":
            return m.vc([it["audio"] for it in items], [it["prompt"] for it in items], seed=seeds, **settings)
        if task == "tse":
            return m.tse([it["audio"] for it in items], [it["prompt"] for it in items], seed=seeds, **settings)
        raise TaskUnavailable(f"unknown task {task!r}")


def batch_key(settings: Dict[str, Any], language: str = "auto", lane: str = "") -> Hashable:
    """Items batch together when their keys are equal. ``lane`` only separates items (the
    first sentence of a stream runs in its own batch so that it is sent early)."""
    return (tuple(sorted(settings.items())), language, lane)
