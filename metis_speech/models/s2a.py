"""S2A: semantic ids -> acoustic RVQ codes, one masked generative pass per RVQ layer.

Input of one pass for RVQ layer ``l`` (METIS_SPEC.md §5, parity README §7):

- condition  ``cond_emb(semantic) + layer_emb(l)`` over ``[prompt ; target]``, through
  ``diff_estimator.cond_mlp`` and added to the token embeddings;
- prompt     ``Σ_q token_emb[q](prompt_codes[..., q])`` over the P = ``cfg.prompt_layers``
  layers (P = Q unless the config sets ``prompt_quantizers``);
- target     ``Σ_{q<l} token_emb[q](codes_q) + (mask_emb | token_emb[l](codes_l))
  + (Q-1-l)·mask_emb``.

With ``cfg.frame_phones`` (small models) the condition also gets
``frame_phone_proj(phone_emb(phone))`` at every frame that belongs to a phone of the request's
transcript (:mod:`.frame_phones`).

The 1-layer official model (Q = 1) generates layer 0; the full model (Q = 12) generates
layers 1..11 given layer 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..config import S2AConfig
from .frame_phones import FramePhoneMixin
from .transformer import DiffTransformer, init_weights

__all__ = ["S2AModel", "S2AOutput"]


@dataclass
class S2AOutput:
    logits: torch.Tensor  # (B, T, codebook)
    hidden: torch.Tensor  # (B, T, H)
    x_in: torch.Tensor  # (B, Tp+T, H) token embeddings (before the condition)
    cond: torch.Tensor  # (B, Tp+T, H) cond_emb(semantic) + layer_emb(layer)


class S2AModel(FramePhoneMixin, nn.Module):
    def __init__(self, cfg: S2AConfig):
        super().__init__()
        self.cfg = cfg
        H = cfg.hidden_size
        Q = cfg.num_quantizers
        self.layer_emb = nn.Embedding(Q, H)
        self.mask_emb = nn.Embedding(1, H)
        self.token_emb = nn.ModuleList(nn.Embedding(cfg.codebook_size, H) for _ in range(cfg.prompt_layers))
        self.to_logits = nn.ModuleList(nn.Linear(H, cfg.codebook_size) for _ in range(Q))
        self.cond_emb = nn.Embedding(cfg.cond_codebook_size, H)
        self.diff_estimator = DiffTransformer(
            H,
            cfg.num_layers,
            cfg.num_heads,
            cfg.intermediate_size,
            cfg.rope_theta,
            cfg.norm_eps,
            use_cond_mlp=True,
            zero_embed_tokens=True,
        )
        if cfg.frame_phones:
            self.phone_emb = nn.Embedding(cfg.phone_vocab_size, H, padding_idx=cfg.phone_pad_id)
            self._add_frame_phones(H, cfg.phone_vocab_size, cfg.cond_codebook_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """From-scratch initialisation (N(0, 0.02); adaptive norms at identity; a zero
        frame-phone projection)."""
        init_weights(self)
        if self.cfg.frame_phones:
            self._zero_frame_phone_proj()

    @property
    def num_quantizers(self) -> int:
        return self.cfg.num_quantizers

    @property
    def prompt_layers(self) -> int:
        """RVQ layers of the acoustic prompt the network reads (>= num_quantizers)."""
        return self.cfg.prompt_layers

    # ---------------------------------------------------------------- pieces
    def condition(self, semantic_ids: torch.Tensor, layer: int, frame_phones: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, L) semantic ids -> (B, L, H) = cond_emb(ids) [+ frame phones] + layer_emb(layer)."""
        return self.semantic_condition(semantic_ids, frame_phones) + self.layer_emb.weight[layer]

    def semantic_condition(self, semantic_ids: torch.Tensor, frame_phones: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, L) semantic ids [and (B, L) phone id per frame] -> (B, L, H), the same for every layer."""
        c = self.cond_emb(semantic_ids)
        if frame_phones is not None:
            c = c + self.frame_phone_embed(frame_phones)
        return c

    def embed_prompt(self, prompt_codes: torch.Tensor) -> torch.Tensor:
        """(B, Tp, >=P) -> (B, Tp, H), the sum over the first P = ``prompt_layers`` RVQ layers."""
        P = self.cfg.prompt_layers
        if prompt_codes.shape[-1] < P:
            raise ValueError(f"the acoustic prompt has {prompt_codes.shape[-1]} RVQ layers, the S2A reads {P}")
        out = self.token_emb[0](prompt_codes[..., 0])
        for q in range(1, P):
            out = out + self.token_emb[q](prompt_codes[..., q])
        return out

    def embed_lower(self, codes: torch.Tensor, layer: int) -> torch.Tensor:
        """Σ_{q<layer} token_emb[q](codes[..., q]): (B, T, >=layer) -> (B, T, H)."""
        B, T = codes.shape[:2]
        out = torch.zeros(B, T, self.cfg.hidden_size, device=codes.device, dtype=self.mask_emb.weight.dtype)
        for q in range(layer):
            out = out + self.token_emb[q](codes[..., q])
        return out

    def embed_target(self, lower: torch.Tensor, layer_ids: torch.Tensor, masked: torch.Tensor, layer: int) -> torch.Tensor:
        """Target input: lower-layer sum + (mask_emb | token_emb[layer]) + (Q-1-layer)·mask_emb.

        lower: (B, T, H), layer_ids: (B, T), masked: (B, T) bool -> (B, T, H)
        """
        m = self.mask_emb.weight[0]
        cur = lower + torch.where(masked.unsqueeze(-1), m, self.token_emb[layer](layer_ids))
        n_above = self.cfg.num_quantizers - 1 - layer
        if n_above:
            cur = cur + m * float(n_above)
        return cur

    def transformer(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        t: torch.Tensor,
        key_mask: Optional[torch.Tensor] = None,
        step_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """x, cond: (B, L, H); t: (B,) -> (B, L, H)."""
        x = x + self.diff_estimator.cond_mlp(cond)
        return self.diff_estimator(x, t, key_mask, step_emb=step_emb)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        semantic_ids: torch.Tensor,
        prompt_codes: torch.Tensor,
        target_codes: torch.Tensor,
        target_mask: torch.Tensor,
        layer: int,
        t: torch.Tensor,
        x_mask: Optional[torch.Tensor] = None,
        frame_phones: Optional[torch.Tensor] = None,
    ) -> S2AOutput:
        """One pass predicting RVQ layer ``layer`` of the target.

        semantic_ids: (B, Tp+T); prompt_codes: (B, Tp, >=P); target_codes: (B, T, >layer)
        (layers above ``layer`` are not read); target_mask: (B, T) bool; t: (B,);
        frame_phones: (B, Tp+T) phone id per frame (``frame_phones`` models; pad = none).
        """
        if not 0 <= layer < self.cfg.num_quantizers:
            raise ValueError(f"layer {layer} out of range for {self.cfg.num_quantizers} RVQ layers")
        Tp = prompt_codes.shape[1]
        cond = self.condition(semantic_ids, layer, frame_phones)
        lower = self.embed_lower(target_codes, layer)
        target = self.embed_target(lower, target_codes[..., layer], target_mask, layer)
        x = torch.cat([self.embed_prompt(prompt_codes), target], dim=1) if Tp else target
        hidden = self.transformer(x, cond, t, x_mask)[:, Tp:]
        return S2AOutput(self.to_logits[layer](hidden), hidden, x, cond)
