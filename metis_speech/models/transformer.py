"""Bidirectional Llama-style transformer with adaptive RMS norms (the ``diff_estimator``).

Shared by stage 1 and S2A. Written from the description in METIS_SPEC.md §2 (not a
subclass of transformers' Llama classes): pre-norm blocks, rotary position embeddings
(rotate-half, θ = 10000), bias-free q/k/v/o and SwiGLU projections, and RMS norms whose
per-channel scale is ``Linear(step_embedding)``. The diffusion step ``t ∈ [0,1]`` drives
only these norms.

Parameter names follow the official checkpoints: ``layers.N.self_attn.{q,k,v,o}_proj``,
``layers.N.mlp.{gate,up,down}_proj``, ``layers.N.{input,post_attention}_layernorm.to_weight``,
``norm.to_weight``, ``diff_step_mlp.{0,2}`` and ``cond_mlp.{0,2}``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaptiveRMSNorm", "RotaryEmbedding", "Attention", "SwiGLU", "Block", "DiffTransformer", "Prepared", "step_sinusoid"]


def step_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the diffusion step, t used as is (no ×1000).

    t: (B,) -> (B, dim) = [sin(t·f_k), cos(t·f_k)], f_k = exp(-k·ln(10000)/(dim/2 - 1)).
    """
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device) * -scale)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat((args.sin(), args.cos()), dim=-1)


class AdaptiveRMSNorm(nn.Module):
    """RMS norm whose scale comes from the step embedding.

    x: (B, L, H), c: (B, H) -> (B, L, H) = to_weight(c) ⊙ x·rsqrt(mean(x²) + eps)
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6, cond_size: Optional[int] = None):
        super().__init__()
        self.to_weight = nn.Linear(cond_size or hidden_size, hidden_size)
        self.eps = eps
        nn.init.zeros_(self.to_weight.weight)
        nn.init.ones_(self.to_weight.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        var = x.float().pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(var + self.eps)
        w = self.to_weight(c)
        if w.dim() == 2:
            w = w.unsqueeze(1)
        return (w * x).to(dtype)


class RotaryEmbedding(nn.Module):
    """Rotate-half RoPE tables. positions: (B, L) -> cos, sin: (B, L, head_dim)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)

    def _inv_freq(self, device=None) -> torch.Tensor:
        exps = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
        return 1.0 / (self.theta**exps)

    def reset_buffers(self) -> None:
        """Recompute the frequencies (after building on the meta device)."""
        self.inv_freq = self._inv_freq(self.inv_freq.device)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq.float().to(positions.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, heads, L, d); cos/sin: (B, L, d)."""
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return x * cos + _rotate_half(x) * sin


class Attention(nn.Module):
    """Bidirectional multi-head self-attention with RoPE (scaled_dot_product_attention)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """x: (B, L, H); bias: additive key mask (B, 1, 1, L) or None -> (B, L, H)."""
        B, L, _ = x.shape
        shape = (B, L, self.num_heads, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, -1))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) ⊙ up(x)), no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm block: h += attn(norm(h, c)); h += mlp(norm(h, c))."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, eps: float):
        super().__init__()
        self.self_attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, intermediate_size)
        self.input_layernorm = AdaptiveRMSNorm(hidden_size, eps)
        self.post_attention_layernorm = AdaptiveRMSNorm(hidden_size, eps)

    def forward(self, h, c, cos, sin, bias):
        h = h + self.self_attn(self.input_layernorm(h, c), cos, sin, bias)
        return h + self.mlp(self.post_attention_layernorm(h, c))


