"""Semantic codec (RepCodec): reference vectors, official layout, tiny round trips, training step."""

import json

import pytest
import torch
from safetensors.torch import load_model, save_model

from metis_speech.config import load_preset
from metis_speech.conformance import load_manifest, run_case
from metis_speech.models.semantic_codec import SemanticCodec


def test_conformance_case(vector_dir):
    case = load_manifest(vector_dir)["cases"]["semantic_codec"]
    result = run_case("semantic_codec", case, vector_dir)
    assert result.error is None, result.error
    assert {o.name for o in result.outputs} == set(case["outputs"])
    assert result.passed, [(o.name, o.max_abs_err, o.detail) for o in result.outputs if not o.passed]


def test_official_layout_on_meta(parity_dir):
    layouts = json.loads((parity_dir / "layouts.json").read_text())
    with torch.device("meta"):
        codec = SemanticCodec(load_preset("official", "semantic_codec"))
    got = {k: list(v.shape) for k, v in codec.state_dict().items()}
    want = {k: v["shape"] for k, v in layouts["layouts"]["semantic_codec"].items()}
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert got == want
    assert sum(p.numel() for p in codec.parameters()) == 44_289_808


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SemanticCodec(load_preset("tiny", "semantic_codec")).eval()


def test_tiny_quantize_shapes_and_embed_ids(tiny):
    h = tiny.cfg.hidden_size
    x = torch.randn(2, 13, h)
    with torch.no_grad():
        ids, quantized = tiny.quantize(x)
        assert ids.shape == (2, 13) and ids.dtype == torch.long
        assert int(ids.max()) < tiny.cfg.codebook_size
        assert quantized.shape == (2, 13, h)
        assert torch.allclose(tiny.embed_ids(ids), quantized, atol=1e-5)
        assert tiny.decode(quantized).shape == (2, 13, h)
    with pytest.raises(ValueError):
        tiny.quantize(torch.randn(2, 13, h + 1))


def test_tiny_state_dict_roundtrip(tiny, tmp_path):
    path = tmp_path / "semantic_codec.safetensors"
    save_model(tiny, str(path))
    other = SemanticCodec(load_preset("tiny", "semantic_codec")).eval()
    missing, unexpected = load_model(other, str(path), strict=True)
    assert not missing and not unexpected
    x = torch.randn(1, 9, tiny.cfg.hidden_size)
    with torch.no_grad():
        assert torch.equal(other.quantize(x)[0], tiny.quantize(x)[0])


def test_training_forward_losses_and_gradients():
    torch.manual_seed(0)
    codec = SemanticCodec(load_preset("tiny", "semantic_codec")).train()
    x = torch.randn(2, 10, codec.cfg.hidden_size)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    out = codec(x, mask)
    assert out.reconstruction.shape == x.shape and out.ids.shape == (2, 10, 1)
    for loss in (out.recon_loss, out.commit_loss, out.codebook_loss, out.loss):
        assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.allclose(out.loss, out.recon_loss + out.commit_loss + out.codebook_loss)
    out.loss.backward()
    for name in ("encoder.0.embed.weight", "decoder.1.weight", "quantizer.quantizers.0.codebook.weight",
                 "quantizer.quantizers.0.in_project.weight_v", "quantizer.quantizers.0.out_project.weight_g"):
        grad = dict(codec.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    full = codec(x)
    assert torch.allclose(codec(x, torch.ones(2, 10)).recon_loss, full.recon_loss)
