"""Spectral helpers shared by the models, the training losses and the metrics.

- :func:`mel_filterbank`: Slaney-scale, Slaney-normalised triangular mel filters, as
  ``librosa.filters.mel`` with its defaults (numpy).
- :func:`stft_power`: numpy power STFT as librosa computes it (centred, zero padding,
  periodic Hann); the metrics' features (DNSMOS, resemblyzer) were trained on those.
- :func:`centred_stft`: torch complex STFT, centred, reflect-padded when the signal is long
  enough for it and zero-padded otherwise (one rule for the codec's log-mel front end and
  the codec training losses).

Shapes: ``S`` samples, ``B`` batch, ``F`` = n_fft // 2 + 1 bins, ``T`` frames, ``M`` mel bands.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["hz_to_mel", "mel_to_hz", "mel_filterbank", "stft_power", "centred_stft"]

_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0
_MIN_LOG_MEL, _LOGSTEP = _MIN_LOG_HZ / _F_SP, np.log(6.4) / 27.0


def hz_to_mel(f) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, f / _F_SP)


def mel_to_hz(m) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: Optional[float] = None) -> np.ndarray:
    """Mel filters (M, F) float32 over ``fmin``..``fmax`` (default: 0 to Nyquist)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def stft_power(wav: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT|^2 of (S,) audio -> (F, T) float32, centred, zero-padded, periodic Hann."""
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


def centred_stft(wav: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, win: Optional[int] = None) -> torch.Tensor:
    """Complex STFT of (B, S) audio -> (B, F, 1 + S // hop), centred; reflect padding when
    S > n_fft // 2 (what reflection needs), else zeros, so that short clips work too."""
    pad_mode = "reflect" if wav.shape[-1] > n_fft // 2 else "constant"
    return torch.stft(wav, n_fft, hop, win, window.to(wav), center=True, pad_mode=pad_mode, return_complex=True)
