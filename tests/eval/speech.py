"""Speech synthesised on the fly for the evaluation tests (no committed audio).

flite's voices awb, rms, slt and kal16 are four different real speakers behind diphone /
clustergen synthesis at 16 kHz; espeak-ng adds formant voices. The tests need flite
(Debian ``flite``) and the ``eval`` extra; they fail with a message, never skip, when
these are missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from metis_speech.audio import load_audio, save_audio

SR = 16000
# ~2.3-3 s each: DNSMOS tiles short clips to 9 s, so these cost one to three 9 s windows
SENTENCES = {
    "a": "My brother plays the piano every evening.",
    "b": "Turn left at the next traffic light.",
}
VOICES = ("awb", "rms", "slt", "kal16")


def _need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package '{name}'); the eval tests synthesise speech with it")
    return path


def synth(text: str, voice: str, path: Path) -> Path:
    """flite voice (awb, rms, slt, kal16) or espeak-ng voice ('espeak:en+f3') -> 16 kHz wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.wav")
    if voice.startswith("espeak:"):
        cmd = [_need_binary("espeak-ng"), "-v", voice.split(":", 1)[1], "-w", str(raw), text]
    else:
        cmd = [_need_binary("flite"), "-voice", voice, "-t", text, "-o", str(raw)]
    subprocess.run(cmd, check=True, capture_output=True)
    wav, _ = load_audio(raw, SR)
    raw.unlink()
    save_audio(path, 0.9 * wav / np.abs(wav).max(), SR)
    return path


def add_noise(wav: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the signal power."""
    noise = np.random.default_rng(seed).standard_normal(len(wav))
    noise *= np.sqrt(np.mean(wav**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (wav + noise).astype(np.float32)


def mix(target: np.ndarray, interferer: np.ndarray, snr_db: float) -> np.ndarray:
    """Target + interferer (tiled or cut to the target's length) at ``snr_db``."""
    interferer = np.resize(interferer, len(target))
    gain = np.sqrt(np.mean(target**2) / np.mean(interferer**2) / 10 ** (snr_db / 10))
    return (target + gain * interferer).astype(np.float32)
