"""Stage 1: the masked generative model over semantic ids (Metis; MaskGCT T2S for TTS).

One class covers every form of the released checkpoints (METIS_SPEC.md §2-3):

===========  ===============  ================  ===============================
form         use_phone_cond   adapter           official file
===========  ===============  ================  ===============================
base         no               none              metis_base
tts          yes              none              MaskGCT t2s_model
vc/tse/se    no               gated (1024-dim)  metis_base + LoRA + adapter
omni         yes              gated (1024-dim)  metis_omni
l2s          no               mlp (768-dim)     metis_l2s
===========  ===============  ================  ===============================

Sequence layout given to the transformer: ``[phones ; prompt ; target]`` (length
L = Np + Tp + T); the frame condition (after its adapter) is added to ``[prompt ; target]``;
the output is sliced back to the target part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Stage1Config
from .frame_phones import FramePhoneMixin
from .transformer import DiffTransformer, init_weights

__all__ = ["DurationPredictor", "GatedAdapter", "Stage1Model", "Stage1Output"]


class DurationPredictor(nn.Module):
    """Frames per phone from the phone sequence (``Stage1Config.frame_phones``).

    ids: (B, N) phone ids, mask: (B, N) 1 = valid -> (B, N) predicted log(1 + frames).
    Embedding, three 3-wide convolutions (ReLU, LayerNorm) and a linear head.
    """

    def __init__(self, vocab: int, hidden: int, pad_id: int, layers: int = 3, dropout: float = 0.1):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(self.out.weight.dtype)
        h = self.emb(ids) * m
        for conv, norm in zip(self.convs, self.norms):
            h = self.dropout(norm(F.relu(conv(h.transpose(1, 2)).transpose(1, 2)))) * m
        return self.out(h).squeeze(-1) * mask.to(h.dtype)


class GatedAdapter(nn.Module):
    """Zero-gated frame-condition adapter: gate · out(SiLU(in(x))), gate initialised to 0.

    x: (B, L, C) -> (B, L, H). With gate = 0 a freshly added adapter leaves the
    pre-trained model unchanged.
    """

    def __init__(self, cond_dim: int, hidden_size: int, inner: int):
        super().__init__()
        self.in_linear = nn.Linear(cond_dim, inner)
        self.out_linear = nn.Linear(inner, hidden_size)
        self.gate_scale = nn.Parameter(torch.zeros(1))
        nn.init.normal_(self.in_linear.weight, std=0.02)
        nn.init.zeros_(self.in_linear.bias)
        nn.init.normal_(self.out_linear.weight, std=0.02)
        nn.init.zeros_(self.out_linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_linear(F.silu(self.in_linear(x))) * self.gate_scale


@dataclass
class Stage1Output:
    logits: torch.Tensor  # (B, T, V)
    hidden: torch.Tensor  # (B, T, H) target part after the final norm
    x_in: torch.Tensor  # (B, Tp+T, H) embeddings given to the transformer (before the phone prefix)
    step_emb: torch.Tensor  # (B, H)


class Stage1Model(FramePhoneMixin, nn.Module):
    def __init__(self, cfg: Stage1Config):
        super().__init__()
        self.cfg = cfg
        H = cfg.hidden_size
        self.mask_emb = nn.Embedding(1, H)
        self.to_logit = nn.Linear(H, cfg.codebook_size)
        self.cond_emb = nn.Embedding(cfg.codebook_size, H)
        if cfg.use_phone_cond:
            self.phone_emb = nn.Embedding(cfg.phone_vocab_size, H, padding_idx=cfg.phone_pad_id)
        self.diff_estimator = DiffTransformer(
            H,
            cfg.num_layers,
            cfg.num_heads,
            cfg.intermediate_size,
            cfg.rope_theta,
            cfg.norm_eps,
            use_cond_mlp=cfg.use_phone_cond,
        )
        if cfg.adapter == "gated":
            self.cond_adapter = GatedAdapter(cfg.cond_dim, H, cfg.adapter_hidden)
        elif cfg.adapter == "mlp":
            self.cond_adapter = nn.Sequential(
                nn.Linear(cfg.cond_dim, cfg.adapter_hidden), nn.SiLU(), nn.Linear(cfg.adapter_hidden, H)
            )
        if cfg.frame_phones:
            # frame phone -> phone_emb -> frame_phone_proj, added to the frame's embedding
            self._add_frame_phones(H, cfg.phone_vocab_size, cfg.codebook_size)
            self.duration = DurationPredictor(cfg.phone_vocab_size, cfg.duration_hidden, cfg.phone_pad_id)
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """Initialisation for training from scratch: N(0, 0.02) linears/embeddings, zero
        biases, adaptive norms at identity (weight 0, bias 1), zero adapter gate."""
        init_weights(self)
        if isinstance(getattr(self, "cond_adapter", None), GatedAdapter):
            nn.init.zeros_(self.cond_adapter.gate_scale)
        if self.cfg.frame_phones:
            self._zero_frame_phone_proj()

    # ------------------------------------------------------------ pieces
    @property
    def has_adapter(self) -> bool:
        return hasattr(self, "cond_adapter")

    def embed_tokens(self, ids: torch.Tensor, masked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ids: (B, T), masked: (B, T) bool (True -> mask_emb) -> (B, T, H)."""
        e = self.cond_emb(ids)
        if masked is not None:
            m = self.mask_emb.weight[0].to(e.dtype)
            e = torch.where(masked.unsqueeze(-1), m, e)
        return e

    def adapt(self, cond: torch.Tensor) -> torch.Tensor:
        """Frame condition (B, L, C) -> (B, L, H) through the adapter."""
        if not self.has_adapter:
            raise ValueError("this stage-1 model has no frame-condition adapter")
        return self.cond_adapter(cond)

    def phone_prefix(self, phone_ids: torch.Tensor) -> torch.Tensor:
        """(B, Np) -> (B, Np, H) = cond_mlp(phone_emb(ids))."""
        if not self.cfg.use_phone_cond:
            raise ValueError("this stage-1 model takes no phone condition")
        return self.diff_estimator.cond_mlp(self.phone_emb(phone_ids))

    def transformer(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        x_mask: Optional[torch.Tensor] = None,
        prefix: Optional[torch.Tensor] = None,
        prefix_mask: Optional[torch.Tensor] = None,
        step_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """x: (B, Tx, H) [prompt; target] embeddings, prefix: (B, Np, H) -> hidden (B, Tx, H)."""
        B, Tx, _ = x.shape
        if x_mask is None:
            x_mask = torch.ones(B, Tx, device=x.device)
        key_mask = x_mask
        if prefix is not None and prefix.shape[1] > 0:
            if prefix_mask is None:
                prefix_mask = torch.ones(B, prefix.shape[1], device=x.device)
            x = torch.cat([prefix, x], dim=1)
            key_mask = torch.cat([prefix_mask.to(x_mask.dtype), x_mask], dim=1)
        h = self.diff_estimator(x, t, key_mask, step_emb=step_emb)
        return h[:, h.shape[1] - Tx :]

    # --------------------------------------------------------------- forward
    def forward(
        self,
        prompt_ids: torch.Tensor,
        target_ids: torch.Tensor,
        target_mask: torch.Tensor,
        t: torch.Tensor,
        x_mask: Optional[torch.Tensor] = None,
        phone_ids: Optional[torch.Tensor] = None,
        phone_mask: Optional[torch.Tensor] = None,
        cond: Optional[torch.Tensor] = None,
        frame_phones: Optional[torch.Tensor] = None,
    ) -> Stage1Output:
        """One pass over [phones; prompt; target].

        prompt_ids: (B, Tp) never masked; target_ids: (B, T) (ignored where target_mask);
        target_mask: (B, T) bool, True = masked; t: (B,); x_mask: (B, Tp+T) 1 = valid;
        phone_ids / phone_mask: (B, Np); cond: (B, Tp+T, C) frame condition; frame_phones:
        (B, Tp+T) phone id per frame (``frame_phones`` models).
        """
        x = torch.cat([self.embed_tokens(prompt_ids), self.embed_tokens(target_ids, target_mask)], dim=1)
        if cond is not None:
            x = x + self.adapt(cond)
        if frame_phones is not None:
            x = x + self.frame_phone_embed(frame_phones)
        prefix = self.phone_prefix(phone_ids) if phone_ids is not None else None
        step_emb = self.diff_estimator.step_embedding(t)
        hidden = self.transformer(x, t, x_mask, prefix, phone_mask, step_emb=step_emb)
        hidden = hidden[:, prompt_ids.shape[1] :]
        return Stage1Output(self.to_logit(hidden), hidden, x, step_emb)
