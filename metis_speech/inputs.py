"""Checks of a task's inputs that need no model: run before any model is resolved or loaded.

A bad input (a missing, empty, unreadable, silent or too short/long audio file, a file that
is not a video or has no frames, empty text or text without phones) is refused here with a
one-line :class:`~metis_speech.errors.MetisError` that names the input, in well under a
second, so nobody waits for a download to learn that the prompt is silent.

``check_inputs(task, fields, names)`` checks one item of a task; the task commands call it
for every item before choosing the model, and :class:`metis_speech.pipeline.Metis` calls it
at the start of each task method, before it loads any network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import AudioError, MetisError

__all__ = [
    "MIN_PROMPT_S", "MAX_PROMPT_S", "MIN_INPUT_S", "MAX_INPUT_S", "MAX_TARGET_S", "SILENT_PEAK", "SPEAKING_RATE",
    "check_audio", "check_video", "check_text", "check_phones", "check_inputs", "TASK_INPUTS",
]

MIN_PROMPT_S = 1.0
"""Shortest prompt: at least this much of the target voice."""
MAX_PROMPT_S = 30.0
"""Longer prompts are cut to this length (with a warning), not refused."""
MIN_INPUT_S = 0.04
"""Shortest source / mixture / noisy input: two 20 ms frames."""
MAX_INPUT_S = 300.0
"""Longest source / mixture / noisy input (processed in windows)."""
MAX_TARGET_S = 300.0
"""Longest generated speech (``duration``)."""
SILENT_PEAK = 1e-5
"""Audio whose absolute peak stays below this is silent."""
SPEAKING_RATE = (9.0, 20.0)
"""TTS without a duration: (slowest, fastest) phones per second the target is kept within."""
REFINE_MODES = ("none", "wiener", "lsa")
"""SE output modes (``Metis.se(refine=)``, ``TaskDefaults.refine``, ``metis se --refine``)."""

AudioArg = Union[str, os.PathLike, np.ndarray, Tuple[np.ndarray, int]]

# task -> {field: kind}; kinds: prompt / audio (speech input) / video / text / ptext / duration
TASK_INPUTS: Dict[str, Dict[str, str]] = {
    "tts": {"text": "text", "prompt": "prompt", "prompt_text": "ptext", "duration": "duration"},
    "vc": {"source": "audio", "prompt": "prompt"},
    "tse": {"mixture": "audio", "prompt": "prompt", "text": "text"},
    "omni": {"mixture": "audio", "prompt": "prompt", "text": "text"},
    "se": {"input": "audio"},
    "l2s": {"video": "video", "prompt": "prompt"},
}


def _label(what: str, path) -> str:
    return f"{what} {path}" if path is not None else what


def check_audio(audio: AudioArg, what: str, min_s: Optional[float] = None, max_s: Optional[float] = None) -> float:
    """Refuse audio that cannot be used; return its duration in seconds.

    ``audio``: a file path or a ``(waveform, sample_rate)`` pair; ``what`` names it in the
    message (``"--prompt"``, ``"source"``). A file longer than ``max_s`` is refused from its
    header, without reading the samples."""
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio)
        label = _label(what, path)
        if not path.exists():
            raise AudioError(f"{label}: no such file")
        if path.is_dir():
            raise AudioError(f"{label}: is a directory, expected an audio file")
        if not os.access(path, os.R_OK):
            raise AudioError(f"{label}: not readable (permission denied)")
        if path.stat().st_size == 0:
            raise AudioError(f"{label}: the file is empty (0 bytes)")
        if max_s is not None:
            seconds = _header_seconds(path)
            if seconds is not None and seconds > max_s:
                raise AudioError(f"{label}: {seconds:.1f} s long; the limit is {max_s:g} s (cut it into parts)")
        from .audio import load_audio

        try:
            wav, sr = load_audio(path)
        except AudioError as e:  # its message starts with the path; say which input it is
            msg = str(e)
            msg = msg[len(str(path)) + 2:] if msg.startswith(f"{path}: ") else msg
            raise AudioError(f"{label}: {msg}") from None
    elif isinstance(audio, tuple) and len(audio) == 2 and isinstance(audio[0], np.ndarray):
        label = what
        wav, sr = np.asarray(audio[0], dtype=np.float32).reshape(-1), int(audio[1])
        if sr <= 0:
            raise AudioError(f"{label}: sample rate must be positive, got {sr}")
        if wav.size == 0:
            raise AudioError(f"{label}: the waveform has no samples")
        if not np.all(np.isfinite(wav)):
            raise AudioError(f"{label}: contains NaN or infinite samples")
    else:
        raise MetisError(f"{what}: expected a file path or a (waveform, sample_rate) pair, got {type(audio).__name__}")
    seconds = len(wav) / sr
    if float(np.abs(wav).max()) < SILENT_PEAK:
        raise AudioError(f"{label}: the audio is silent")
    if min_s is not None and seconds < min_s:
        raise AudioError(f"{label}: {seconds:.2f} s long; at least {min_s:g} s is needed")
    if max_s is not None and seconds > max_s:
        raise AudioError(f"{label}: {seconds:.1f} s long; the limit is {max_s:g} s (cut it into parts)")
    return seconds


def _header_seconds(path: Path) -> Optional[float]:
    """Duration from the file header when soundfile can read it, else None."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - not a format soundfile knows; load_audio decides
        return None
    return info.frames / info.samplerate if info.samplerate else None


