"""Semantic codec: RepCodec-style VQ of normalised SSL features into semantic ids.

    features (B, T, H) --encoder (Vocos backbone + Linear)--> (B, T, H)
        --residual factorized VQ--> ids (B, T) [or (B, T, Q)], quantized (B, T, H)
        --decoder (Vocos backbone + Linear, training only)--> reconstruction (B, T, H)

Reference: Huang et al., "RepCodec: A Speech Representation Codec for Speech Tokenization"
(2023), as configured in MaskGCT (arXiv 2409.00750): one FVQ with 8192 codes of dim 8.
Parameter names follow the official checkpoint (``encoder.0`` backbone, ``encoder.1``
Linear, ``quantizer.quantizers.0``, ``decoder.0`` / ``decoder.1``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import nn

from ..config import SemanticCodecConfig
from .quantize import rvq_from_config
from .vocos import VocosBackbone

__all__ = ["SemanticCodec", "SemanticCodecOutput"]

# training-only loss weights of the reference RepCodec (not in the config: they do not
# change any weight shape); override with SemanticCodec(..., commitment=...)


class SemanticCodecOutput(NamedTuple):
    reconstruction: torch.Tensor  # (B, T, H)
    ids: torch.Tensor  # (B, T, Q)
    recon_loss: torch.Tensor  # () masked mean squared error to the input features
    commit_loss: torch.Tensor  # () summed over stages
    codebook_loss: torch.Tensor  # () summed over stages
    loss: torch.Tensor  # () recon + commit + codebook


def _coder(cfg: SemanticCodecConfig) -> nn.Sequential:
    return nn.Sequential(
        VocosBackbone(cfg.hidden_size, cfg.vocos_dim, cfg.vocos_intermediate_dim, cfg.vocos_num_layers),
        nn.Linear(cfg.vocos_dim, cfg.hidden_size),
    )


class SemanticCodec(nn.Module):
    """RepCodec over SSL features. See :meth:`quantize` (inference) and :meth:`forward` (training)."""

    def __init__(
        self,
        cfg: SemanticCodecConfig,
        commitment: Optional[float] = None,
        codebook_loss_weight: Optional[float] = None,
        quantizer_dropout: Optional[float] = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.encoder = _coder(cfg)
        self.decoder = _coder(cfg)
        self.quantizer = rvq_from_config(cfg, cfg.hidden_size, commitment, codebook_loss_weight, quantizer_dropout)
        for m in (self.encoder[1], self.decoder[1]):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder output, the quantizer's input. features (B, T, H) -> (B, H, T)."""
        return self.encoder(features.transpose(1, 2)).transpose(1, 2)

    def _ids_out(self, ids: torch.Tensor) -> torch.Tensor:
        return ids[..., 0] if self.cfg.num_quantizers == 1 else ids

    def quantize(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Semantic ids and their quantized features (eval-mode quantizer, no dropout).

        features (B, T, H) -> ids (B, T) int64 (``(B, T, Q)`` when Q > 1), quantized (B, T, H).
        """
        if features.dim() != 3 or features.shape[-1] != self.cfg.hidden_size:
            raise ValueError(
                f"expected features (B, T, {self.cfg.hidden_size}), got shape {tuple(features.shape)}"
            )
        was_training = self.quantizer.training
        self.quantizer.eval()
        try:
            out = self.quantizer(self.encode(features))
        finally:
            self.quantizer.train(was_training)
        return self._ids_out(out.ids), out.quantized.transpose(1, 2)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Quantized features from ids alone. ids (B, T) or (B, T, Q) -> (B, T, H)."""
        if ids.dim() == 2:
            ids = ids[..., None]
        return self.quantizer.decode(ids).transpose(1, 2)

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Reconstruct SSL features. quantized (B, T, H) -> (B, T, H)."""
        return self.decoder(quantized.transpose(1, 2))

    def forward(self, features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> SemanticCodecOutput:
        """Training step: encode, quantize (straight-through), decode, losses.

        features (B, T, H); mask (B, T), 1/True = valid frame (padding excluded from the
        reconstruction loss).
        """
        out = self.quantizer(self.encode(features))
        recon = self.decoder(out.quantized)  # (B, T, H)
        err = (recon - features).pow(2).mean(-1)  # (B, T)
        if mask is None:
            recon_loss = err.mean()
        else:
            m = mask.to(err.dtype)
            recon_loss = (err * m).sum() / m.sum().clamp(min=1)
        commit = out.commit_loss.sum()
        codebook = out.codebook_loss.sum()
        return SemanticCodecOutput(recon, out.ids, recon_loss, commit, codebook, recon_loss + commit + codebook)
