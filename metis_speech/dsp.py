"""Spectral helpers shared by the models, the training losses and the metrics.

- :func:`mel_filterbank`: Slaney-scale, Slaney-normalised triangular mel filters, as
  ``librosa.filters.mel`` with its defaults (numpy).
- :func:`stft_power`: numpy power STFT as librosa computes it (centred, zero padding,
  periodic Hann); the metrics' features (DNSMOS, resemblyzer) were trained on those.
- :func:`centred_stft`: torch complex STFT, centred, reflect-padded when the signal is long
  enough for it and zero-padded otherwise (one rule for the codec's log-mel front end and
  the codec training losses).
- :func:`wiener_refine`: a noisy recording Wiener-filtered with a speech estimate (e.g. the
  speech SE generated from it) as the speech spectrum (SE's ``refine="wiener"``).
- :func:`lsa_refine`: a noisy recording enhanced by the MMSE log-spectral amplitude
  estimator, its a-priori SNR from the recording (decision-directed) and from a speech
  estimate (SE's ``refine="lsa"``).

Shapes: ``S`` samples, ``B`` batch, ``F`` = n_fft // 2 + 1 bins, ``T`` frames, ``M`` mel bands.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
import torch

__all__ = ["hz_to_mel", "mel_to_hz", "mel_filterbank", "stft_power", "centred_stft", "wiener_refine", "lsa_refine"]

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


def _box_smooth(x: torch.Tensor, size) -> torch.Tensor:
    """(F, T) mean over a (size[0], size[1]) box around each bin, edges averaged over what exists."""
    kf, kt = int(size[0]), int(size[1])
    if kf <= 1 and kt <= 1:
        return x
    return torch.nn.functional.avg_pool2d(x[None, None], (kf, kt), stride=1, padding=(kf // 2, kt // 2),
                                          count_include_pad=False)[0, 0, : x.shape[0], : x.shape[1]]


def _refine_checks(name: str, noisy: np.ndarray, speech, floor: float, noise_percentile: float) -> np.ndarray:
    """The arguments every refine filter shares, checked; ``noisy`` as (S,) float32."""
    noisy = np.asarray(noisy, dtype=np.float32)
    if noisy.ndim != 1 or (speech is not None and np.asarray(speech).ndim != 1):
        raise ValueError(f"{name} takes (S,) mono signals")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be between 0 and 1, got {floor}")
    if not 0.0 < noise_percentile < 100.0:
        raise ValueError(f"noise_percentile must be between 0 and 100, got {noise_percentile}")
    return noisy


def _refine_fft(n_samples: int, sample_rate: int, window_s: float) -> Optional[int]:
    """The refine filters' frame: ``window_s`` seconds rounded to a power of two; None when the
    signal is too short to estimate a noise floor from (the filters then return it unchanged)."""
    n_fft = int(2 ** max(4, round(np.log2(max(window_s * sample_rate, 16)))))
    return None if n_samples <= n_fft else n_fft


def wiener_refine(noisy: np.ndarray, speech: np.ndarray, sample_rate: int, floor: float = 0.1,
                  noise_percentile: float = 10.0, window_s: float = 0.02, smooth=(3, 3)) -> np.ndarray:
    """``noisy`` (S,) filtered by a Wiener gain G = P_s / (P_s + P_n), at least ``floor``:
    the speech power P_s is that of ``speech`` (S',) (an estimate of the clean speech in
    ``noisy``, aligned with it in time, at the same ``sample_rate``; e.g. what SE generated),
    smoothed over a ``smooth`` = (bins, frames) box and scaled so that its total is the
    recording's power above its noise floor; the noise power P_n is that floor: each
    frequency's ``noise_percentile``-th percentile over time (stationary noise). Frames of
    ``window_s`` seconds (rounded to a power of two), hop a quarter of that.

    The result keeps the recording's own speech (its timing, pitch and words, which a
    generated estimate may get wrong) and removes what the estimate says is not speech; it
    cannot remove noise that sounds while the estimate has speech at the same frequencies.
    Returns (S,) float32.
    """
    noisy = _refine_checks("wiener_refine", noisy, speech, floor, noise_percentile)
    speech = np.asarray(speech, dtype=np.float32)
    S = len(noisy)
    n_fft = _refine_fft(S, sample_rate, window_s)
    if n_fft is None:
        return noisy.copy()
    hop = n_fft // 4
    speech = np.pad(speech[:S], (0, max(0, S - len(speech))))
    window = torch.hann_window(n_fft)
    Y = centred_stft(torch.from_numpy(noisy)[None], n_fft, hop, window)[0]  # (F, T)
    E = centred_stft(torch.from_numpy(speech)[None], n_fft, hop, window)[0]
    Py = Y.abs().square().double()
    Pe = _box_smooth(E.abs().square().double(), smooth)
    Pn = torch.from_numpy(np.percentile(Py.numpy(), noise_percentile, axis=1, keepdims=True))
    above = (Py - Pn).clamp_min(0).sum()
    Ps = Pe * (above / Pe.sum().clamp_min(1e-20))
    gain = (Ps / (Ps + Pn).clamp_min(1e-20)).clamp(floor, 1.0)
    out = torch.istft((gain.to(Y.real.dtype) * Y), n_fft, hop, n_fft, window, center=True, length=S)
    return out.numpy().astype(np.float32)


@lru_cache(maxsize=32)
def _floor_bias(n_fft: int, smooth: Tuple[int, int], percentile: float) -> float:
    """How far the ``percentile``-th percentile over time of a ``smooth``-box-smoothed power
    STFT (hop n_fft // 4, Hann) lies below the true power, measured on white Gaussian noise
    (a fixed seed, 400 frames): the factor that makes :func:`lsa_refine`'s noise floor unbiased
    for stationary noise (a low percentile of a raw periodogram is about 10 dB under its mean)."""
    hop = n_fft // 4
    noise = torch.randn(1, hop * 400 + n_fft, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = centred_stft(noise, n_fft, hop, torch.hann_window(n_fft, dtype=torch.float64))[0].abs().square()
    low = np.percentile(_box_smooth(p, smooth).numpy(), percentile, axis=1)
    return float(low.mean() / p.mean())


def lsa_refine(noisy: np.ndarray, speech: Optional[np.ndarray], sample_rate: int, speech_weight: float = 0.3,
               floor: float = 0.05, smoothing: float = 0.95, noise_percentile: float = 10.0,
               window_s: float = 0.032, smooth=(3, 5), speech_smooth=(3, 3)) -> np.ndarray:
    """``noisy`` (S,) enhanced by the MMSE log-spectral amplitude gain (Ephraim & Malah, 1985)
    G = xi / (1 + xi) * exp(E1(v) / 2), v = xi * gamma / (1 + xi), kept within [``floor``, 1].

    - noise power P_n: each frequency's ``noise_percentile``-th percentile over time of the
      power smoothed over a ``smooth`` = (bins, frames) box, divided by what that percentile
      gives on white noise (so unbiased for stationary noise); gamma = |Y|^2 / P_n.
    - a-priori SNR xi: the decision-directed estimate (``smoothing`` = alpha:
      xi_t = alpha * G_{t-1}^2 * gamma_{t-1} + (1 - alpha) * max(gamma_t - 1, 0)), and, when
      ``speech`` (S',) is given (an estimate of the clean speech, time-aligned, e.g. what SE
      generated) and ``speech_weight`` > 0, the geometric blend xi_dd^(1-w) * xi_e^w with
      xi_e = P_e / P_n, P_e the estimate's power smoothed over ``speech_smooth`` and scaled to
      the recording's power above the noise floor.

    Frames of ``window_s`` seconds (rounded to a power of two), hop a quarter of that.
    The output is the recording itself with less noise (its own voice, timing and words);
    it removes stationary noise best, and the estimate helps where the recording's own SNR
    estimate is unsure. Returns (S,) float32.
    """
    from scipy.special import exp1

    noisy = _refine_checks("lsa_refine", noisy, speech, floor, noise_percentile)
    if not 0.0 <= speech_weight <= 1.0:
        raise ValueError(f"speech_weight must be between 0 and 1, got {speech_weight}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    S = len(noisy)
    n_fft = _refine_fft(S, sample_rate, window_s)
    if n_fft is None:
        return noisy.copy()
    hop = n_fft // 4
    smooth = (int(smooth[0]), int(smooth[1]))
    window = torch.hann_window(n_fft)
    Y = centred_stft(torch.from_numpy(noisy)[None], n_fft, hop, window)[0]  # (F, T)
    Py = Y.abs().square().double()
    py = Py.numpy()
    Pn = np.percentile(_box_smooth(Py, smooth).numpy(), noise_percentile, axis=1, keepdims=True)
    Pn = np.maximum(Pn / _floor_bias(n_fft, smooth, float(noise_percentile)), 1e-12 * float(py.mean()) + 1e-30)
    gamma = py / Pn  # (F, T) a-posteriori SNR
    xi_min = 1e-3  # -30 dB

    def gain(xi, g):
        return np.minimum(xi / (1 + xi) * np.exp(0.5 * exp1(np.maximum(xi * g / (1 + xi), 1e-8))), 1.0)

    xi = np.empty_like(gamma)
    prev = None
    for t in range(gamma.shape[1]):  # decision-directed recursion, frame by frame
        ml = np.maximum(gamma[:, t] - 1.0, 0.0)
        x = ml if prev is None else smoothing * prev + (1 - smoothing) * ml
        xi[:, t] = x = np.maximum(x, xi_min)
        prev = gain(x, gamma[:, t]) ** 2 * gamma[:, t]
    if speech is not None and speech_weight > 0:
        est = np.asarray(speech, dtype=np.float32)
        est = np.pad(est[:S], (0, max(0, S - len(est))))
        E = centred_stft(torch.from_numpy(est)[None], n_fft, hop, window)[0]
        Pe = _box_smooth(E.abs().square().double(), speech_smooth).numpy()
        above = np.maximum(py - Pn, 0).sum()
        xi_e = np.maximum(Pe * (above / max(Pe.sum(), 1e-20)) / Pn, 1e-4)
        xi = np.exp((1 - speech_weight) * np.log(np.maximum(xi, 1e-4)) + speech_weight * np.log(xi_e))
    g = np.clip(gain(xi, gamma), floor, 1.0)
    out = torch.istft(torch.from_numpy(g).to(Y.real.dtype) * Y, n_fft, hop, n_fft, window, center=True, length=S)
    return out.numpy().astype(np.float32)