def check_video(video, what: str) -> float:
    """Refuse a video that cannot be read or has no frames; return its duration (s, 0 if unknown)."""
    from .video import probe_video

    if not isinstance(video, (str, os.PathLike)):
        raise MetisError(f"{what}: expected a video file path, got {type(video).__name__}")
    return probe_video(video, what)


def check_text(text, what: str) -> None:
    """Refuse empty text and text with nothing to pronounce (no letter or digit); cheap."""
    if not isinstance(text, str) or not text.strip():
        raise MetisError(f"{what} is empty; give the words " + ("of the prompt" if "prompt" in what else "to speak"))
    if not any(ch.isalnum() for ch in text):
        shown = text.strip() if len(text.strip()) <= 40 else text.strip()[:37] + "..."
        raise MetisError(f"{what} {shown!r} yields no phones; give words (letters and digits count, "
                         "punctuation and symbols alone do not)")


def check_phones(text: str, what: str, language: str = "auto") -> None:
    """Run the text front end on ``text``: refuses text without phones in ``language`` and
    reports a missing G2P back end (espeak-ng, ...). With ``language="auto"`` this may load
    the language identifier (seconds, once per process)."""
    from .text import PhoneTokenizer, TextError

    try:
        PhoneTokenizer(vocab={}).phones(text, language)
    except TextError as e:
        raise MetisError(f"{what}: {e}") from None


def check_inputs(task: str, fields: Mapping[str, object], names: Optional[Mapping[str, str]] = None,
                 language: str = "auto", prompt_language: str = "auto") -> None:
    """Check one item of ``task`` (``fields``: the task's inputs by field name, as in
    :data:`TASK_INPUTS`; absent or None fields are not checked). ``names`` gives the label of
    each field in messages (default: the field name).

    The cheap checks of every input come first (files, audio, video, empty text, duration);
    the text front end runs last, once everything else is known to be good."""
    if task not in TASK_INPUTS:
        raise MetisError(f"unknown task {task!r}; choose one of {sorted(TASK_INPUTS)}")
    names = dict(names or {})
    texts = []
    for field, kind in TASK_INPUTS[task].items():
        value = fields.get(field)
        if value is None:
            continue
        what = names.get(field, field)
        if kind == "prompt":
            check_audio(value, what, min_s=MIN_PROMPT_S)
        elif kind == "audio":
            check_audio(value, what, min_s=MIN_INPUT_S, max_s=MAX_INPUT_S)
        elif kind == "video":
            check_video(value, what)
        elif kind in ("text", "ptext"):
            check_text(value, what)
            texts.append((value, what, language if kind == "text" else prompt_language))
        elif kind == "duration":
            try:
                d = float(value)
            except (TypeError, ValueError):
                raise MetisError(f"{what} must be a number of seconds, got {value!r}") from None
            if not (np.isfinite(d) and 0 < d <= MAX_TARGET_S):
                raise MetisError(f"{what} must be between 0 and {MAX_TARGET_S:g} seconds, got {d:g}")
    for text, what, lang in texts:
        check_phones(text, what, lang)
