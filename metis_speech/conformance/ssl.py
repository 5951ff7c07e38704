"""Conformance runner for the ``w2vbert`` kind (parity README §10).

Builds :class:`~metis_speech.models.ssl.SSLFeatureExtractor` from an :class:`SSLConfig`
whose ``model_config`` is the manifest's ``constructor.config`` and whose ``model_id`` is
the case's weight directory (weights and extractor settings are read from there, strictly),
with the case's random statistics. The model is not truncated so that every hidden state
can be compared; ``feat_norm`` comes from the same path ``forward`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch

from ..config import SSLConfig
from . import register


@register("w2vbert")
def run_w2vbert(name: str, case: dict, root: Path, inputs: dict) -> Dict[str, torch.Tensor]:
    from ..models.ssl import SSLFeatureExtractor

    model_config = dict(case["constructor"]["config"])
    cfg = SSLConfig(
        model_id=str(root / case["weights"][0]),
        hidden_state_index=int(case["hidden_state_index"]),
        hidden_size=int(model_config["hidden_size"]),
        stats=None,
        model_config=model_config,
    )
    ssl = SSLFeatureExtractor.from_config(cfg, stats=(inputs["stat_mean"], inputs["stat_var"]), truncate=False)
    sample_rate = int(case.get("feature_extractor_kwargs", {}).get("sampling_rate", cfg.sample_rate))
    with torch.no_grad():
        batch = ssl.prepare(inputs["waveform_16k"], sample_rate)
        states = ssl.hidden_states(batch)
        hidden = states[cfg.hidden_state_index]
        feats = ssl.normalize(hidden)
    return {
        "input_features": batch.input_features,
        "attention_mask": batch.attention_mask,
        "hidden_state": hidden,
        "feat_norm": feats,
        "all_hidden_states": torch.stack(states),
    }
