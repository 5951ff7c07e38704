"""Small numpy signal helpers shared by the metrics.

``melspectrogram`` reproduces ``librosa.feature.melspectrogram`` with its defaults (centred
STFT with zero padding, periodic Hann window, power 2, Slaney mel scale and norm) to within
float32 rounding. The DNSMOS P.808 model and the resemblyzer encoder were trained on
librosa features; computing them here gives the same numbers without librosa's numba
compilation (about 30 s on a cold cache, 3 s per process on a warm one).

Shapes: ``S`` samples, ``T`` frames, ``F`` frequency bins, ``M`` mel bands.
"""

from __future__ import annotations

import numpy as np

from ..dsp import mel_filterbank, stft_power

__all__ = ["stft_power", "mel_filterbank", "melspectrogram", "power_to_db", "align"]


def melspectrogram(wav: np.ndarray, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> np.ndarray:
    """Power mel spectrogram (M, T) of (S,) audio, equal to librosa's with these arguments."""
    return (mel_filterbank(sample_rate, n_fft, n_mels) @ stft_power(wav, n_fft, hop_length)).astype(np.float32)


def power_to_db(spec: np.ndarray, amin: float = 1e-10, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(spec, ref=np.max)``: dB relative to the peak, floored at -top_db."""
    log_spec = 10.0 * np.log10(np.maximum(amin, spec))
    log_spec -= 10.0 * np.log10(max(amin, float(np.max(spec)) if spec.size else amin))
    return np.maximum(log_spec, log_spec.max() - top_db) if log_spec.size else log_spec


def align(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim two (S,) signals to their common length (intrusive metrics need equal lengths)."""
    n = min(len(a), len(b))
    return a[:n], b[:n]
