"""Official-size networks built on the meta device have exactly the official key layout
(../shared/parity/layouts.json) and the spec's parameter counts."""

import json

import pytest
import torch

from metis_speech.checkpoint import adapter_state_dict, count_parameters, lora_state_dict
from metis_speech.config import load_preset
from metis_speech.loading import build_model

STAGE1 = {
    "metis_base": "stage1_base",
    "metis_tts_t2s_phone": "stage1_tts",
    "maskgct_t2s": "stage1_tts",
    "metis_omni": "stage1_omni",
    "metis_l2s": "stage1_l2s",
    "metis_tse_se_vc_merged": "stage1_adapter",
    "s2a_model_1layer": "s2a_1layer",
    "s2a_model_full": "s2a_full",
}

PARAMS = {
    "metis_base": 725_944_832,
    "metis_tts_t2s_phone": 746_399_744,
    "metis_omni": 762_136_065,
    "metis_l2s": 740_108_288,
    "metis_tse_se_vc_merged": 741_681_153,
    "s2a_model_1layer": 330_348_544,
    "s2a_model_full": 353_439_744,
}


@pytest.fixture(scope="module")
def layouts(parity_dir):
    return json.loads((parity_dir / "layouts.json").read_text())


def _meta(component):
    with torch.device("meta"):
        return build_model(load_preset("official", component))


def _shapes(sd):
    return {k: list(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("layout", sorted(STAGE1))
def test_official_layout(layouts, layout):
    model = _meta(STAGE1[layout])
    want = {k: v["shape"] for k, v in layouts["layouts"][layout].items()}
    got = _shapes(model.state_dict())
    assert sorted(set(want) - set(got)) == [], "missing keys"
    assert sorted(set(got) - set(want)) == [], "extra keys"
    assert got == want
    if layout in PARAMS:
        # the zero-size S2A embed_tokens is a buffer-like parameter of 0 elements
        assert count_parameters(model) == PARAMS[layout] == layouts["summary"][layout]["num_params"]


def test_adapter_file_layout(layouts):
    model = _meta("stage1_adapter")
    got = _shapes(adapter_state_dict(model))
    want = {k: v["shape"] for k, v in layouts["layouts"]["adapter_file"].items()}
    assert got == want


@pytest.mark.parametrize("layout,r,alpha", [("lora_r32_file", 32, 64), ("lora_r16_file", 16, 32)])
def test_lora_file_layout(layouts, layout, r, alpha):
    from metis_speech.training.lora import add_lora

    model = _meta("stage1_adapter")
    peft_model = add_lora(model, r=r, alpha=alpha)
    got = _shapes(lora_state_dict(peft_model))
    want = {k: v["shape"] for k, v in layouts["layouts"][layout].items()}
    assert got == want
    assert sum(v.numel() for v in lora_state_dict(peft_model).values()) == layouts["summary"][layout]["num_params"]
