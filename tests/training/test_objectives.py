"""Objective unit tests: masking rules of METIS_SPEC.md §4 for stage 1 and S2A."""

import math

import pytest
import torch

from metis_speech.config import load_preset
from metis_speech.loading import build_model
from metis_speech.training.data import collate, synthetic_utterances
from metis_speech.training.objectives import (
    S2AObjective,
    Stage1Objective,
    s2a_layer_weights,
    sample_prompt_lengths,
)


def _batch(n=16, **kw):
    return collate(synthetic_utterances(n, min_frames=12, max_frames=40, seed=3, **kw))


def _stage1(component="stage1_base"):
    torch.manual_seed(0)
    return Stage1Objective(build_model(load_preset("tiny", component)))


def test_prompt_never_masked_and_at_least_one_masked():
    obj = _stage1()
    b = _batch(32)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        plan = obj.sample(b, g)
        pos = torch.arange(b["semantic"].shape[1])[None]
        assert not (plan["masked"] & (pos < plan["prompt_len"][:, None])).any()
        assert not (plan["masked"] & (pos >= b["lengths"][:, None])).any()  # padding never masked
        assert plan["masked"].any(dim=1).all()
        assert (plan["t"] >= 1e-5).all() and (plan["t"] <= 1).all()


def test_prompt_lengths_follow_the_spec():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(10, 200, (4000,))
    pl = sample_prompt_lengths(lengths, 0.85, None, 0.4, g, low_cap=5)
    has = pl > 0
    assert abs(has.float().mean().item() - 0.85) < 0.03
    low = torch.minimum(lengths // 4, torch.tensor(5))
    assert (pl[has] >= low[has]).all()
    assert (pl[has] < (0.4 * lengths[has]).floor()).all()
    # S2A: 25-50 % of each sample's own length
    pl2 = sample_prompt_lengths(lengths, 1.0, 0.25, 0.5, g)
    assert (pl2 >= (0.25 * lengths).floor()).all() and (pl2 < (0.5 * lengths).floor().clamp(min=1) + 1).all()


def test_mask_ratio_floor():
    """p = max(sin(πt/2), 0.2): at t -> 0 about 20 % of the non-prompt frames are masked."""
    obj = _stage1()
    obj.net.cfg.prompt_prob = 0.0
    b = collate(synthetic_utterances(64, min_frames=200, max_frames=200, seed=0))
    g = torch.Generator().manual_seed(0)
    plan = obj.sample(b, g)
    frac = plan["masked"].float().mean(dim=1)
    p = torch.sin(plan["t"] * math.pi / 2).clamp(min=0.2)
    assert (plan["t"] < 0.1).any()  # some near-zero t in the sample
    assert torch.allclose(frac, p, atol=0.12)
    small = plan["t"] < 0.1
    assert (frac[small] > 0.1).all()


def test_loss_only_on_masked_positions():
    obj = _stage1()
    b = _batch(8)
    plan = obj.sample(b, torch.Generator().manual_seed(0))
    out = obj(b, plan)
    out.logits.retain_grad()
    out.loss.backward()
    gnorm = out.logits.grad.abs().sum(-1)
    masked = plan["masked"]
    assert (gnorm[~masked] == 0).all()
    assert (gnorm[masked] > 0).all()
    assert int(out.n_masked) == int(masked.sum())


def test_unconditional_samples_drop_the_phone_prefix():
    obj = _stage1("stage1_tts")
    b = _batch(64, phones=True)
    plan = obj.sample(b, torch.Generator().manual_seed(0))
    assert torch.equal(plan["keep_phones"], plan["prompt_len"] > 0)
    assert (~plan["keep_phones"]).any() and plan["keep_phones"].any()
    out = obj(b, plan)
    assert torch.isfinite(out.loss)
    # with the option off the phones stay
    obj2 = Stage1Objective(obj.model, drop_phones_with_prompt=False)
    assert obj2.sample(b, torch.Generator().manual_seed(0))["keep_phones"].all()


def test_frame_condition_enters_through_the_adapter():
    obj = _stage1("stage1_adapter")
    b = _batch(4, cond_dim=128)
    with torch.no_grad():
        obj.net.cond_adapter.gate_scale.fill_(1.0)
    plan = obj.sample(b, torch.Generator().manual_seed(0))
    l1 = obj(b, plan).loss
    b2 = dict(b, cond=torch.zeros_like(b["cond"]))
    assert not torch.allclose(l1, obj(b2, plan).loss)


def test_s2a_layer_weights_and_masks():
    w = s2a_layer_weights(4, True)
    assert torch.allclose(w, torch.tensor([4, 3, 2, 1], dtype=w.dtype) / 10)
    w = s2a_layer_weights(4, False)
    assert w[0] == 0 and torch.allclose(w[1:], torch.tensor([3, 2, 1], dtype=w.dtype) / 6)
    with pytest.raises(ValueError):
        s2a_layer_weights(1, False)
    torch.manual_seed(0)
    cfg = load_preset("tiny", "s2a_full")
    cfg.predict_layer_1 = False
    obj = S2AObjective(build_model(cfg))
    b = _batch(16, num_quantizers=4)
    g = torch.Generator().manual_seed(0)
    layers = []
    for _ in range(30):
        plan = obj.sample(b, g)
        layers.append(int(plan["layer"]))
        pos = torch.arange(b["semantic"].shape[1])[None]
        assert not (plan["masked"] & (pos < plan["prompt_len"][:, None])).any()
        assert plan["masked"].any(dim=1).all()
    assert 0 not in layers and len(set(layers)) > 1
    out = obj(b, plan)
    out.logits.retain_grad()
    out.loss.backward()
    gnorm = out.logits.grad.abs().sum(-1)
    assert (gnorm[~plan["masked"]] == 0).all() and (gnorm[plan["masked"]] > 0).all()


def test_fixed_prompt_from_shards_is_kept_or_dropped():
    """VC/TSE shards carry their real prompt length: the objective keeps exactly that prompt
    (never masked) or, for the unconditional share, no prompt at all."""
    import torch

    from metis_speech.config import Stage1Config
    from metis_speech.models.stage1 import Stage1Model
    from metis_speech.training.objectives import Stage1Objective

    model = Stage1Model(Stage1Config(hidden_size=32, num_layers=1, num_heads=2, codebook_size=16))
    obj = Stage1Objective(model)
    B, T = 64, 20
    batch = {"semantic": torch.randint(0, 16, (B, T)), "lengths": torch.full((B,), T), "prompt_len": torch.full((B,), 7)}
    plan = obj.sample(batch, torch.Generator().manual_seed(0))
    assert set(plan["prompt_len"].tolist()) <= {0, 7}
    assert 0 < int((plan["prompt_len"] == 7).sum()) < B
    kept = plan["prompt_len"] == 7
    assert not plan["masked"][kept, :7].any()
