"""Omni stage 1 on a task mixture: mixed batches, per-item masking, a tiny run, resume.

The tiny run follows ``stage1_omni_tiny`` (five synthetic task sources, LoRA + adapter, fresh
phone prefix) shrunk to the test model size (2 layers x 64, initialised from the shared
40-step pre-training run) and given 30 steps at lr 5e-3. Threshold: mean loss of the last 3
steps < 0.8 x the first 3 (observed about 0.6).
"""

import shutil

import numpy as np
import pytest
import torch

from metis_speech.config import ConfigError, load_preset
from metis_speech.loading import build_model, load_checkpoint
from metis_speech.training.data import collate, synthetic_utterances
from metis_speech.training.objectives import Stage1Objective
from metis_speech.training.trainer import Trainer, load_train_config, read_log

from conftest import SMALL, head_tail, small_config


def _kinds(n_phones=4):
    """Eight utterances of every condition kind: none, phones, cond, both; with and without
    a fixed prompt. Phone items get ``n_phones`` to ``n_phones + 2`` phones (unequal counts:
    collate left-pads phones, so an item's relative positions do not depend on its batch)."""
    us = synthetic_utterances(8, min_frames=12, max_frames=30, seed=7, phones=True, cond_dim=128, prompt_frac=0.3)
    kinds = [(p, c, f) for f in (False, True) for p in (False, True) for c in (False, True)]
    for i, (u, (p, c, f)) in enumerate(zip(us, kinds)):
        if p:
            u["phones"] = u["phones"][: n_phones + i % 3]
        else:
            del u["phones"]
        if not c:
            del u["cond"]
        if not f:
            del u["prompt_len"]
    return us, kinds


def test_mixed_collate_shapes_and_masks():
    us, kinds = _kinds()
    us[2]["phones"] = torch.arange(6) + 10  # one longer phone sequence (item 2 has phones)
    b = collate(us, phone_pad_id=1023)
    B, T = 8, max(u["semantic"].shape[0] for u in us)
    assert b["semantic"].shape == (B, T) and b["cond"].shape == (B, T, 128)
    has_p = torch.tensor([p for p, _, _ in kinds])
    has_c = torch.tensor([c for _, c, _ in kinds])
    fixed = torch.tensor([f for _, _, f in kinds])
    assert b["phones"].shape == (B, 6)
    assert torch.equal(b["phone_lengths"] > 0, has_p) and int(b["phone_lengths"][2]) == 6
    assert (b["phones"][~has_p] == 1023).all()
    assert torch.equal(b["cond_mask"], has_c) and b["cond_mask"].dtype == torch.bool
    assert (b["cond"][~has_c] == 0).all()
    for i in has_c.nonzero().flatten().tolist():
        assert torch.equal(b["cond"][i, : b["lengths"][i]], us[i]["cond"])
    assert torch.equal(b["prompt_len"] > 0, fixed)
    # a field every item has (or none has) keeps the homogeneous layout
    assert "cond_mask" not in collate([u for u, (p, c, f) in zip(us, kinds) if c])
    assert "prompt_len" not in collate([u for u, (p, c, f) in zip(us, kinds) if not f])
    assert "phones" not in collate([u for u, (p, c, f) in zip(us, kinds) if not p])


