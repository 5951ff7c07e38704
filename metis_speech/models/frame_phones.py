"""Frame-level phone conditioning shared by stage 1 and the S2A (``frame_phones`` configs).

A network with frame phones adds ``frame_phone_proj(phone_emb(phone))`` to every frame that
belongs to a phone (zero where none), and keeps the alignment table of :mod:`.align` as two
buffers, so that its training objective can place a transcript's phones on an utterance's
semantic ids: ``align_table`` (P, V) log p(semantic id | phone), all zero until fitted, and
``align_skip`` (P,) 1 at the phones that may take zero frames (word boundaries, punctuation).
The projection starts at zero, so a network grown from one without frame phones first
computes exactly what that one did.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FramePhoneMixin"]


class FramePhoneMixin:
    """Mixed into an ``nn.Module`` whose ``cfg`` has ``frame_phones``, ``phone_pad_id`` and
    which owns ``phone_emb`` (an ``nn.Embedding`` over the phone vocabulary)."""

    def _add_frame_phones(self, hidden: int, phone_vocab: int, semantic_vocab: int) -> None:
        """Create the projection and the (unfitted) alignment buffers."""
        self.frame_phone_proj = nn.Linear(hidden, hidden)
        self.register_buffer("align_table", torch.zeros(phone_vocab, semantic_vocab))
        self.register_buffer("align_skip", torch.zeros(phone_vocab))

    def _zero_frame_phone_proj(self) -> None:
        nn.init.zeros_(self.frame_phone_proj.weight)
        nn.init.zeros_(self.frame_phone_proj.bias)

    @property
    def aligner_fitted(self) -> bool:
        return bool(self.cfg.frame_phones) and bool(self.align_table.abs().sum() > 0)

    @property
    def skippable_phones(self):
        """(P,) numpy bool: the phone ids that may take zero frames (``align_skip``)."""
        return self.align_skip.detach().float().cpu().numpy() > 0.5

    def align_phones(self, phones, semantic):
        """Frames per state of [silence ; phones ; silence] ((N + 2,) numpy ints summing to T) for
        phone ids (N,) over semantic ids (T,), by the network's alignment table. Raises ValueError
        when the frames cannot hold the phones, RuntimeError when the table is not fitted."""
        from .align import align

        if not self.aligner_fitted:
            raise RuntimeError(f"this {type(self).__name__} has no fitted alignment table (the Trainer fits it "
                               "from the training data)")
        table = self.align_table.detach().float().cpu().numpy()  # a view for a float32 CPU buffer
        return align(table, phones, semantic, self.skippable_phones, self.cfg.phone_pad_id)

    def frame_phone_embed(self, frame_phones: torch.Tensor) -> torch.Tensor:
        """(B, L) phone id per frame (``phone_pad_id`` = none) -> (B, L, H), zero where none."""
        if not self.cfg.frame_phones:
            raise ValueError(f"this {type(self).__name__} takes no frame phones (frame_phones is off)")
        has = (frame_phones != self.cfg.phone_pad_id).unsqueeze(-1)
        e = self.frame_phone_proj(self.phone_emb(frame_phones))
        return e * has.to(e.dtype)