def init_weights(model: nn.Module) -> None:
    """From-scratch initialisation shared by stage 1 and S2A: N(0, 0.02) linears and
    embeddings, zero biases, adaptive norms at identity (weight 0, bias 1), padding rows 0."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            if name.endswith("to_weight"):
                nn.init.zeros_(m.weight)
                nn.init.ones_(m.bias)
            else:
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding) and m.num_embeddings > 0:
            nn.init.normal_(m.weight, std=0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


class Prepared(NamedTuple):
    """What every step of one decoding run shares: rotary tables (B, L, d) and the additive
    attention bias ((B, 1, 1|L, L) or None)."""

    cos: torch.Tensor
    sin: torch.Tensor
    bias: Optional[torch.Tensor]


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class DiffTransformer(nn.Module):
    """The ``diff_estimator`` of stage 1 and S2A.

    ``cond_mlp`` (Linear H→4H, SiLU, Linear 4H→H) is built when ``use_cond_mlp``: stage 1
    applies it to the phone prefix, S2A to the frame condition (added to x).
    ``zero_embed_tokens`` keeps the zero-size ``embed_tokens`` entry of the official S2A files.
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        rope_theta: float = 10000.0,
        eps: float = 1e-6,
        use_cond_mlp: bool = False,
        zero_embed_tokens: bool = False,
    ):
        super().__init__()
        self.hidden_size = hidden_size
        if zero_embed_tokens:
            # a [0, 256] leftover in the official S2A checkpoints; holds nothing
            self.embed_tokens = nn.Embedding(0, 256)
        self.layers = nn.ModuleList(
            Block(hidden_size, num_heads, intermediate_size, eps) for _ in range(num_layers)
        )
        self.norm = AdaptiveRMSNorm(hidden_size, eps)
        self.rotary = RotaryEmbedding(hidden_size // num_heads, rope_theta)
        self.diff_step_mlp = _mlp(hidden_size, 4 * hidden_size, hidden_size)
        if use_cond_mlp:
            self.cond_mlp = _mlp(hidden_size, 4 * hidden_size, hidden_size)

    def step_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) -> (B, H), the vector that drives every adaptive norm."""
        first = self.diff_step_mlp[0]
        w = first.weight
        # int8 layers (weight is a method) and half-stored ones (precision.store_half) compute in fp32
        dtype = w.dtype if torch.is_tensor(w) and not getattr(first, "upcast", False) else torch.float32
        return self.diff_step_mlp(step_sinusoid(t, self.hidden_size).to(dtype))

    def prepare(
        self, x_shape, dtype: torch.dtype, device, key_mask: Optional[torch.Tensor] = None,
        positions: Optional[torch.Tensor] = None, segments: Optional[torch.Tensor] = None,
    ) -> "Prepared":
        """Rotary tables and attention bias for inputs of shape ``x_shape`` (B, L, H), made once
        and reused by every decoding step (they do not depend on the step).

        ``segments`` (L,) int: packed sequences (e.g. the conditional and the unconditional
        guidance passes side by side): a query attends only to keys of its own segment.
        """
        B, L = int(x_shape[0]), int(x_shape[1])
        if positions is None:
            positions = torch.arange(L, device=device).unsqueeze(0).expand(B, L)
        cos, sin = self.rotary(positions, dtype)
        bias = None
        valid = key_mask.bool() if key_mask is not None else None
        if segments is not None:
            same = segments[:, None] == segments[None, :]  # (L, L)
            allowed = same[None] if valid is None else same[None] & valid[:, None, :]  # (B|1, L, L)
            bias = torch.zeros(allowed.shape[0], 1, L, L, dtype=dtype, device=device)
            bias = bias.masked_fill(~allowed[:, None], torch.finfo(dtype).min)
        elif valid is not None and not bool(valid.all()):
            bias = torch.zeros(B, 1, 1, L, dtype=dtype, device=device)
            bias = bias.masked_fill(~valid[:, None, None, :], torch.finfo(dtype).min)
        return Prepared(cos, sin, bias)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        key_mask: Optional[torch.Tensor] = None,
        positions: Optional[torch.Tensor] = None,
        step_emb: Optional[torch.Tensor] = None,
        prepared: Optional["Prepared"] = None,
    ) -> torch.Tensor:
        """x: (B, L, H), t: (B,), key_mask: (B, L) 1 = valid / 0 = padding -> (B, L, H).

        ``positions`` (B, L) default to 0..L-1. Padded positions are masked as keys; their
        query rows are still computed (and ignored by callers). ``prepared`` (from
        :meth:`prepare`) replaces ``key_mask`` / ``positions`` when given.
        """
        c = self.step_embedding(t) if step_emb is None else step_emb
        if prepared is None:
            prepared = self.prepare(x.shape, x.dtype, x.device, key_mask, positions)
        cos, sin, bias = prepared
        h = x
        for layer in self.layers:
            h = layer(h, c, cos, sin, bias)
        return self.norm(h, c)
