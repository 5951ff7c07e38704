"""Model sources: where each network of a task comes from, below the task API.

A source is ``"hub"`` (the official files, :mod:`.hub`), a directory holding the official
files, a metis-speech bundle (:mod:`.bundle`, e.g. the shipped small model of
:mod:`.shipped`) or ``"random:PRESET"``. :class:`ModelSource` loads one network at a time
from it; :class:`metis_speech.pipeline.Metis` asks it for the networks its task needs.

Layers, each importing only those below it: :mod:`.bundle` / :mod:`.hub` (formats and
files) -> :mod:`.shipped` (the ``auto`` / ``small`` choice) -> this module -> :mod:`.pipeline`
(the task API) -> :mod:`.tasks_cli`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional, Union

import torch

from . import bundle, hub
from .errors import MetisError

__all__ = ["ModelSource", "ssl_from_source", "W2V_BERT_2_ARCH"]


# facebook/w2v-bert-2.0's architecture (for random-weight benchmarks without the Hub)
W2V_BERT_2_ARCH = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    feature_projection_input_dim=160, conv_depthwise_kernel_size=31, position_embeddings_type="relative_key",
    left_max_position_embeddings=64, right_max_position_embeddings=8, hidden_act="swish", layer_norm_eps=1e-5,
    layerdrop=0.0, apply_spec_augment=False, add_adapter=False, vocab_size=None,
)


class ModelSource:
    """Where each network comes from: official files (Hub or a local copy) or a bundle."""

    def __init__(self, source: Union[str, os.PathLike], ssl_source: Optional[str], stats: Optional[str], phone_vocab):
        self.source = source
        # "random:<preset>": randomly initialised networks of a preset (speed/memory benchmarks)
        self.random_preset = str(source)[len("random:"):] if str(source).startswith("random:") else None
        self.is_bundle = str(source) != "hub" and self.random_preset is None and bundle.is_bundle(source)
        self.manifest = bundle.read_manifest(source) if self.is_bundle else None
        self.ssl_source = ssl_source
        self.stats = stats
        self.phone_vocab = phone_vocab

    def _bundle_dir(self, name: str) -> Path:
        comps = self.manifest["components"]
        if name not in comps:
            raise MetisError(f"{self.source}: the bundle has no {name} network")
        return Path(self.source) / comps[name]

    def _random(self, component: str, device, dtype):
        from .config import load_preset
        from .loading import build_model

        model = build_model(load_preset(self.random_preset, component), device)
        with torch.no_grad():
            for m in model.modules():
                if hasattr(m, "gate_scale"):
                    m.gate_scale.fill_(1.0)
        return model.to(dtype).eval()

    def stage1(self, task: str, device, dtype):
        from .bundle import STAGE1_COMPONENT
        from .loading import load_checkpoint, load_stage1

        if self.random_preset:
            return self._random(STAGE1_COMPONENT[task], device, dtype)
        if self.is_bundle:
            sub = self.manifest["stage1"].get(task)
            if sub is None:
                raise MetisError(f"{self.source}: the bundle has no stage-1 model for task {task!r} "
                                 f"(it has: {sorted(self.manifest['stage1'])})")
            return load_checkpoint(Path(self.source) / sub, device, dtype)
        return load_stage1(task, self.source, device, dtype)

    def config(self, name: str):
        """The config of network ``name`` (``"ssl"`` or a component such as ``"acoustic_decoder"``,
        ``"s2a_full"``) as its loader would build it, read without loading any weights (no
        download either: the official configs are this package's ``official`` preset)."""
        import json

        from .config import SSLConfig, config_from_dict, load_config, load_preset
        from .loading import CONFIG_NAME

        if self.random_preset:
            return load_preset(self.random_preset, name)
        if self.is_bundle:
            where = self._bundle_dir(name)
            if name == "ssl":
                return config_from_dict(json.loads((where / "ssl_config.json").read_text()), SSLConfig)
            return load_config(where / CONFIG_NAME)
        if name == "ssl":
            return load_preset("official", "ssl")
        if name not in hub.FILES:
            raise MetisError(f"unknown component {name!r}; known: {sorted(hub.FILES)}")
        return load_preset("official", hub.FILES[name].component)

    def component(self, name: str, device, dtype):
        from .loading import load_checkpoint, load_component

        if self.random_preset:
            return self._random(name, device, dtype)
        if self.is_bundle:
            if name == "s2a_1layer" and "s2a_1layer" not in self.manifest["components"]:
                return None
            return load_checkpoint(self._bundle_dir(name), device, dtype)
        return load_component(name, self.source, device, dtype)

    def ssl(self, device, dtype):
        from .bundle import load_ssl
        from .config import load_preset
        from .models.ssl import SSLFeatureExtractor

        if self.is_bundle:
            return load_ssl(self._bundle_dir("ssl"), device, dtype)
        if self.random_preset:
            cfg = load_preset(self.random_preset, "ssl")
            if cfg.model_config is None:  # the w2v-BERT 2.0 architecture, random weights
                cfg = replace(cfg, model_id="random", model_config=W2V_BERT_2_ARCH)
            ext = SSLFeatureExtractor.from_config(cfg, stats=None)
            g = torch.Generator().manual_seed(0)
            ext.set_stats(torch.randn(cfg.hidden_size, generator=g) * 0.1, torch.rand(cfg.hidden_size, generator=g) + 0.5)
            ext = ext.to(device)
            ext.set_stats(ext.stat_mean, ext.stat_var)
            ext.model.to(dtype)
            return ext.eval()
        cfg = load_preset("official", "ssl")
        if self.ssl_source:
            cfg = replace(cfg, model_id=str(self.ssl_source))
        elif str(self.source) != "hub" and (Path(self.source) / "w2v-bert-2.0").is_dir():
            cfg = replace(cfg, model_id=str(Path(self.source) / "w2v-bert-2.0"))
        elif cfg.model_id == hub.W2V_BERT_REPO:
            cached = hub.cached_ssl_dir()  # the Hub cache's snapshot: loaded without the network
            if cached is not None:
                cfg = replace(cfg, model_id=str(cached))
            else:
                hub.check_reachable(f"{hub.W2V_BERT_REPO} (2.3 GB, the SSL front end)")
        if self.stats:
            cfg = replace(cfg, stats=str(self.stats))
        elif str(self.source) != "hub":
            for cand in ("wav2vec2bert_stats.pt", "stats"):
                if (Path(self.source) / cand).exists():
                    cfg = replace(cfg, stats=str(Path(self.source) / cand))
                    break
        with hub.quiet_hub():
            ext = SSLFeatureExtractor.from_config(cfg).to(device)
        if ext.stat_mean is not None:
            ext.set_stats(ext.stat_mean, ext.stat_var)
        ext.model.to(dtype)
        return ext.eval()

    def visual(self, device, dtype):
        from .loading import load_checkpoint

        if self.random_preset:
            return self._random("visual_encoder", device, dtype)
        if not self.is_bundle:
            raise MetisError(
                "lip-to-speech needs a visual encoder, and the reference never published one; use a bundle "
                "that holds one (trained with this project) as the model source"
            )
        return load_checkpoint(self._bundle_dir("visual"), device, dtype)

    def phone_tokenizer(self):
        from .text import PhoneTokenizer

        if self.phone_vocab is not None:
            return PhoneTokenizer(self.phone_vocab)
        if self.is_bundle and self.manifest.get("phone_vocab"):
            return PhoneTokenizer(str(Path(self.source) / self.manifest["phone_vocab"]))
        local = Path(str(self.source)) / "phone_vocab.json"  # `metis download tts --to DIR` puts it there
        if self.random_preset is None and str(self.source) != "hub" and local.is_file():
            from .text.vocab import official_vocab

            return PhoneTokenizer(official_vocab(path=local))
        return PhoneTokenizer("official")


def ssl_from_source(source: Union[str, os.PathLike], device=None):
    """The SSL front end (:class:`~metis_speech.models.ssl.SSLFeatureExtractor`) of a model
    source, loaded exactly as :class:`metis_speech.pipeline.Metis` loads its ``ssl`` net:
    a bundle (its ``ssl/``), a bundle's ``ssl/`` directory itself, an official directory,
    ``"hub"`` or ``"random:PRESET"`` (random weights drawn from torch's global generator)."""
    path = Path(str(source))
    if (path / "ssl_config.json").is_file():
        return bundle.load_ssl(path, device or "cpu")
    if str(source) != "hub" and not str(source).startswith("random:") and not path.is_dir():
        raise MetisError(f"SSL source {source} is neither a bundle, an ssl/ directory, 'hub', 'random:PRESET' nor an official directory")
    return ModelSource(source, None, None, None).ssl(torch.device(device or "cpu"), torch.float32)
