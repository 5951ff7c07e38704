"""Visual encoder for lip-to-speech: 96×96 grayscale mouth crops at 25 fps -> 768-dim features.

The reference L2S model (METIS_SPEC.md §3) consumes 768-dim visual features at 25 fps but its
encoder was never published; its call signature matches an Auto-AVSR style visual encoder
(Ma et al., "Auto-AVSR", ICASSP 2023; Ma et al., "Visual speech recognition for multiple
languages in the wild", 2022). This module is the project's own encoder of that kind,
written from the papers' description; the project trains it (training issue).

Axes (the package glossary, plus): N - video frames (25 fps; 2N frames at 50 Hz), D -
conformer width, h/w - image height/width; C in the front end's comments is its channels.

Data flow::

    crops (B, N, 96, 96) in [0, 1]
      -> normalise ((x - mean) / std)
      -> 3D conv 5×7×7, stride (1, 2, 2) + BN + SiLU + max-pool 1×3×3 stride (1, 2, 2)
                                                  (B, 64, N, 24, 24)
      -> ResNet-18 trunk per frame (2D, widths 64/128/256/512) + global average pool
                                                  (B, N, 512)
      -> Linear 512 -> D, relative sinusoidal positions
      -> Conformer × L (macaron FFN ½, rel-pos MHSA, conv module k=31, FFN ½, LayerNorm)
      -> LayerNorm, Linear d -> 768 (identity when d == 768)
                                                  (B, N, 768)

Padding: frames at or beyond ``lengths`` never influence valid outputs (in eval mode): the
input frames are zeroed before the only temporal convolution of the front end (which is then
the same as that convolution's own zero padding), attention ignores padded keys, and the
conformer's depthwise convolution sees zeros there. Padded output rows are zero. In training
mode the BatchNorm statistics include padded frames, as in Auto-AVSR.

Helpers for stage 1 (reference L2S): :func:`to_50hz` (``F.interpolate(scale_factor=2,
mode="linear", align_corners=False)`` along time) and :func:`l2s_condition` (zero rows for
the prompt, then the 50 Hz features).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VisualEncoderConfig",
    "VisualEncoder",
    "lengths_to_mask",
    "to_50hz",
    "l2s_condition",
]


@dataclass
class VisualEncoderConfig:
    """Sizes of :class:`VisualEncoder`. Defaults = Auto-AVSR's visual encoder (182 M
    parameters: front end 11 M, conformer 171 M); :meth:`tiny` is a CPU-test size (0.27 M)."""

    in_size: int = 96  # square mouth crops, pixels
    frontend_channels: int = 64  # 3D conv output channels
    frontend_kernel: Tuple[int, int, int] = (5, 7, 7)  # (time, height, width)
    trunk_widths: Tuple[int, ...] = (64, 128, 256, 512)  # ResNet-18 stages
    trunk_blocks: Tuple[int, ...] = (2, 2, 2, 2)  # basic blocks per stage (18 layers)
    conformer_dim: int = 768
    conformer_layers: int = 12
    conformer_heads: int = 12
    conformer_ffn: int = 3072
    conv_kernel: int = 31  # depthwise kernel of the conformer convolution module
    dropout: float = 0.1
    out_dim: int = 768  # feature size handed to the stage-1 L2S adapter (cond_dim)
    fps: int = 25
    pixel_mean: float = 0.421  # Auto-AVSR grayscale normalisation
    pixel_std: float = 0.165

    def __post_init__(self):
        self.frontend_kernel = tuple(self.frontend_kernel)
        self.trunk_widths = tuple(self.trunk_widths)
        self.trunk_blocks = tuple(self.trunk_blocks)
        if self.conformer_dim % self.conformer_heads:
            raise ValueError(
                f"conformer_dim {self.conformer_dim} is not divisible by conformer_heads {self.conformer_heads}"
            )
        if self.conv_kernel % 2 == 0 or self.frontend_kernel[0] % 2 == 0:
            raise ValueError("conv_kernel and the front end's temporal kernel must be odd")
        if len(self.trunk_widths) != len(self.trunk_blocks):
            raise ValueError("trunk_widths and trunk_blocks must have the same length")

    @classmethod
    def tiny(cls) -> "VisualEncoderConfig":
        """A small encoder for CPU tests: narrow trunk, conformer 64 × 2 layers."""
        return cls(
            frontend_channels=8, trunk_widths=(8, 16, 32, 64), trunk_blocks=(1, 1, 1, 1),
            conformer_dim=64, conformer_layers=2, conformer_heads=4, conformer_ffn=128,
            conv_kernel=7, dropout=0.0,
        )


# ---------------------------------------------------------------- helpers
def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths (B,) -> bool mask (B, max_len), True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def to_50hz(features: torch.Tensor) -> torch.Tensor:
    """25 fps features -> 50 Hz, exactly as the reference L2S model does.

    features: (N, C) or (B, N, C) -> (2N, C) or (B, 2N, C), by
    ``F.interpolate(x.transpose(1, 2), scale_factor=2, mode="linear", align_corners=False)``.
    """
    squeeze = features.dim() == 2
    x = features[None] if squeeze else features
    if x.dim() != 3:
        raise ValueError(f"expected (N, C) or (B, N, C) features, got shape {tuple(features.shape)}")
    y = F.interpolate(x.transpose(1, 2), scale_factor=2, mode="linear", align_corners=False).transpose(1, 2)
    return y[0] if squeeze else y


def l2s_condition(features_25fps: torch.Tensor, prompt_frames: int) -> torch.Tensor:
    """Frame condition of stage 1 for L2S: ``[zeros(prompt_frames) ; to_50hz(features)]``.

    features_25fps: (N, C) or (B, N, C); prompt_frames: Tp, the prompt's length in 50 Hz
    semantic frames. Returns (Tp + 2N, C) or (B, Tp + 2N, C), same dtype and device; the
    prompt rows are zero (the reference zero-pads the prompt region).
    """
    if prompt_frames < 0:
        raise ValueError(f"prompt_frames must be >= 0, got {prompt_frames}")
    feats = to_50hz(features_25fps)
    pad = feats.new_zeros(*feats.shape[:-2], prompt_frames, feats.shape[-1])
    return torch.cat([pad, feats], dim=-2)


def _sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """positions (n,) float -> (n, dim) sin/cos table (interleaved halves: [sin | cos])."""
    inv = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    ang = positions.float()[:, None] * inv[None, :]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


# ---------------------------------------------------------------- front end
class BasicBlock(nn.Module):
    """ResNet basic block: (n, cin, h, w) -> (n, cout, h/stride, w/stride)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.SiLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + skip)


