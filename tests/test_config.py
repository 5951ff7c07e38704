"""Typed configs: presets as data, JSON/YAML round trips, clear errors."""

import pytest

from metis_speech.config import (
    ConfigError,
    Stage1Config,
    config_to_dict,
    list_presets,
    load_config,
    load_preset,
    preset_components,
    save_config,
)
from metis_speech.loading import build_model

COMPONENTS = ["stage1_base", "stage1_tts", "stage1_adapter", "stage1_omni", "stage1_l2s", "s2a_1layer", "s2a_full",
              "semantic_codec", "acoustic_encoder", "acoustic_decoder", "ssl"]


def test_presets_cover_every_component():
    assert {"official", "tiny"} <= set(list_presets())
    for preset in ("official", "tiny"):
        assert set(COMPONENTS) <= set(preset_components(preset))


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip(tmp_path, component, suffix):
    cfg = load_preset("official", component)
    path = tmp_path / f"c{suffix}"
    save_config(cfg, path)
    again = load_config(path)
    assert config_to_dict(again) == config_to_dict(cfg)


def test_tiny_stage1_and_s2a_are_small():
    total = 0
    for c in ("stage1_omni", "s2a_full", "s2a_1layer"):
        total += sum(p.numel() for p in build_model(load_preset("tiny", c)).parameters())
    assert total < 10_000_000


def test_errors():
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("huge", "stage1_tts")
    with pytest.raises(ConfigError, match="no component"):
        load_preset("official", "stage3")
    with pytest.raises(ConfigError, match="divisible"):
        Stage1Config(hidden_size=100, num_heads=3)
    with pytest.raises(ConfigError, match="adapter must be"):
        Stage1Config(adapter="lora")


def test_bad_config_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"type": "Stage1Config", "hidden_sise": 3}')
    with pytest.raises(ConfigError, match="hidden_sise"):
        load_config(p)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")
