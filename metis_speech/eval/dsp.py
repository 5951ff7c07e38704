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

__all__ = ["stft_power", "mel_filterbank", "melspectrogram", "power_to_db", "align"]


def stft_power(wav: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT|^2 of (S,) audio -> (F = n_fft // 2 + 1, T), centred, zero-padded, periodic Hann."""
    wav = np.asarray(wav, dtype=np.float32)
    pad = n_fft // 2
    x = np.pad(wav, (pad, pad), mode="constant")
    n_frames = 1 + (len(x) - n_fft) // hop_length
    if n_frames < 1:
        return np.zeros((n_fft // 2 + 1, 0), dtype=np.float32)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]  # (T, n_fft)
    spec = np.fft.rfft(x[idx] * window, axis=1)  # (T, F)
    return (np.abs(spec) ** 2).T.astype(np.float32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    mels = f / f_sp
    high = f >= min_log_hz
    mels[high] = min_log_mel + np.log(f[high] / min_log_hz) / logstep
    return mels


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    freqs = f_sp * m
    high = m >= min_log_mel
    freqs[high] = min_log_hz * np.exp(logstep * (m[high] - min_log_mel))
    return freqs


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style mel filterbank (M, F), as ``librosa.filters.mel`` with default arguments."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sample_rate / 2.0]))[0], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


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
