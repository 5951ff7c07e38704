"""Vocos building blocks: ConvNeXt backbone and the iSTFT waveform head.

Used three times in Metis: as the encoder and (training-only) decoder of the semantic codec,
and as the acoustic codec's decoder (backbone + iSTFT head). Reference: Siuzdak,
"Vocos: Closing the gap between time-domain and Fourier-based neural vocoders" (2023).

Parameter names follow the official checkpoints: ``embed``, ``norm``, ``convnext.N.{dwconv,
norm,pwconv1,pwconv2,gamma}``, ``final_layer_norm`` for the backbone; ``out`` and
``istft.window`` for the head.

Extra axis names: ``C`` input channels, ``F`` frequency bins (n_fft // 2 + 1).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvNeXtBlock", "VocosBackbone", "ISTFT", "ISTFTHead", "Vocos"]

LAYER_NORM_EPS = 1e-6  # every LayerNorm of the Vocos modules
MAX_MAGNITUDE = 100.0  # the head clamps exp(log-magnitude) to this value


class ConvNeXtBlock(nn.Module):
    """1-D ConvNeXt block: depthwise conv k7 -> LN -> Linear -> GELU -> Linear -> x gamma -> + input.

    x: (B, H, T) -> (B, H, T)
    """

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()  # exact (erf) GELU
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)  # (B, T, H)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Conv k7 embedding, LayerNorm, ``num_layers`` ConvNeXt blocks, final LayerNorm.

    x: (B, C, T) -> (B, T, H) with H = ``dim``. The time resolution is unchanged.
    """

    def __init__(
        self,
        input_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        layer_scale: Optional[float] = None,
    ):
        super().__init__()
        layer_scale = layer_scale if layer_scale is not None else 1.0 / num_layers
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.convnext = nn.ModuleList(
            [ConvNeXtBlock(dim, intermediate_dim, layer_scale) for _ in range(num_layers)]
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal (std 0.02) weights and zero biases for every conv and linear layer."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)  # (B, H, T)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding (or torch's "center"), window = periodic Hann.

    ``same`` trims (win_length - hop_length) / 2 samples at each end, so T frames give
    T * hop_length samples. The window is a persistent buffer (``window``), stored as its
    own contiguous tensor so that safetensors can save and load it.

    spec: complex (B, F, T) -> (B, S)
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: Optional[int] = None, padding: str = "same"):
        super().__init__()
        if padding not in ("same", "center"):
            raise ValueError(f"padding must be 'same' or 'center', got {padding!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length or n_fft
        self.padding = padding
        if not 0 < hop_length < self.win_length:
            raise ValueError(f"hop_length {hop_length} must be in 1..win_length-1 ({self.win_length - 1})")
        # periodic hann_window returns a view into an N+1 buffer; clone gives it its own storage
        self.register_buffer("window", torch.hann_window(self.win_length).clone())

    def _overlap_add(self, frames: torch.Tensor, n_frames: int) -> torch.Tensor:
        """frames (B, win, T) -> (B, (T-1)*hop + win) summed with stride hop."""
        length = (n_frames - 1) * self.hop_length + self.win_length
        out = F.fold(
            frames, output_size=(1, length), kernel_size=(1, self.win_length), stride=(1, self.hop_length)
        )
        return out[:, 0, 0, :]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        if spec.dim() != 3:
            raise ValueError(f"expected a complex spectrogram (B, F, T), got shape {tuple(spec.shape)}")
        n_frames = spec.shape[-1]
        pad = (self.win_length - self.hop_length) // 2
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward")  # (B, n_fft, T)
        window = self.window.to(frames.dtype)  # a half-precision copy of the module still runs in fp32
        frames = frames * window[None, :, None]
        keep = slice(pad, (n_frames - 1) * self.hop_length + self.win_length - pad)
        y = self._overlap_add(frames, n_frames)[:, keep]
        envelope = window.square()[None, :, None].expand(1, -1, n_frames)
        envelope = self._overlap_add(envelope, n_frames)[0, keep]
        return y / envelope


class ISTFTHead(nn.Module):
    """Linear H -> n_fft + 2 (log-magnitude | phase), complex spectrum, iSTFT.

    x: (B, T, H) -> (B, S) with S = T * hop_length for "same" padding.
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str = "same"):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, n_fft, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.out(x)
        if h.dtype in (torch.float16, torch.bfloat16):
            h = h.float()  # the FFTs and the magnitude clamp need fp32
        log_mag, phase = h.transpose(1, 2).chunk(2, dim=1)  # (B, F, T) each
        mag = torch.clip(torch.exp(log_mag), max=MAX_MAGNITUDE)
        spec = mag * (torch.cos(phase) + 1j * torch.sin(phase))
        return self.istft(spec)


class Vocos(nn.Module):
    """Backbone + iSTFT head. x: (B, C, T) -> waveform (B, 1, S)."""

    def __init__(
        self,
        input_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        n_fft: int,
        hop_length: int,
        padding: str = "same",
    ):
        super().__init__()
        self.backbone = VocosBackbone(input_channels, dim, intermediate_dim, num_layers)
        self.head = ISTFTHead(dim, n_fft, hop_length, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))[:, None, :]