class VisualFrontend(nn.Module):
    """3D conv stem + per-frame 2D ResNet: crops (B, N, h, w) -> (B, N, trunk_widths[-1])."""

    def __init__(self, cfg: VisualEncoderConfig):
        super().__init__()
        kt, kh, kw = cfg.frontend_kernel
        c = cfg.frontend_channels
        self.stem = nn.Sequential(
            nn.Conv3d(1, c, (kt, kh, kw), stride=(1, 2, 2), padding=(kt // 2, kh // 2, kw // 2), bias=False),
            nn.BatchNorm3d(c),
            nn.SiLU(),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        blocks = []
        cin = c
        for i, (width, n) in enumerate(zip(cfg.trunk_widths, cfg.trunk_blocks)):
            for j in range(n):
                blocks.append(BasicBlock(cin, width, stride=2 if (i > 0 and j == 0) else 1))
                cin = width
        self.trunk = nn.Sequential(*blocks)
        self.out_dim = cin

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        b, t = crops.shape[:2]
        x = self.stem(crops[:, None])  # (B, C, N, h/4, w/4)
        x = x.transpose(1, 2).flatten(0, 1)  # (B·N, C, h/4, w/4)
        x = self.trunk(x).mean(dim=(2, 3))  # (B·N, 512)
        return x.view(b, t, -1)


# ---------------------------------------------------------------- conformer
class RelPosSelfAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (as in ESPnet's
    conformer): score(i, j) = (q_i + u)·k_j + (q_i + v)·W_p p(i - j), p sinusoidal.

    x: (B, N, D), mask: (B, N) bool (True = valid) -> (B, N, D).
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.pos = nn.Linear(dim, dim, bias=False)
        self.bias_u = nn.Parameter(torch.zeros(heads, self.head_dim))
        self.bias_v = nn.Parameter(torch.zeros(heads, self.head_dim))
        nn.init.xavier_uniform_(self.bias_u)
        nn.init.xavier_uniform_(self.bias_v)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        split = lambda y: y.view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, N, hd)
        q = self.q(x).view(b, t, self.heads, self.head_dim)
        k, v = split(self.k(x)), split(self.v(x))
        rel = torch.arange(t - 1, -t, -1, device=x.device)  # distances i - j, from t-1 down to -(t-1)
        p = self.pos(_sinusoids(rel, d).to(x.dtype)).view(2 * t - 1, self.heads, self.head_dim).transpose(0, 1)
        content = torch.matmul((q + self.bias_u).transpose(1, 2), k.transpose(-1, -2))  # (B, heads, N, N)
        position = torch.matmul((q + self.bias_v).transpose(1, 2), p.transpose(-1, -2))  # (B, heads, N, 2N-1)
        idx = torch.arange(t, device=x.device)
        index = (t - 1) - (idx[:, None] - idx[None, :])  # row of distance i - j in ``rel``
        position = position.gather(-1, index.expand(b, self.heads, t, t))
        scores = (content + position) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        attn = self.drop(scores.softmax(dim=-1))
        y = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d)
        return self.out(y)


class ConvModule(nn.Module):
    """Conformer convolution module: pointwise ×2 + GLU, depthwise conv, BN, SiLU, pointwise.

    x: (B, N, D), mask: (B, N) -> (B, N, D); padded frames are zeroed before the depthwise conv.
    """

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.pw1 = nn.Conv1d(dim, 2 * dim, 1)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.bn = nn.BatchNorm1d(dim)
        self.pw2 = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(x.transpose(1, 2)), dim=1)  # (B, D, N)
        y = y.masked_fill(~mask[:, None, :], 0.0)
        y = self.pw2(F.silu(self.bn(self.dw(y))))
        return y.transpose(1, 2)


