"""Waveform reconstruction and adversarial losses for codec training (no torchaudio).

- :class:`MultiResolutionSTFTLoss`: spectral convergence + L1 log magnitude, averaged over
  STFT resolutions (Yamamoto et al., "Parallel WaveGAN", 2020).
- :class:`MultiScaleMelLoss`: L1 between log10 mel spectrograms at several window sizes
  (DAC, Kumar et al. 2023: windows 32..2048, 5..320 mel bins).
- :func:`mel_filterbank`: Slaney-style mel filters (librosa's default; metis_speech.dsp) as a tensor.
- :func:`feature_matching_loss`, :func:`discriminator_loss`, :func:`generator_adv_loss`:
  HiFi-GAN / MelGAN feature matching and hinge or least-squares GAN losses.

Axes: B batch, S samples, F frequency bins (n_fft // 2 + 1), T STFT frames, M mel bins.
Waveforms are (B, S) or (B, 1, S).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..dsp import centred_stft
from ..dsp import mel_filterbank as dsp_mel_filterbank

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
    """|STFT| (centred, :func:`metis_speech.dsp.centred_stft`). wav (B, S) -> (B, F, T)."""
    spec = centred_stft(_flat(wav), n_fft, hop, window, win)
    return (spec.real.square() + spec.imag.square()).clamp(min=eps).sqrt()


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: Optional[float] = None) -> torch.Tensor:
    """Slaney mel filters (:func:`metis_speech.dsp.mel_filterbank`) as a tensor. -> (M, F)."""
    return torch.from_numpy(dsp_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax))


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
