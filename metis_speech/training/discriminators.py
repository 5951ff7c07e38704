"""GAN discriminators for acoustic codec training (training only; never shipped with a codec).

- :class:`MultiPeriodDiscriminator` (HiFi-GAN, Kong et al. 2020): the waveform is folded
  into (S / p, p) for p in 2, 3, 5, 7, 11 and judged by 2-D convs along time.
- :class:`MultiResolutionDiscriminator` (UnivNet, Jang et al. 2021; as in Vocos/DAC): the
  magnitude STFT at several resolutions is judged by 2-D convs over (time, frequency).
- :class:`CodecDiscriminator`: both, as Vocos trains its decoder.

Every discriminator returns ``(logits, fmaps)``: a list with one logit tensor per
sub-discriminator and a list (per sub-discriminator) of its intermediate feature maps, for
:func:`~metis_speech.training.losses.feature_matching_loss`. ``width`` scales the channel
counts (1.0 = the papers' sizes; tiny recipes use 1/8 or less).

Axes: B batch, S samples, p period, F frequency bins, T STFT frames, c channels.
"""

from __future__ import annotations

import warnings
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import weight_norm

from .losses import STFT_RESOLUTIONS, stft_magnitude

__all__ = [
    "PeriodDiscriminator",
    "MultiPeriodDiscriminator",
    "ResolutionDiscriminator",
    "MultiResolutionDiscriminator",
    "CodecDiscriminator",
]

PERIODS = (2, 3, 5, 7, 11)
LRELU_SLOPE = 0.1
DiscOut = Tuple[List[torch.Tensor], List[List[torch.Tensor]]]


def _wn(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return weight_norm(module)


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def _wav(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        x = x[:, None]
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"expected a waveform batch (B, S) or (B, 1, S), got shape {tuple(x.shape)}")
    return x


class PeriodDiscriminator(nn.Module):
    """One HiFi-GAN period discriminator.

    wav (B, 1, S) -> reflect-pad S to a multiple of p -> (B, 1, S/p, p) -> convs k(5,1)
    stride (3,1), channels 32, 128, 512, 1024, 1024 (x width) -> logits (B, T') flattened,
    fmaps: 6 tensors (B, c, T_i, p).
    """

    def __init__(self, period: int, width: float = 1.0):
        super().__init__()
        self.period = period
        chans = [1] + [_ch(c, width) for c in (32, 128, 512, 1024)]
        convs = [_wn(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0))) for a, b in zip(chans[:-1], chans[1:])]
        convs.append(_wn(nn.Conv2d(chans[-1], chans[-1], (5, 1), 1, padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.post = _wn(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        x = _wav(wav)
        b, c, s = x.shape
        if s % self.period:
            n_pad = self.period - s % self.period
            x = F.pad(x, (0, n_pad), mode="reflect" if n_pad < s else "constant")
        x = x.view(b, c, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiPeriodDiscriminator(nn.Module):
    """Period discriminators for ``periods`` (default 2, 3, 5, 7, 11). wav (B, 1, S) -> (logits, fmaps)."""

    def __init__(self, periods: Sequence[int] = PERIODS, width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(int(p), width) for p in periods)

    def forward(self, wav: torch.Tensor) -> DiscOut:
        logits, fmaps = [], []
        for d in self.discriminators:
            y, f = d(wav)
            logits.append(y)
            fmaps.append(f)
        return logits, fmaps


class ResolutionDiscriminator(nn.Module):
    """One UnivNet resolution discriminator on |STFT|.

    wav (B, 1, S) -> magnitude (B, 1, T, F) -> conv k(3,9), three convs k(3,9) stride (1,2),
    conv k(3,3), 32 channels (x width), leaky ReLU -> post conv k(3,3) to 1 channel.
    Returns logits (B, T * F') flattened and 6 fmaps (B, c, T, F_i).
    """

    def __init__(self, n_fft: int, hop: int, win: int, width: float = 1.0):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        c = _ch(32, width)
        self.convs = nn.ModuleList(
            [
                _wn(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
                _wn(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                _wn(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                _wn(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                _wn(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.post = _wn(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        mag = stft_magnitude(_wav(wav)[:, 0], self.n_fft, self.hop, self.win, self.window)  # (B, F, T)
        x = mag.transpose(1, 2)[:, None]  # (B, 1, T, F)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiResolutionDiscriminator(nn.Module):
    """Resolution discriminators for ``resolutions`` ((n_fft, hop, win), ...). wav -> (logits, fmaps)."""

    def __init__(self, resolutions: Sequence[Sequence[int]] = STFT_RESOLUTIONS, width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*map(int, r), width=width) for r in resolutions)

    def forward(self, wav: torch.Tensor) -> DiscOut:
        logits, fmaps = [], []
        for d in self.discriminators:
            y, f = d(wav)
            logits.append(y)
            fmaps.append(f)
        return logits, fmaps


class CodecDiscriminator(nn.Module):
    """Multi-period + multi-resolution discriminators (Vocos). wav (B, 1, S) -> (logits, fmaps),
    the lists concatenated (MPD first). A width of 0 leaves that discriminator out (on a CPU
    the small-channel 2-D convs of the MRD cost ~3x the MPD per step)."""

    def __init__(
        self,
        periods: Sequence[int] = PERIODS,
        resolutions: Sequence[Sequence[int]] = STFT_RESOLUTIONS,
        mpd_width: float = 1.0,
        mrd_width: float = 1.0,
    ):
        super().__init__()
        if mpd_width < 0 or mrd_width < 0 or (mpd_width == 0 and mrd_width == 0):
            raise ValueError(f"discriminator widths must be >= 0 and not both 0, got mpd {mpd_width}, mrd {mrd_width}")
        self.mpd = MultiPeriodDiscriminator(periods, mpd_width) if mpd_width > 0 else None
        self.mrd = MultiResolutionDiscriminator(resolutions, mrd_width) if mrd_width > 0 else None

    def forward(self, wav: torch.Tensor) -> DiscOut:
        logits: List[torch.Tensor] = []
        fmaps: List[List[torch.Tensor]] = []
        for d in (self.mpd, self.mrd):
            if d is not None:
                lg, fm = d(wav)
                logits += lg
                fmaps += fm
        return logits, fmaps
