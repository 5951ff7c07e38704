"""Factorized vector quantization (FVQ) and residual VQ, as used by both Metis codecs.

A factorized VQ (Yu et al., "Vector-quantized image modeling with improved VQGAN", 2022;
DAC, Kumar et al. 2023) projects its input to a low-dimensional space with a weight-normed
1x1 conv, picks the codebook row with the best cosine similarity (both sides L2-normalised),
and projects the RAW (un-normalised) codebook row back. A residual VQ (SoundStream) chains
such quantizers on successive residuals.

Parameter names follow the official checkpoints: ``in_project`` / ``out_project`` (legacy
``weight_g`` / ``weight_v`` weight norm), ``codebook.weight``; ``quantizers.N`` in the RVQ.

Extra axis names: ``D`` quantizer input channels, ``d`` codebook dimension.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import weight_norm

__all__ = ["wn_conv1d", "FactorizedVQ", "FVQOutput", "ResidualVQ", "RVQOutput"]


def wn_conv1d(*args, **kwargs) -> nn.Conv1d:
    """``nn.Conv1d(*args, **kwargs)`` with legacy weight norm (state_dict keys ``weight_g``/``weight_v``).

    The legacy API is deprecated in torch but is the one whose key names the official
    checkpoints use; the deprecation warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return weight_norm(nn.Conv1d(*args, **kwargs))


class FVQOutput(NamedTuple):
    quantized: torch.Tensor  # (B, D, T) out-projected, straight-through
    ids: torch.Tensor  # (B, T) int64
    commit_loss: torch.Tensor  # (B,) commitment loss (x weight), pulls the encoder to the codes
    codebook_loss: torch.Tensor  # (B,) codebook loss (x weight), pulls the codes to the encoder
    z_e: torch.Tensor  # (B, d, T) in-projected input used for the lookup


