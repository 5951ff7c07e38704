"""Waveform reconstruction and adversarial losses for codec training (no torchaudio).

- :class:`MultiResolutionSTFTLoss`: spectral convergence + L1 log magnitude, averaged over
  STFT resolutions (Yamamoto et al., "Parallel WaveGAN", 2020).
- :class:`MultiScaleMelLoss`: L1 between log10 mel spectrograms at several window sizes
  (DAC, Kumar et al. 2023: windows 32..2048, 5..320 mel bins).
- :func:`mel_filterbank`: Slaney-style mel filters (librosa's default), written in numpy.
- :func:`feature_matching_loss`, :func:`discriminator_loss`, :func:`generator_adv_loss`:
  HiFi-GAN / MelGAN feature matching and hinge or least-squares GAN losses.

Axes: B batch, S samples, F frequency bins (n_fft // 2 + 1), T STFT frames, M mel bins.
Waveforms are (B, S) or (B, 1, S).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "stft_magnitude",
    "mel_filterbank",
    "MultiResolutionSTFTLoss",
    "MultiScaleMelLoss",
    "feature_matching_loss",
    "discriminator_loss",
    "generator_adv_loss",
    "GAN_LOSSES",
]

STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))  # (n_fft, hop, win)
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)  # DAC
MEL_BINS = (5, 10, 20, 40, 80, 160, 320)
GAN_LOSSES = ("hinge", "lsgan")


def _flat(wav: torch.Tensor) -> torch.Tensor:
    if wav.dim() == 3:
        wav = wav[:, 0]
    if wav.dim() != 2:
        raise ValueError(f"expected a waveform batch (B, S) or (B, 1, S), got shape {tuple(wav.shape)}")
    return wav.float()


def stft_magnitude(wav: torch.Tensor, n_fft: int, hop: int, win: int, window: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """|STFT| (centre, reflect padding when the signal allows it). wav (B, S) -> (B, F, T)."""
    wav = _flat(wav)
    pad_mode = "reflect" if wav.shape[-1] > n_fft // 2 else "constant"
    spec = torch.stft(wav, n_fft, hop, win, window.to(wav), center=True, pad_mode=pad_mode, return_complex=True)
    return (spec.real.square() + spec.imag.square()).clamp(min=eps).sqrt()


def _hz_to_mel(f):
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa ``htk=False``)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: Optional[float] = None) -> torch.Tensor:
    """Slaney-normalised triangular mel filters, as ``librosa.filters.mel`` (defaults). -> (M, F)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of ||  |Y| - |X| ||_F / || |Y| ||_F  +  mean | log|Y| - log|X| |.

    forward(x_hat, x): waveforms (B, S) or (B, 1, S) -> scalar; 0 for identical inputs.
    """

    def __init__(self, resolutions: Sequence[Sequence[int]] = STFT_RESOLUTIONS):
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window_{i}", torch.hann_window(win), persistent=False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for i, (n_fft, hop, win) in enumerate(self.resolutions):
            w = getattr(self, f"window_{i}")
            m_hat, m = stft_magnitude(x_hat, n_fft, hop, win, w), stft_magnitude(x, n_fft, hop, win, w)
            sc = torch.linalg.norm(m - m_hat, dim=(1, 2)) / torch.linalg.norm(m, dim=(1, 2)).clamp(min=1e-7)
            mag = (m.log() - m_hat.log()).abs().mean(dim=(1, 2))
            total = total + sc.mean() + mag.mean()
        return total / len(self.resolutions)


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of L1( log10 mel(x_hat), log10 mel(x) ), hop = window / 4 (DAC).

    forward(x_hat, x): waveforms (B, S) or (B, 1, S) -> scalar; 0 for identical inputs.
    """

    def __init__(
        self,
        sample_rate: int,
        windows: Sequence[int] = MEL_WINDOWS,
        n_mels: Sequence[int] = MEL_BINS,
        clamp: float = 1e-5,
    ):
        super().__init__()
        if len(windows) != len(n_mels):
            raise ValueError("windows and n_mels must have the same length")
        self.windows, self.clamp = [int(w) for w in windows], clamp
        for i, (w, m) in enumerate(zip(self.windows, n_mels)):
            self.register_buffer(f"fb_{i}", mel_filterbank(sample_rate, w, int(m)), persistent=False)
            self.register_buffer(f"window_{i}", torch.hann_window(w), persistent=False)

    def mel(self, wav: torch.Tensor, i: int) -> torch.Tensor:
        """log10 mel spectrogram at scale i. wav (B, S) -> (B, M, T)."""
        w = self.windows[i]
        mag = stft_magnitude(wav, w, w // 4, w, getattr(self, f"window_{i}"))
        return torch.log10((getattr(self, f"fb_{i}") @ mag).clamp(min=self.clamp))

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for i in range(len(self.windows)):
            total = total + F.l1_loss(self.mel(x_hat, i), self.mel(x, i))
        return total / len(self.windows)


def feature_matching_loss(fmaps_real: List[List[torch.Tensor]], fmaps_fake: List[List[torch.Tensor]]) -> torch.Tensor:
    """Mean over discriminators and layers of L1(fake, real.detach()) (MelGAN/HiFi-GAN)."""
    terms = [F.l1_loss(f, r.detach()) for rs, fs in zip(fmaps_real, fmaps_fake) for r, f in zip(rs, fs)]
    return torch.stack(terms).mean()


def discriminator_loss(real: List[torch.Tensor], fake: List[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Mean over discriminators: hinge relu(1-D(x)) + relu(1+D(G(z))), or LSGAN (1-D(x))² + D(G(z))²."""
    _check(kind)
    terms = []
    for r, f in zip(real, fake):
        if kind == "hinge":
            terms.append(F.relu(1 - r).mean() + F.relu(1 + f).mean())
        else:
            terms.append((1 - r).square().mean() + f.square().mean())
    return torch.stack(terms).mean()


def generator_adv_loss(fake: List[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Mean over discriminators: hinge relu(1-D(G(z))) (Vocos) or LSGAN (1-D(G(z)))²."""
    _check(kind)
    terms = [F.relu(1 - f).mean() if kind == "hinge" else (1 - f).square().mean() for f in fake]
    return torch.stack(terms).mean()


def _check(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}")