class FeedForward(nn.Sequential):
    """(B, N, D) -> (B, N, D): Linear D->ffn, SiLU, dropout, Linear ffn->D."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class ConformerLayer(nn.Module):
    """Macaron conformer block (pre-norm): ½FFN, MHSA, conv, ½FFN, LayerNorm. (B, N, D) -> (B, N, D)."""

    def __init__(self, cfg: VisualEncoderConfig):
        super().__init__()
        d, p = cfg.conformer_dim, cfg.dropout
        self.norm_ff1, self.ff1 = nn.LayerNorm(d), FeedForward(d, cfg.conformer_ffn, p)
        self.norm_att, self.att = nn.LayerNorm(d), RelPosSelfAttention(d, cfg.conformer_heads, p)
        self.norm_conv, self.conv = nn.LayerNorm(d), ConvModule(d, cfg.conv_kernel)
        self.norm_ff2, self.ff2 = nn.LayerNorm(d), FeedForward(d, cfg.conformer_ffn, p)
        self.norm_out = nn.LayerNorm(d)
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.drop(self.ff1(self.norm_ff1(x)))
        x = x + self.drop(self.att(self.norm_att(x), mask))
        x = x + self.drop(self.conv(self.norm_conv(x), mask))
        x = x + 0.5 * self.drop(self.ff2(self.norm_ff2(x)))
        return self.norm_out(x)


# ---------------------------------------------------------------- encoder
class VisualEncoder(nn.Module):
    """Mouth crops -> visual features for the stage-1 L2S adapter.

    forward(crops, lengths=None, mask=None):
        crops: (B, N, in_size, in_size) float in [0, 1] (grayscale, 25 fps);
        lengths: (B,) valid frames per item, or mask: (B, N) bool (True = valid);
        returns (B, N, out_dim) features at 25 fps, zero on padded frames.
    """

    def __init__(self, cfg: Optional[VisualEncoderConfig] = None):
        super().__init__()
        self.cfg = cfg = cfg or VisualEncoderConfig()
        self.frontend = VisualFrontend(cfg)
        self.proj_in = nn.Linear(self.frontend.out_dim, cfg.conformer_dim)
        self.in_drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.conformer_layers))
        self.norm = nn.LayerNorm(cfg.conformer_dim)
        self.proj_out = (
            nn.Identity() if cfg.out_dim == cfg.conformer_dim else nn.Linear(cfg.conformer_dim, cfg.out_dim)
        )

    def forward(
        self,
        crops: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if crops.dim() != 4 or crops.shape[-2:] != (self.cfg.in_size, self.cfg.in_size):
            raise ValueError(
                f"expected crops (B, N, {self.cfg.in_size}, {self.cfg.in_size}), got {tuple(crops.shape)}"
            )
        b, t = crops.shape[:2]
        if mask is None:
            if lengths is None:
                mask = torch.ones(b, t, dtype=torch.bool, device=crops.device)
            else:
                mask = lengths_to_mask(lengths.to(crops.device), t)
        mask = mask.to(device=crops.device, dtype=torch.bool)
        x = (crops - self.cfg.pixel_mean) / self.cfg.pixel_std
        x = x.masked_fill(~mask[:, :, None, None], 0.0)  # padded frames = the conv's zero padding
        x = self.in_drop(self.proj_in(self.frontend(x)))  # (B, N, D)
        for layer in self.layers:
            x = layer(x, mask)
        x = self.proj_out(self.norm(x))
        return x.masked_fill(~mask[:, :, None], 0.0)