def test_mixed_batch_objective_equals_per_item():
    """Each item of a mixed batch gets what it would get alone: adapter output only with a
    condition, the phone prefix only with phones, its fixed prompt or a random one."""
    torch.manual_seed(0)
    model = build_model(load_preset("tiny", "stage1_omni")).eval()
    with torch.no_grad():  # a live adapter (it starts at gate 0, biases 0) whose adapter(0) != 0
        model.cond_adapter.gate_scale.fill_(1.0)
        model.cond_adapter.in_linear.bias.normal_(0, 0.5)
        model.cond_adapter.out_linear.bias.normal_(0, 0.5)
    obj = Stage1Objective(model)
    us, kinds = _kinds()
    batch = collate(us)
    plan = obj.sample(batch, torch.Generator().manual_seed(3))
    fixed = torch.tensor([f for _, _, f in kinds])
    has_p = torch.tensor([p for p, _, _ in kinds])
    # fixed prompts are kept (or dropped, for the unconditional share); the others stay random
    free = obj.sample({k: v for k, v in batch.items() if k != "prompt_len"}, torch.Generator().manual_seed(3))
    want = torch.where(fixed, torch.where(free["prompt_len"] > 0, batch["prompt_len"], 0), free["prompt_len"])
    assert torch.equal(plan["prompt_len"], want) and (want[fixed] > 0).any() and (want[~fixed] > 0).any()
    assert (plan["keep_phones"] & has_p).any()  # some items really see their phones
    with torch.no_grad():
        out = obj(batch, plan)
        ce_sum, n = 0.0, 0
        for b, u in enumerate(us):
            Tb = int(batch["lengths"][b])
            one = collate([u])
            plan_b = {"t": plan["t"][b : b + 1], "prompt_len": plan["prompt_len"][b : b + 1],
                      "masked": plan["masked"][b : b + 1, :Tb], "keep_phones": plan["keep_phones"][b : b + 1]}
            alone = obj(one, plan_b)
            assert torch.allclose(out.logits[b, :Tb], alone.logits[0], atol=1e-4), (b, kinds[b])
            ce_sum += float(alone.loss) * int(alone.n_masked)
            n += int(alone.n_masked)
        assert abs(float(out.loss) - ce_sum / n) < 1e-4
        # not vacuous: the condition and the phones do change an item's output
        c_item = kinds.index((False, True, False))
        drop = dict(batch, cond_mask=batch["cond_mask"].clone())
        drop["cond_mask"][c_item] = False
        assert not torch.allclose(obj(drop, plan).logits[c_item], out.logits[c_item], atol=1e-3)
        p_item = int((plan["keep_phones"] & has_p).nonzero()[0])
        nophones = dict(batch, phone_lengths=torch.zeros_like(batch["phone_lengths"]))
        assert not torch.allclose(obj(nophones, plan).logits[p_item], out.logits[p_item], atol=1e-3)


def test_source_config_errors():
    base = small_config("stage1_omni", "unused", 1)
    good = {"synthetic": {"n": 4}, "weight": 1}
    for sources, match in [
        ([], "non-empty"),
        ([{"weight": 1}], "exactly one of path and synthetic"),
        ([dict(good, weight=0)], "positive"),
        ([dict(good, require=["phonez"])], "require"),
        ([dict(good, colour="red")], "unknown"),
        ([dict(good, name="a"), dict(good, name="a")], "unique"),
    ]:
        d = dict(base, data={"sources": sources})
        with pytest.raises(ConfigError, match=match):
            load_train_config(d)
    with pytest.raises(ConfigError, match="exactly one of data.path"):
        load_train_config(dict(base, data={"sources": [good], "synthetic": {"n": 4}}))


# ------------------------------------------------------------------ tiny omni run
@pytest.fixture(scope="module")
def omni_run(pretrained, tmp_path_factory):
    base_out = pretrained[0]
    out = tmp_path_factory.mktemp("omni")
    cfg = load_train_config("stage1_omni_tiny")
    cfg.model.overrides = dict(SMALL)
    cfg.model.init_from = str(base_out / "final")
    cfg.optim.lr = 5e-3
    cfg.train.max_steps, cfg.train.log_every, cfg.train.progress, cfg.train.out = 30, 1, False, str(out)
    tr = Trainer(cfg)
    summary = tr.train()
    return out, tr, summary


def test_omni_mixture_run_loss_falls(omni_run):
    out, tr, summary = omni_run
    first, last = head_tail(out)
    recs = read_log(out)
    seen = {k.split("/", 1)[1]: v for k, v in recs[-1].items() if k.startswith("frames_seen/")}
    print(f"stage1 omni mixture: {first:.3f} -> {last:.3f}, {summary['frames_per_s']:.0f} frames/s, frames seen {seen}")
    assert last < 0.8 * first
    assert not summary["skipped"]
    # every task was seen, in shares near the weights (the epoch is not over: loose bound)
    weights = {"tts": 0.3, "vc": 0.2, "tse": 0.15, "se": 0.2, "tse_text": 0.15}
    total = sum(seen.values())
    assert set(seen) == set(weights) and total > 0
    for k, w in weights.items():
        assert abs(seen[k] / total - w) < 0.1, (k, seen[k] / total)
    assert [r["frames_seen/tts"] for r in recs] == sorted(r["frames_seen/tts"] for r in recs)
    final = load_checkpoint(out / "final")
    assert final.cfg.use_phone_cond and final.cfg.adapter == "gated"
    assert float(final.cond_adapter.gate_scale.detach()) != 0.0  # the adapter trained


