"""Audio input/output shared by every part of the package.

Waveforms are float32 numpy arrays of shape (S,) (mono) in [-1, 1].
Files are read with soundfile (wav/flac/ogg/mp3 where libsndfile supports it) and fall
back to ffmpeg for anything else; resampling uses soxr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from .errors import AudioError

__all__ = ["load_audio", "save_audio", "resample", "to_mono", "frame_power"]

PathLike = Union[str, os.PathLike]


def to_mono(wav: np.ndarray) -> np.ndarray:
    """(S,) or (S, channels) -> (S,) by averaging channels."""
    wav = np.asarray(wav)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    elif wav.ndim != 1:
        raise AudioError(f"expected a 1-D or 2-D waveform, got shape {wav.shape}")
    return wav.astype(np.float32, copy=False)


def frame_power(wav: np.ndarray, frame_len: int) -> np.ndarray:
    """Mean power of each whole non-overlapping ``frame_len``-sample frame of (S,) audio ->
    (S // frame_len,) float64 (a trailing partial frame is dropped)."""
    x = np.asarray(wav, dtype=np.float64)
    k = len(x) // max(1, frame_len)
    return np.square(x[: k * frame_len]).reshape(k, frame_len).mean(axis=1)


def active_level_db(wav: np.ndarray, sample_rate: int, frame_s: float = 0.02, floor_db: float = 40.0) -> float:
    """Level in dB (re full scale) of the active part of (S,) audio: mean power of the 20 ms
    frames within ``floor_db`` of the loudest frame (pauses do not lower it); -inf if silent."""
    power = frame_power(wav, max(1, int(frame_s * sample_rate)))
    if power.size == 0:  # shorter than one frame: the whole clip
        x = np.asarray(wav, np.float64)
        p = float(np.mean(x**2)) if len(x) else 0.0
        return 10 * np.log10(p) if p > 0 else float("-inf")
    top = float(power.max())
    if top <= 0:
        return float("-inf")
    active = power[power >= top * 10 ** (-floor_db / 10)]
    return float(10 * np.log10(np.mean(active)))


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample (S,) float audio with soxr (high quality)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise AudioError(f"invalid sample rates {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return np.asarray(wav, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(wav, dtype=np.float32), orig_sr, target_sr, quality="HQ").astype(np.float32)


def _read_with_ffmpeg(path: Path) -> Tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: not a format soundfile can read, and ffmpeg is not installed")
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: not a readable audio file ({msg[-1] if msg else 'ffmpeg failed'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy(), 48000


def load_audio(path: PathLike, sample_rate: Optional[int] = None, mono: bool = True) -> Tuple[np.ndarray, int]:
    """Read an audio file -> (wav (S,) float32, sample_rate).

    With ``sample_rate`` the audio is resampled to it. Raises :class:`AudioError` with a
    one-line message for missing, empty, corrupt or non-finite files.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    import soundfile as sf

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception:  # noqa: BLE001 - soundfile raises several types; try ffmpeg next
        wav, sr = _read_with_ffmpeg(path)
    if mono:
        wav = to_mono(wav)
    if wav.size == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, int(sr)


def save_audio(path: PathLike, wav: np.ndarray, sample_rate: int) -> Path:
    """Write (S,) or (S, channels) float audio atomically (temp file + rename).

    The format follows the suffix (.wav, .flac, .ogg). An existing file at ``path`` is only
    replaced once the new one is complete.
    """
    import soundfile as sf

    path = Path(path)
    wav = np.asarray(wav, dtype=np.float32)
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"refusing to write {path}: waveform contains NaN or infinite samples")
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak > 1.0:  # keep it playable rather than clipped
        wav = wav / peak * 0.99
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unsupported output format {path.suffix!r}; use .wav, .flac or .ogg")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=str(path.parent))
    os.close(fd)
    try:
        sf.write(tmp, wav, int(sample_rate), format=fmt)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
