"""The project's own model bundles: every network of the system in one directory.

Layout (all paths relative to the bundle directory)::

    metis.json                 {"format": "metis-speech-bundle", "version": 1, "components": {...},
                                "stage1": {task: subdir}, "phone_vocab": "vocab.json" | null}
    <component>/config.json    typed config (see metis_speech.config)
    <component>/model.safetensors
    ssl/ssl_config.json        SSLConfig; ssl/ holds the w2v-BERT model (save_pretrained) and stats.npz

Components: ``ssl``, ``semantic_codec``, ``acoustic_encoder``, ``acoustic_decoder``,
``s2a_full`` and optionally ``s2a_1layer`` and ``visual``; one stage-1 network per task.
Official weights do not use this format (see :mod:`metis_speech.hub`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np
import torch

from .config import SSLConfig, config_to_dict, config_from_dict, load_preset
from .errors import CheckpointError

FORMAT = "metis-speech-bundle"
MANIFEST = "metis.json"

STAGE1_COMPONENT = {"tts": "stage1_tts", "vc": "stage1_adapter", "tse": "stage1_adapter", "se": "stage1_adapter",
                    "omni": "stage1_omni", "l2s": "stage1_l2s", "base": "stage1_base"}


def is_bundle(path: Union[str, os.PathLike]) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: Union[str, os.PathLike]) -> dict:
    path = Path(path)
    f = path / MANIFEST
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f}: cannot read the bundle manifest ({e})") from None
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{f}: not a metis-speech bundle (format {data.get('format')!r})")
    return data


def save_ssl(extractor, directory: Union[str, os.PathLike], cfg: SSLConfig) -> None:
    """Save an SSLFeatureExtractor: HF model + feature extractor, stats.npz, ssl_config.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extractor.model.save_pretrained(str(directory))
    extractor.feature_extractor.save_pretrained(str(directory))
    stats = None
    if extractor.stat_mean is not None:
        np.savez(directory / "stats.npz", mean=extractor.stat_mean.cpu().numpy(), var=extractor.stat_var.cpu().numpy())
        stats = "stats.npz"
    d = config_to_dict(cfg)
    d.update(model_id=".", stats=stats)
    if d.get("model_config"):
        d["model_config"] = dict(d["model_config"], num_hidden_layers=len(extractor.model.encoder.layers))
    (directory / "ssl_config.json").write_text(json.dumps(d, indent=2))


def load_ssl(directory: Union[str, os.PathLike], device=None, dtype=None):
    from .models.ssl import SSLFeatureExtractor

    directory = Path(directory)
    d = json.loads((directory / "ssl_config.json").read_text())
    d["model_id"] = str(directory / d.get("model_id", "."))
    if d.get("stats"):
        d["stats"] = str(directory / d["stats"])
    cfg = config_from_dict(d, SSLConfig)
    ext = SSLFeatureExtractor.from_config(cfg)
    if device is not None:
        ext = ext.to(device)
        ext.set_stats(ext.stat_mean, ext.stat_var) if ext.stat_mean is not None else None
    if dtype is not None:
        ext.model.to(dtype)
    return ext.eval()


def write_manifest(directory: Union[str, os.PathLike], components: Dict[str, str], stage1: Dict[str, str],
                   phone_vocab: Optional[str], extra: Optional[dict] = None) -> Path:
    directory = Path(directory)
    data = {"format": FORMAT, "version": 1, "components": components, "stage1": stage1, "phone_vocab": phone_vocab}
    data.update(extra or {})
    (directory / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
    return directory / MANIFEST


def random_bundle(
    directory: Union[str, os.PathLike],
    preset: str = "tiny",
    tasks: Iterable[str] = ("tts", "vc", "tse", "se", "omni", "l2s"),
    seed: int = 0,
    phone_vocab: Optional[Union[str, os.PathLike]] = None,
    with_s2a_1layer: bool = True,
) -> Path:
    """A bundle of randomly initialised networks of ``preset`` size.

    For tests and for measuring speed and memory; it makes noise, not speech.
    """
    from .loading import build_model, save_checkpoint
    from .models.ssl import SSLFeatureExtractor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    comps = {}
    for name in ("semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a_full") + (("s2a_1layer",) if with_s2a_1layer else ()):
        save_checkpoint(build_model(load_preset(preset, name)), directory / name)
        comps[name] = name
    ssl_cfg = load_preset(preset, "ssl")
    ext = SSLFeatureExtractor.from_config(ssl_cfg, stats=None)
    g = torch.Generator().manual_seed(seed)
    ext.set_stats(torch.randn(ssl_cfg.hidden_size, generator=g) * 0.1, torch.rand(ssl_cfg.hidden_size, generator=g) + 0.5)
    save_ssl(ext, directory / "ssl", ssl_cfg)
    comps["ssl"] = "ssl"
    stage1 = {}
    for task in tasks:
        model = build_model(load_preset(preset, STAGE1_COMPONENT[task]))
        if hasattr(model, "cond_adapter") and hasattr(model.cond_adapter, "gate_scale"):
            with torch.no_grad():
                model.cond_adapter.gate_scale.fill_(1.0)  # random adapters should do something
        save_checkpoint(model, directory / f"stage1_{task}")
        stage1[task] = f"stage1_{task}"
    if "l2s" in stage1:
        save_checkpoint(build_model(load_preset(preset, "visual_encoder")).eval(), directory / "visual")
        comps["visual"] = "visual"
    vocab_rel = None
    if phone_vocab is not None:
        import shutil

        shutil.copy(phone_vocab, directory / "vocab.json")
        vocab_rel = "vocab.json"
    write_manifest(directory, comps, stage1, vocab_rel, {"preset": preset, "random": True})
    return directory
