"""Lower-precision forms for CPU inference: half-precision storage, int8 (opt-in)."""

import torch
from torch import nn

from metis_speech.config import Stage1Config
from metis_speech.models.precision import is_int8, quantize_int8, store_half
from metis_speech.models.stage1 import Stage1Model


def _model(seed=0):
    cfg = Stage1Config(hidden_size=64, num_layers=2, num_heads=4, codebook_size=96, use_phone_cond=True)
    m = Stage1Model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def _forward(m):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 96, (1, 7), generator=g)
    with torch.no_grad():
        return m(ids[:, :3], ids[:, 3:], torch.tensor([[True, False, True, True]]), torch.tensor([0.5]),
                 phone_ids=torch.randint(0, 300, (1, 4), generator=g)).logits


def test_store_half_keeps_weights_bf16_and_computes_fp32():
    ref = _forward(_model())
    m = store_half(_model(), torch.bfloat16, min_numel=1)
    lin = m.diff_estimator.layers[0].mlp.up_proj
    assert lin.weight.dtype == torch.bfloat16
    out = _forward(m)
    assert out.dtype == torch.float32
    err = (out - ref).abs().max() / ref.abs().max()
    assert 0 < err < 0.05  # bf16 weight rounding only


def test_int8_quantises_linears_and_runs():
    ref = _forward(_model())
    m = quantize_int8(_model())
    assert is_int8(m) and not is_int8(_model())
    assert not any(type(x) is nn.Linear for x in m.modules())
    out = _forward(m)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert not torch.equal(out, ref)
    cos = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0)
    assert cos > 0.9  # close to the fp32 result, not equal
