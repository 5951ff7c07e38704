"""LoRA for stage-1 fine-tuning, through peft, in the official file layout.

The reference fine-tunes q/k/v/o/gate/up/down projections of every block (r=32 α=64 for
TSE and SE, r=16 α=32 for VC, dropout 0.01). Wrapping with ``peft.LoraModel`` gives the
parameter names of the official LoRA files (``model.<module>.lora_A.default.weight``);
:func:`metis_speech.checkpoint.lora_state_dict` extracts them and
:func:`metis_speech.checkpoint.merge_lora` merges such a file back.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float = 0.01, targets: Sequence[str] = LORA_TARGETS) -> nn.Module:
    """Wrap ``model`` in a peft LoraModel (adapter name ``default``); the base weights are
    frozen by peft, LoRA A/B are trainable. Returns the wrapper (``.model`` is ``model``)."""
    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    from peft import LoraConfig, LoraModel

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    return LoraModel(model, cfg, "default")