class FactorizedVQ(nn.Module):
    """One factorized VQ stage.

    z: (B, D, T) -> :class:`FVQOutput`. ``embed(ids (B, T)) -> (B, D, T)`` decodes ids alone.
    """

    def __init__(
        self,
        input_dim: int,
        codebook_size: int,
        codebook_dim: int,
        commitment: float = 0.25,
        codebook_loss_weight: float = 1.0,
        l2_normalize: bool = True,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.commitment = commitment
        self.codebook_loss_weight = codebook_loss_weight
        self.l2_normalize = l2_normalize
        if input_dim != codebook_dim:
            self.in_project = wn_conv1d(input_dim, codebook_dim, kernel_size=1)
            self.out_project = wn_conv1d(codebook_dim, input_dim, kernel_size=1)
        else:
            self.in_project = nn.Identity()
            self.out_project = nn.Identity()
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        """Nearest codebook row (cosine when L2-normalising). z_e: (B, d, T) -> ids (B, T)."""
        b = z_e.shape[0]
        enc = z_e.transpose(1, 2).reshape(-1, z_e.shape[1])  # (B*T, d)
        codebook = self.codebook.weight  # (V, d)
        if self.l2_normalize:
            enc = F.normalize(enc)
            codebook = F.normalize(codebook)
        # squared euclidean distance, written out as the reference does (same argmax bits)
        dist = enc.pow(2).sum(1, keepdim=True) - 2 * enc @ codebook.t() + codebook.pow(2).sum(1, keepdim=True).t()
        return (-dist).max(1).indices.reshape(b, -1)

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Raw codebook rows. ids: (B, T) -> (B, d, T)."""
        return F.embedding(ids, self.codebook.weight).transpose(1, 2)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Decode ids without straight-through: out_project(codebook[ids]). (B, T) -> (B, D, T)."""
        return self.out_project(self.codes(ids))

    def forward(self, z: torch.Tensor) -> FVQOutput:
        z_e = self.in_project(z)
        ids = self.lookup(z_e)
        z_q = self.codes(ids)
        commit = F.mse_loss(z_e, z_q.detach(), reduction="none").mean([1, 2]) * self.commitment
        codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").mean([1, 2]) * self.codebook_loss_weight
        z_q = z_e + (z_q - z_e).detach()  # straight-through: forward value = raw code row
        return FVQOutput(self.out_project(z_q), ids, commit, codebook, z_e)


class RVQOutput(NamedTuple):
    quantized: torch.Tensor  # (B, D, T) sum of the used stages' straight-through outputs
    ids: torch.Tensor  # (B, T, Q) int64, Q = stages run
    commit_loss: torch.Tensor  # (Q,) per stage, batch mean (dropped items count as 0)
    codebook_loss: torch.Tensor  # (Q,)
    n_quantizers: torch.Tensor  # (B,) stages that contributed to each item


class ResidualVQ(nn.Module):
    """``num_quantizers`` factorized VQs on successive residuals.

    Stage q quantizes r_q (r_0 = z) and r_{q+1} = r_q - quantized_q. In training mode, a
    fraction ``quantizer_dropout`` of the batch keeps only a random number (1..Q) of stages
    in its sum (all stages still run and get ids). In eval mode ``n_quantizers`` limits the
    stages run.

    z: (B, D, T) -> :class:`RVQOutput`. ``decode(ids (B, T, Q')) -> (B, D, T)`` for Q' <= Q.
    """

    def __init__(
        self,
        input_dim: int,
        num_quantizers: int,
        codebook_size: int,
        codebook_dim: int,
        quantizer_dropout: float = 0.0,
        commitment: float = 0.25,
        codebook_loss_weight: float = 1.0,
        l2_normalize: bool = True,
    ):
        super().__init__()
        self.num_quantizers = num_quantizers
        self.quantizer_dropout = quantizer_dropout
        self.quantizers = nn.ModuleList(
            [
                FactorizedVQ(input_dim, codebook_size, codebook_dim, commitment, codebook_loss_weight, l2_normalize)
                for _ in range(num_quantizers)
            ]
        )

    def _stages_per_item(self, batch: int, device, generator: Optional[torch.Generator]) -> torch.Tensor:
        n = torch.full((batch,), self.num_quantizers, dtype=torch.long)
        n_drop = int(batch * self.quantizer_dropout)
        if n_drop:
            n[:n_drop] = torch.randint(1, self.num_quantizers + 1, (n_drop,), generator=generator)
        return n.to(device)

    def forward(
        self,
        z: torch.Tensor,
        n_quantizers: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> RVQOutput:
        b = z.shape[0]
        if self.training and self.quantizer_dropout > 0:
            per_item = self._stages_per_item(b, z.device, generator)
            n_run = self.num_quantizers
        else:
            n_run = min(n_quantizers or self.num_quantizers, self.num_quantizers)
            per_item = torch.full((b,), n_run, dtype=torch.long, device=z.device)
        quantized = 0.0
        residual = z
        ids, commits, codebooks = [], [], []
        for q, stage in enumerate(self.quantizers[:n_run]):
            out = stage(residual)
            keep = (per_item > q).to(z.dtype)  # (B,)
            quantized = quantized + out.quantized * keep[:, None, None]
            residual = residual - out.quantized
            ids.append(out.ids)
            commits.append((out.commit_loss * keep).mean())
            codebooks.append((out.codebook_loss * keep).mean())
        return RVQOutput(quantized, torch.stack(ids, -1), torch.stack(commits), torch.stack(codebooks), per_item)

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_quantizers: Optional[int] = None) -> torch.Tensor:
        """Ids only, as in eval mode. z: (B, D, T) -> (B, T, Q)."""
        was_training = self.training
        self.eval()
        try:
            return self.forward(z, n_quantizers).ids
        finally:
            self.train(was_training)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Sum over stages of out_project(codebook[ids]). ids: (B, T, Q') -> (B, D, T), Q' <= Q."""
        if ids.shape[-1] > self.num_quantizers:
            raise ValueError(f"got ids for {ids.shape[-1]} stages, the quantizer has {self.num_quantizers}")
        out = 0.0
        for q in range(ids.shape[-1]):
            out = out + self.quantizers[q].embed(ids[..., q])
        return out


def rvq_from_config(cfg, input_dim: int, commitment=None, codebook_loss_weight=None, quantizer_dropout=None) -> "ResidualVQ":
    """The residual VQ of a codec config (``num_quantizers``, ``codebook_size``,
    ``codebook_dim`` and the training-loss fields); explicit arguments override the config."""
    return ResidualVQ(
        input_dim=input_dim,
        num_quantizers=cfg.num_quantizers,
        codebook_size=cfg.codebook_size,
        codebook_dim=cfg.codebook_dim,
        quantizer_dropout=cfg.quantizer_dropout if quantizer_dropout is None else quantizer_dropout,
        commitment=cfg.commitment if commitment is None else commitment,
        codebook_loss_weight=cfg.codebook_loss_weight if codebook_loss_weight is None else codebook_loss_weight,
    )
