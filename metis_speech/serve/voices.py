"""Saved voices: a reference recording and its transcript, kept under ``<data>/voices``.

Layout: ``voices/<id>/audio.wav`` (the upload decoded and re-encoded, never the raw bytes or
the client's file name) and ``voices/<id>/voice.json`` (id, name, transcript, duration,
created). A voice is written in a temporary folder beside the others and renamed into place,
so a reader (this process or another replica on shared storage) sees either nothing or the
whole voice; a deletion renames the folder away before removing it. Ids are made by the
server and checked against :data:`ID_RE` before they touch a path.

The built-in ``default`` voice is the repository's example prompt (``examples/prompt.wav``
and its transcript ``examples/prompt.txt``), read-only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import AudioError, MetisError

__all__ = ["Voice", "VoiceStore", "VoiceNotFound", "VoiceReadOnly", "ID_RE", "MIN_VOICE_S", "MAX_VOICE_S", "example_voice"]

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MIN_VOICE_S = 1.0
MAX_VOICE_S = 30.0
MAX_TRANSCRIPT_CHARS = 1000
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class VoiceNotFound(MetisError):
    """No voice with this id."""


class VoiceReadOnly(MetisError):
    """A built-in voice cannot be changed."""


@dataclass
class Voice:
    id: str
    name: str
    transcript: str
    duration: float
    created: int
    builtin: bool = False
    audio: str = ""  # path of the recording (not sent to clients)

    def public(self) -> Dict:
        d = asdict(self)
        d.pop("audio")
        d["object"] = "voice"
        return d


def example_voice() -> Optional[Voice]:
    """The built-in voice from ``examples/`` when this installation has that folder."""
    wav, txt = EXAMPLES / "prompt.wav", EXAMPLES / "prompt.txt"
    if not (wav.is_file() and txt.is_file()):
        return None
    import soundfile as sf

    return Voice("default", "default (examples/prompt.wav)", txt.read_text().strip(), round(sf.info(str(wav)).duration, 3),
                 int(wav.stat().st_mtime), builtin=True, audio=str(wav))


class VoiceStore:
    """Voices under ``root`` plus read-only built-in ones."""

    def __init__(self, root: Path, builtin: Optional[List[Voice]] = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.builtin = {v.id: v for v in (builtin or [])}

    def _dir(self, voice_id: str) -> Path:
        if not isinstance(voice_id, str) or not ID_RE.match(voice_id):
            raise VoiceNotFound(f"no voice {voice_id!r}")
        return self.root / voice_id

    def get(self, voice_id: str) -> Voice:
        if voice_id in self.builtin:
            return self.builtin[voice_id]
        d = self._dir(voice_id)
        try:
            meta = json.loads((d / "voice.json").read_text())
        except (OSError, json.JSONDecodeError):
            raise VoiceNotFound(f"no voice {voice_id!r}; GET /v1/voices lists them") from None
        return Voice(meta["id"], meta["name"], meta["transcript"], meta["duration"], meta["created"], audio=str(d / "audio.wav"))

    def list(self) -> List[Voice]:
        saved = []
        for d in self.root.iterdir():
            if d.name.startswith(".") or not ID_RE.match(d.name):
                continue
            try:
                saved.append(self.get(d.name))
            except VoiceNotFound:
                continue  # being written or removed by another process
        return list(self.builtin.values()) + sorted(saved, key=lambda v: (v.created, v.id))

    def add(self, wav: np.ndarray, sample_rate: int, transcript: str, name: Optional[str] = None) -> Voice:
        """Check and save a voice; returns it with its new id."""
        import soundfile as sf

        transcript = (transcript or "").strip()
        if not transcript:
            raise MetisError("transcript is empty; give the words spoken in the recording")
        if len(transcript) > MAX_TRANSCRIPT_CHARS:
            raise MetisError(f"transcript is {len(transcript)} characters long; the limit is {MAX_TRANSCRIPT_CHARS}")
        duration = len(wav) / sample_rate
        if not MIN_VOICE_S <= duration <= MAX_VOICE_S:
            raise AudioError(f"the recording is {duration:.2f} s long; a voice needs {MIN_VOICE_S:.0f} to {MAX_VOICE_S:.0f} s")
        if float(np.abs(wav).max()) < 1e-4:
            raise AudioError("the recording is silent")
        voice_id = "voice_" + secrets.token_hex(6)
        name = (name or "").strip()[:100] or voice_id
        voice = Voice(voice_id, name, transcript, round(duration, 3), int(time.time()))
        tmp = self.root / f".tmp-{voice_id}"
        tmp.mkdir()
        try:
            sf.write(str(tmp / "audio.wav"), np.clip(wav, -1.0, 1.0), int(sample_rate), subtype="PCM_16")
            meta = asdict(voice)
            meta.pop("audio")
            meta.pop("builtin")
            with open(tmp / "voice.json", "w") as f:
                json.dump(meta, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.root / voice_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        voice.audio = str(self.root / voice_id / "audio.wav")
        return voice

    def delete(self, voice_id: str) -> None:
        if voice_id in self.builtin:
            raise VoiceReadOnly(f"voice {voice_id!r} is built in and cannot be deleted")
        d = self._dir(voice_id)
        gone = self.root / f".del-{voice_id}-{secrets.token_hex(4)}"
        try:
            os.rename(d, gone)
        except FileNotFoundError:
            raise VoiceNotFound(f"no voice {voice_id!r}") from None
        shutil.rmtree(gone, ignore_errors=True)