def test_omni_final_runs_tts_and_se_through_metis(omni_run, shared_dir, tmp_path):
    from metis_speech.bundle import random_bundle
    from metis_speech.pipeline import Metis
    from tests.pipeline.conftest import FAST, speechlike

    out = omni_run[0]
    bundle = random_bundle(tmp_path / "bundle", tasks=("omni",), phone_vocab=shared_dir / "g2p" / "vocab.json",
                           with_s2a_1layer=False)
    shutil.rmtree(bundle / "stage1_omni")
    shutil.copytree(out / "final", bundle / "stage1_omni")  # the trained omni stage 1
    import soundfile as sf

    sf.write(tmp_path / "prompt.wav", speechlike(1.5, 16000, 120), 16000)
    m = Metis.from_pretrained("omni", bundle, device="cpu")
    trained = load_checkpoint(out / "final")
    assert torch.equal(m._net("stage1").cond_adapter.gate_scale, trained.cond_adapter.gate_scale)
    tts = m.tts("Hello there.", tmp_path / "prompt.wav", "A test of my voice.", duration=0.6, language="en", seed=0, **FAST)
    assert tts.semantic_ids.shape == (30,) and np.isfinite(tts.wav).all() and len(tts.wav) == 30 * 480
    se = m.se(tmp_path / "prompt.wav", seed=0, **FAST)  # frame condition only, no prompt
    assert abs(se.duration - 1.5) < 0.05 and np.isfinite(se.wav).all()


# ------------------------------------------------------------------ kill / resume
def _mixture_config(out, steps):
    syn = {"min_frames": 16, "max_frames": 32, "symbol_seed": 0}
    d = small_config("stage1_omni", out, steps, train={"grad_accum": 2})
    d["data"] = {
        "sources": [
            {"name": "tts", "weight": 2, "require": ["phones"], "synthetic": dict(syn, n=12, seed=1, cond_dim=0)},
            {"name": "se", "weight": 1, "require": ["cond"], "synthetic": dict(syn, n=12, seed=2, phones=False)},
            {"name": "tse_text", "weight": 1, "require": ["phones", "cond", "prompt_len"],
             "synthetic": dict(syn, n=6, seed=3, prompt_frac=0.3)},
        ],
        "max_frames": 256,
    }
    return d


def test_mixture_stop_and_resume_matches_uninterrupted(tmp_path):
    N, k = 8, 3
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(load_train_config(_mixture_config(a, N))).train()
    cfg_b = load_train_config(_mixture_config(b, N))
    Trainer(cfg_b).train(until=k)
    resumed = Trainer(cfg_b, resume=True)
    assert resumed.step == k and resumed.epoch >= 1  # the resume replans a finished epoch
    resumed.train()
    la, lb = read_log(a), read_log(b)
    assert [r["step"] for r in lb] == list(range(1, N + 1)) and la[-1]["epoch"] >= 2
    for ra, rb in zip(la[k:], lb[k:]):
        assert abs(ra["loss"] - rb["loss"]) <= 1e-5, (ra["step"], ra["loss"], rb["loss"])
        seen_a = {key: v for key, v in ra.items() if key.startswith("frames_seen/")}
        assert len(seen_a) == 3 and seen_a == {key: v for key, v in rb.items() if key.startswith("frames_seen/")}


def test_official_omni_recipe():
    cfg = load_train_config("stage1_omni")
    se = load_train_config("stage1_se_lora")
    assert cfg.model.component == "stage1_omni" and cfg.model.preset == "official"
    assert cfg.model.init_from == se.model.init_from  # the official metis_base file
    assert (cfg.finetune.mode, cfg.finetune.lora_r, cfg.finetune.lora_alpha) == ("lora", 32, 64)
    assert cfg.data.source_names() == ["tts", "vc", "tse", "se", "tse_text"]
    assert abs(sum(e["weight"] for e in cfg.data.sources) - 1.0) < 1e-9
