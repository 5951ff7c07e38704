"""Audio in and out of the server, in memory.

Uploads are decoded from bytes with soundfile (WAV, FLAC, OGG, MP3); other containers (the
browser's WebM/Opus recordings, M4A, ...) go through ffmpeg, from a temporary file inside
the server's data folder that is removed at once. Responses are encoded to the OpenAI
``response_format`` values: ``wav``, ``flac``, ``pcm`` (raw 16-bit little-endian mono) with
soundfile alone; ``mp3`` and ``opus`` with soundfile where its libsndfile can, else ffmpeg;
``aac`` with ffmpeg. A format that needs a missing ffmpeg is a :class:`FormatUnavailable`.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Tuple

import numpy as np

from ..audio import to_mono
from ..errors import AudioError, MetisError

__all__ = ["FORMATS", "STREAM_FORMATS", "FormatUnavailable", "decode_upload", "encode", "wav_stream_header", "pcm16"]

# response_format -> media type
FORMATS = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}
# formats whose pieces can be sent one after another as they are ready
STREAM_FORMATS = ("wav", "pcm", "mp3")

_SF = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}
_FFMPEG = {"mp3": ["-f", "mp3", "-c:a", "libmp3lame", "-b:a", "64k"],
           "opus": ["-f", "ogg", "-c:a", "libopus", "-b:a", "48k"],
           "aac": ["-f", "adts", "-c:a", "aac", "-b:a", "96k"]}


class FormatUnavailable(MetisError):
    """The server cannot produce this audio format (ffmpeg missing)."""


def _soundfile_can(fmt: str) -> bool:
    import soundfile as sf

    if fmt not in _SF:
        return False
    major, sub = _SF[fmt]
    return major in sf.available_formats() and sub in sf.available_subtypes(major)


def pcm16(wav: np.ndarray) -> bytes:
    """(S,) float in [-1, 1] -> 16-bit little-endian PCM bytes."""
    x = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    return (x * 32767.0).round().astype("<i2").tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header for a stream of unknown length (sizes set to the maximum, as
    streaming servers and players do)."""
    byte_rate = sample_rate * 2
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, 2, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


def encode(wav: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode (S,) float audio as ``fmt`` (a key of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise MetisError(f"unknown response_format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "pcm":
        return pcm16(wav)
    if _soundfile_can(fmt):
        import soundfile as sf

        buf = io.BytesIO()
        major, sub = _SF[fmt]
        sf.write(buf, np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), int(sample_rate), format=major, subtype=sub)
        return buf.getvalue()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FormatUnavailable(f"response_format {fmt!r} needs ffmpeg, which is not installed on this server; "
                                f"wav, flac and pcm work without it")
    proc = subprocess.run([ffmpeg, "-v", "error", "-f", "f32le", "-ar", str(int(sample_rate)), "-ac", "1", "-i", "pipe:0",
                           *_FFMPEG[fmt], "pipe:1"], input=np.asarray(wav, dtype="<f4").tobytes(), capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FormatUnavailable(f"ffmpeg could not encode {fmt!r} on this server ({msg[-1] if msg else 'no output'})")
    return proc.stdout


def decode_upload(data: bytes, what: str, tmp_dir: Path) -> Tuple[np.ndarray, int]:
    """Uploaded file bytes -> (wav (S,) float32 mono, sample_rate). ``what`` names the field
    in error messages; ``tmp_dir`` (inside the data folder) holds ffmpeg's input briefly."""
    import soundfile as sf

    if not data:
        raise AudioError(f"{what}: the uploaded file is empty")
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception:  # noqa: BLE001 - libsndfile raises several types for unknown containers
        wav, sr = _ffmpeg_decode(data, what, tmp_dir)
    wav = to_mono(wav)
    if wav.size == 0:
        raise AudioError(f"{what}: the audio has no samples")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{what}: the audio contains NaN or infinite samples")
    return wav, int(sr)


def _ffmpeg_decode(data: bytes, what: str, tmp_dir: Path) -> Tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(f"{what}: not a WAV, FLAC, OGG or MP3 file, and other formats need ffmpeg, "
                         f"which is not installed on this server")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="upload-", dir=str(tmp_dir))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        proc = subprocess.run([ffmpeg, "-v", "error", "-i", tmp, "-f", "f32le", "-ac", "1", "-ar", "24000", "pipe:1"],
                              capture_output=True, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(tmp)
    if proc.returncode != 0 or not proc.stdout:
        raise AudioError(f"{what}: not a readable audio file")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32), 24000
