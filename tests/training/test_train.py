"""Tiny training runs: the loss falls and the saved results load through the inference API.

Thresholds (mean of the first 3 logged steps vs the last 3): pre-training and S2A
final < 0.6 x initial in 40 steps; LoRA + adapter fine-tuning (starting from the
pre-trained model at the unigram plateau ≈ ln 16, behind a zero-initialised gate and LoRA B)
final < 0.93 x initial in 50 steps (observed about 0.90).
"""

import json

import torch

from metis_speech.checkpoint import build_empty, load_weights, merge_adapter, merge_lora
from metis_speech.config import load_config
from metis_speech.loading import build_model, load_checkpoint
from metis_speech.models.s2a import S2AModel
from metis_speech.models.stage1 import Stage1Model
from metis_speech.training.data import collate, synthetic_utterances
from metis_speech.training.objectives import build_objective
from metis_speech.training.trainer import Trainer, load_train_config

from conftest import head_tail, small_config


def _logits(model, batch, seed=0):
    obj = build_objective(model).eval()
    plan = obj.sample(batch, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return obj(batch, plan).logits


def test_stage1_pretraining_loss_falls_and_checkpoint_loads(pretrained):
    out, tr, summary = pretrained
    first, last = head_tail(out)
    print(f"stage1 pre-train: {first:.3f} -> {last:.3f}, {summary['frames_per_s']:.0f} frames/s")
    assert last < 0.6 * first
    assert (out / "loss.png").is_file() and (out / "log.jsonl").is_file()
    model = load_checkpoint(out / "final")
    assert isinstance(model, Stage1Model) and model.cfg.hidden_size == 64
    batch = collate(synthetic_utterances(4, min_frames=16, max_frames=32, seed=9))
    trained = tr._unwrapped().eval()
    assert torch.allclose(_logits(model, batch), _logits(trained, batch), atol=1e-5)


def test_stage1_lora_adapter_finetune_round_trip(pretrained, tmp_path):
    base_out = pretrained[0]
    cfg = small_config(
        "stage1_adapter",
        tmp_path,
        50,
        model={"init_from": str(base_out / "final")},
        finetune={"mode": "lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.01},
        optim={"lr": 1e-2},
    )
    tr = Trainer(load_train_config(cfg))
    tr.train()
    first, last = head_tail(tmp_path)
    print(f"stage1 LoRA+adapter: {first:.3f} -> {last:.3f}")
    assert last < 0.93 * first
    final = tmp_path / "final"
    for name in ("lora.safetensors", "adapter.safetensors", "lora.json", "model.safetensors", "config.json"):
        assert (final / name).is_file(), name
    meta = json.loads((final / "lora.json").read_text())
    assert meta["r"] == 8 and meta["alpha"] == 16
    from safetensors import safe_open

    with safe_open(str(final / "lora.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert all(k.startswith("model.diff_estimator.layers.") and k.endswith(".default.weight") for k in keys)
    with safe_open(str(final / "adapter.safetensors"), "pt") as f:
        assert all(k.startswith("model.cond_adapter.") for k in f.keys())

    # the official loading path: base + adapter file + LoRA file merged (W += alpha/r B A)
    fcfg = load_config(final / "config.json")
    merged = build_empty(lambda: Stage1Model(fcfg))
    load_weights(merged, base_out / "final" / "model.safetensors", allow_missing=[r"cond_adapter\."])
    merge_adapter(merged, final / "adapter.safetensors")
    assert merge_lora(merged, final / "lora.safetensors", alpha=16, rank=8) == 2 * 7
    batch = collate(synthetic_utterances(4, min_frames=16, max_frames=32, seed=9, cond_dim=128))
    peft_model = tr._unwrapped().eval()
    ref = _logits(peft_model, batch)
    assert torch.allclose(_logits(merged.eval(), batch), ref, atol=1e-4)
    assert torch.allclose(_logits(load_checkpoint(final), batch), ref, atol=1e-4)
    # LoRA really moved the model away from the base, and the adapter gate opened
    base = load_checkpoint(base_out / "final")
    assert not torch.allclose(merged.diff_estimator.layers[0].self_attn.q_proj.weight, base.diff_estimator.layers[0].self_attn.q_proj.weight)
    assert float(merged.cond_adapter.gate_scale.detach().abs()) > 0


def test_stage1_tts_finetune_trains_the_new_phone_prefix(pretrained, tmp_path):
    cfg = small_config("stage1_tts", tmp_path, 8, model={"init_from": str(pretrained[0] / "final")})
    tr = Trainer(load_train_config(cfg))
    start = tr.net.phone_emb.weight.detach().clone()
    tr.train()
    model = load_checkpoint(tmp_path / "final")
    assert model.cfg.use_phone_cond
    assert not torch.allclose(model.phone_emb.weight, start)


def test_s2a_loss_falls_and_checkpoint_loads(tmp_path):
    tr = Trainer(load_train_config(small_config("s2a_full", tmp_path, 40)))
    summary = tr.train()
    first, last = head_tail(tmp_path)
    print(f"s2a: {first:.3f} -> {last:.3f}, {summary['frames_per_s']:.0f} frames/s")
    assert last < 0.6 * first
    model = load_checkpoint(tmp_path / "final")
    assert isinstance(model, S2AModel) and model.num_quantizers == 4


def test_held_out_validation_is_logged_falls_and_is_reproducible(tmp_path):
    """``data.val_path``: the objective on held-out shards is logged as val_loss / val_accuracy
    every ``train.eval_every`` steps (and at the end), falls as the network learns (held-out
    utterances of the same token language), is plotted beside the training loss, and gives
    the same numbers when asked twice of the same network (fixed masks, prompts and layers)."""
    import pytest

    from metis_speech.config import ConfigError, load_preset
    from metis_speech.errors import MetisError
    from metis_speech.training.data import write_shard
    from metis_speech.training.trainer import make_trainer, read_log

    pc = load_preset("tiny", "s2a_full")
    held_out = synthetic_utterances(24, vocab=pc.cond_codebook_size, min_frames=16, max_frames=32, seed=1, symbol_seed=0,
                                    num_quantizers=pc.num_quantizers, acoustic_vocab=pc.codebook_size, id_prefix="val")
    (tmp_path / "val").mkdir()
    write_shard(tmp_path / "val" / "shard-00000.safetensors", held_out)
    cfg = small_config("s2a_full", tmp_path / "run", 40, data={"val_path": str(tmp_path / "val")}, train={"eval_every": 10})
    tr = Trainer(load_train_config(cfg))
    tr.train()
    val = [(r["step"], r["val_loss"], r["val_accuracy"]) for r in read_log(tmp_path / "run") if "val_loss" in r]
    assert [s for s, _, _ in val] == [10, 20, 30, 40]
    print("held-out loss:", [round(v, 3) for _, v, _ in val])
    assert val[-1][1] < 0.8 * val[0][1] and val[-1][2] > val[0][2]
    assert tr.validate() == tr.validate()  # the same batches, masks and layers every time
    assert abs(tr.validate()["val_loss"] - val[-1][1]) < 1e-6
    assert (tmp_path / "run" / "loss.png").is_file()

    with pytest.raises(ConfigError, match="val_path .* does not exist"):
        load_train_config(small_config("s2a_full", tmp_path / "x", 2, data={"val_path": str(tmp_path / "absent")}))
    with pytest.raises(ConfigError, match="eval_every must be a positive integer"):
        load_train_config(small_config("s2a_full", tmp_path / "x", 2, train={"eval_every": 0}))
    codec = small_config("semantic_codec", tmp_path / "codec", 2, data={"val_path": str(tmp_path / "val")})
    with pytest.raises(MetisError, match="val_path .* is for stage-1 and S2A training"):
        make_trainer(load_train_config(codec))


def test_one_layer_s2a_reading_the_whole_prompt_trains(tmp_path):
    """``overrides: {prompt_quantizers: 4}``: a 1-layer S2A whose prompt input sums four RVQ
    layers trains on utterances with four layers of acoustic ids and loads back as such; shards
    with fewer layers than it reads are refused by name, not met with a traceback mid-run."""
    import pytest

    from metis_speech.errors import MetisError
    from metis_speech.training.data import write_shard

    cfg = small_config("s2a_1layer", tmp_path / "run", 30)
    cfg["model"]["overrides"]["prompt_quantizers"] = 4
    tr = Trainer(load_train_config(cfg))
    tr.train()
    first, last = head_tail(tmp_path / "run")
    assert last < first
    model = load_checkpoint(tmp_path / "run" / "final")
    assert isinstance(model, S2AModel) and (model.num_quantizers, model.prompt_layers, len(model.token_emb)) == (1, 4, 4)

    two = synthetic_utterances(8, vocab=model.cfg.cond_codebook_size, min_frames=16, max_frames=32, seed=1,
                               num_quantizers=2, acoustic_vocab=model.cfg.codebook_size)
    (tmp_path / "shards").mkdir()
    write_shard(tmp_path / "shards" / "shard-00000.safetensors", two)
    cfg = small_config("s2a_1layer", tmp_path / "run2", 2)
    cfg["model"]["overrides"]["prompt_quantizers"] = 4
    cfg["data"] = {"path": str(tmp_path / "shards"), "max_frames": 256}
    with pytest.raises(MetisError, match="fewer than 4 acoustic RVQ layers"):
        Trainer(load_train_config(cfg))


def test_init_layers_deepens_a_trained_network_without_changing_its_output(pretrained, tmp_path):
    """``model.init_layers: [0, 1, 1]`` with ``num_layers: 3`` starts a 3-layer network from the
    2-layer pre-trained one, its extra layer an identity copy: same logits before any step;
    it then trains; bad layouts are refused by name."""
    import pytest

    from metis_speech.config import ConfigError
    from metis_speech.errors import MetisError

    from conftest import SMALL

    base = load_checkpoint(pretrained[0] / "final").eval()
    init = {"init_from": str(pretrained[0] / "final"), "init_layers": [0, 1, 1], "overrides": dict(SMALL, num_layers=3)}
    tr = Trainer(load_train_config(small_config("stage1_base", tmp_path / "grown", 5, model=init)))
    grown = tr._unwrapped().eval()
    assert grown.cfg.num_layers == 3
    batch = collate(synthetic_utterances(4, min_frames=16, max_frames=32, seed=9))
    assert torch.allclose(_logits(grown, batch), _logits(base, batch), atol=1e-5)
    copy = grown.diff_estimator.layers[2]
    assert copy.self_attn.o_proj.weight.abs().max() == 0 and copy.mlp.down_proj.weight.abs().max() == 0
    assert torch.equal(copy.self_attn.q_proj.weight, base.diff_estimator.layers[1].self_attn.q_proj.weight)
    tr.train()
    assert load_checkpoint(tmp_path / "grown" / "final").cfg.num_layers == 3

    for layout, n, err, msg in (([0, 1], 3, MetisError, "lists 2 layers, the network has 3"),
                                ([0, 1, 5], 3, MetisError, r"names layer\(s\) \[5\]"),
                                ([0, "x"], 2, ConfigError, "list of layer indices")):
        bad = dict(init, init_layers=layout, overrides=dict(SMALL, num_layers=n))
        with pytest.raises(err, match=msg):
            Trainer(load_train_config(small_config("stage1_base", tmp_path / "bad", 1, model=bad)))
    with pytest.raises(ConfigError, match="init_layers needs model.init_from"):
        load_train_config(small_config("stage1_base", tmp_path / "bad", 1, model={"init_layers": [0, 1]}))


def test_frame_phones_stage1_fits_its_aligner_trains_durations_and_loads(pretrained, tmp_path):
    """A stage 1 with ``frame_phones`` started from a network without them: its frame-phone
    projection starts at zero (the old function), the trainer fits the alignment table from the
    training pairs (word boundaries skippable, from ``model.phone_vocab``) and warms up the
    duration predictor, training logs the duration loss beside the cross-entropy, and the saved
    network loads with its table. Without a vocabulary the run is refused by name."""
    import pytest

    from metis_speech.errors import MetisError
    from metis_speech.training.trainer import read_log

    from conftest import SMALL

    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"vocab": {"_": 10, ",": 11, **{f"p{i}": i for i in range(12, 1000)}}}))
    model = {"component": "stage1_tts", "init_from": str(pretrained[0] / "final"),
             "overrides": dict(SMALL, frame_phones=True), "phone_vocab": str(vocab), "align_iterations": 2,
             "duration_warmup_steps": 5}
    data = {"synthetic": {"n": 48, "min_frames": 16, "max_frames": 32, "seed": 0, "phones": True}}
    tr = Trainer(load_train_config(small_config("stage1_tts", tmp_path / "fp", 6, model=model, data=data)))
    net = tr._unwrapped()
    assert net.aligner_fitted and net.align_skip[10] == 1 and net.align_skip[11] == 1 and net.align_skip[12] == 0
    assert net.frame_phone_proj.weight.abs().max() == 0
    obj = build_objective(net)
    batch = collate(synthetic_utterances(4, min_frames=16, max_frames=32, seed=9, phones=True))
    plan = obj.sample(batch, torch.Generator().manual_seed(0))
    assert plan["frame_phones"].shape == batch["semantic"].shape
    on_frames = plan["frame_phones"] != net.cfg.phone_pad_id
    assert on_frames.any() and bool(plan["dur_valid"].any())
    for b in range(4):  # aligned durations cover each utterance's frames, edges excepted
        assert plan["durations"][b].sum() <= batch["lengths"][b]
    tr.train()
    rows = [r for r in read_log(tmp_path / "fp") if "loss" in r and "step" in r]
    assert rows and all(r["duration_loss"] >= 0 for r in rows if "accuracy" in r and "lr" in r)
    loaded = load_checkpoint(tmp_path / "fp" / "final")
    assert loaded.cfg.frame_phones and loaded.aligner_fitted
    assert torch.equal(loaded.align_table, tr._unwrapped().align_table)

    no_vocab = {k: v for k, v in model.items() if k != "phone_vocab"}
    with pytest.raises(MetisError, match="model.phone_vocab"):
        Trainer(load_train_config(small_config("stage1_tts", tmp_path / "bad", 1, model=no_vocab, data=data)))


def test_frame_phones_s2a_fits_its_aligner_drops_phones_for_some_samples_and_loads(tmp_path):
    """An S2A with ``frame_phones`` started from one without: its projection starts at zero (the
    old function), the trainer fits its alignment table (no duration predictor to warm), the
    objective gives aligned phones to the frames of most samples and none to a ``phone_drop``
    share (which learn the tasks without a transcript), training runs, and the saved network
    loads with its table."""
    from metis_speech.config import load_preset

    from conftest import SMALL

    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"vocab": {"_": 10, ",": 11, **{f"p{i}": i for i in range(12, 1000)}}}))
    base_run = Trainer(load_train_config(small_config("s2a_full", tmp_path / "base", 3)))
    base_run.train()
    base = load_checkpoint(tmp_path / "base" / "final").eval()
    model = {"component": "s2a_full", "init_from": str(tmp_path / "base" / "final"),
             "overrides": dict(SMALL, frame_phones=True, phone_drop=0.5), "phone_vocab": str(vocab), "align_iterations": 2}
    data = {"synthetic": {"n": 48, "min_frames": 16, "max_frames": 32, "seed": 0, "phones": True}}
    tr = Trainer(load_train_config(small_config("s2a_full", tmp_path / "fp", 6, model=model, data=data)))
    net = tr._unwrapped()
    assert net.aligner_fitted and net.align_skip[10] == 1 and net.align_skip[12] == 0
    assert net.align_table.shape == (net.cfg.phone_vocab_size, net.cfg.cond_codebook_size)
    assert net.frame_phone_proj.weight.abs().max() == 0 and not hasattr(net, "duration")

    pc = load_preset("tiny", "s2a_full")
    items = synthetic_utterances(16, vocab=pc.cond_codebook_size, min_frames=16, max_frames=32, seed=9, phones=True,
                                 num_quantizers=pc.num_quantizers, acoustic_vocab=pc.codebook_size)
    batch = collate(items)
    obj = build_objective(net)
    plan = obj.sample(batch, torch.Generator().manual_seed(0))
    fp = plan["frame_phones"]
    assert fp.shape == batch["semantic"].shape
    with_phones = (fp != net.cfg.phone_pad_id).any(dim=1)
    assert 0 < int(with_phones.sum()) < 16  # phone_drop 0.5: some samples keep them, some not
    # a zero projection: the frame phones change nothing yet
    same = dict(plan, frame_phones=torch.full_like(fp, net.cfg.phone_pad_id))
    assert torch.allclose(obj(batch, plan).logits, obj(batch, same).logits)
    without = {k: v for k, v in plan.items() if k != "frame_phones"}
    assert torch.allclose(obj(batch, plan).logits, build_objective(base)(batch, without).logits, atol=1e-5)
    tr.train()
    assert tr._unwrapped().frame_phone_proj.weight.abs().max() > 0  # trained
    loaded = load_checkpoint(tmp_path / "fp" / "final")
    assert loaded.cfg.frame_phones and loaded.aligner_fitted
    assert torch.equal(loaded.align_table, tr._unwrapped().align_table)
