"""Building networks and filling them with weights: official files, or the project's own
checkpoint directories (``model.safetensors`` + ``config.json``).

- :func:`build_model` makes the network of any config dataclass.
- :func:`load_component` loads one official component (``s2a_full``, ``acoustic_decoder``...).
- :func:`load_stage1` assembles stage 1 for a task: a full file, or base + adapter + LoRA
  merged (W += α/r·B·A), as the official fine-tuned releases require.
- :func:`save_checkpoint` / :func:`load_checkpoint` write and read a directory with the
  config saved next to the weights.

Networks are built on the meta device and then filled by a strict load, so no time is spent
on random initialisation. When a file's dtype is the network's (fp32 official files into an
fp32 network on the CPU) the weights are memory-mapped, not copied (``checkpoint.map_weights``):
loading is instant and memory holds one copy of the weights (the file's pages), never two.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from . import hub
from .checkpoint import build_empty, load_weights, merge_adapter, merge_lora, read_weights, save_weights
from .config import ConfigError, config_from_dict, config_to_dict, load_config, load_preset, save_config
from .errors import CheckpointError, MetisError

__all__ = ["build_model", "load_component", "load_stage1", "save_checkpoint", "load_checkpoint", "MODEL_CLASSES"]

# config class name -> "module:Class" of the network it builds
MODEL_CLASSES = {
    "Stage1Config": "metis_speech.models.stage1:Stage1Model",
    "S2AConfig": "metis_speech.models.s2a:S2AModel",
    "SemanticCodecConfig": "metis_speech.models.semantic_codec:SemanticCodec",
    "AcousticEncoderConfig": "metis_speech.models.acoustic_codec:AcousticEncoder",
    "AcousticDecoderConfig": "metis_speech.models.acoustic_codec:AcousticDecoder",
    "VisualEncoderConfig": "metis_speech.models.visual:VisualEncoder",
}


def _model_class(cfg) -> type:
    name = type(cfg).__name__
    if name not in MODEL_CLASSES:
        raise ConfigError(f"no network is built from a {name}")
    module, cls = MODEL_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(
    cfg, device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None, empty: bool = False
) -> nn.Module:
    """The network of ``cfg`` (on the current default device unless ``device`` is given).
    ``empty=True`` skips initialisation (weights to be loaded)."""
    cls = _model_class(cfg)
    if empty:
        return build_empty(lambda: cls(cfg), device or "cpu", dtype)
    m = cls(cfg)
    if device is not None:
        m = m.to(device)
    return m.to(dtype) if dtype is not None else m


def _finish(model: nn.Module, device, dtype) -> nn.Module:
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()


def load_component(
    name: str,
    source: Union[str, os.PathLike] = "hub",
    device: Union[str, torch.device] = "cpu",
    dtype: Optional[torch.dtype] = None,
    preset: str = "official",
) -> nn.Module:
    """Load one official component by its registry name (see ``hub.FILES``)."""
    if name not in hub.FILES:
        raise MetisError(f"unknown component {name!r}; known: {sorted(hub.FILES)}")
    f = hub.FILES[name]
    path = hub.resolve(name, source)
    model = build_model(load_preset(preset, f.component), "cpu", empty=True)
    load_weights(model, path, mmap=True)
    return _finish(model, device, dtype)


def load_stage1(
    task: str,
    source: Union[str, os.PathLike] = "hub",
    device: Union[str, torch.device] = "cpu",
    dtype: Optional[torch.dtype] = None,
    preset: str = "official",
) -> nn.Module:
    """Stage 1 of ``task`` from the official files: a full checkpoint, or for VC/TSE/SE the
    pre-trained base + adapter file + LoRA file merged (W += α/r·B·A)."""
    if task not in hub.TASKS:
        raise MetisError(f"unknown task {task!r}; choose one of {sorted(hub.TASKS)}")
    spec = hub.TASKS[task]
    # every file first: a missing one fails before the network is built
    base_path = hub.resolve(spec.weights, source)
    adapter_path = hub.resolve(spec.adapter, source) if spec.adapter else None
    lora_path = hub.resolve(spec.lora, source) if spec.lora else None
    cfg = load_preset(preset, spec.component)
    model = build_model(cfg, "cpu", empty=True)
    if adapter_path is not None:
        load_weights(model, base_path, allow_missing=[r"cond_adapter\."], mmap=True)
        merge_adapter(model, adapter_path)
    else:
        load_weights(model, base_path, mmap=True)
    if lora_path is not None:
        merge_lora(model, lora_path, alpha=spec.lora_alpha, rank=spec.lora_rank)
    return _finish(model, device, dtype)


# ------------------------------------------------------------ own checkpoints
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_checkpoint(model: nn.Module, directory: Union[str, os.PathLike], extra_metadata: Optional[dict] = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (the model's ``cfg``) into a directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise MetisError(f"{type(model).__name__} has no .cfg; cannot save its configuration")
    save_weights(model.state_dict(), directory / WEIGHTS_NAME, metadata=extra_metadata)
    save_config(cfg, directory / CONFIG_NAME)
    return directory


def load_checkpoint(
    directory: Union[str, os.PathLike],
    device: Union[str, torch.device] = "cpu",
    dtype: Optional[torch.dtype] = None,
) -> nn.Module:
    """Load a directory written by :func:`save_checkpoint` (config + weights, strict)."""
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_NAME} next to the weights (not a metis-speech checkpoint?)")
    cfg = load_config(cfg_path)
    model = build_model(cfg, "cpu", empty=True)
    load_weights(model, directory / WEIGHTS_NAME, mmap=True)
    return _finish(model, device, dtype)
