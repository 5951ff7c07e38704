"""Bad checkpoints get one-line errors naming the file and the key; LoRA/adapter merging."""

import shutil

import pytest
import torch

from metis_speech.checkpoint import (
    adapter_state_dict,
    load_weights,
    lora_state_dict,
    merge_adapter,
    merge_lora,
    read_weights,
    save_weights,
)
from metis_speech.config import Stage1Config
from metis_speech.errors import CheckpointError
from metis_speech.models.stage1 import Stage1Model
from metis_speech.training.lora import add_lora

TINY = dict(hidden_size=64, num_layers=2, num_heads=4, codebook_size=128)


def _one_line(e):
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_truncated_file(parity_dir, tmp_path):
    src = parity_dir / "weights" / "t2s_base.safetensors"
    bad = tmp_path / "t2s_base.safetensors"
    bad.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as e:
        load_weights(Stage1Model(Stage1Config(**TINY)), bad)
    assert str(bad) in _one_line(e)


def test_not_safetensors_and_pickle_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_text("hello")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        read_weights(junk)
    pt = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    with pytest.raises(CheckpointError, match="pickle"):
        read_weights(pt)
    with pytest.raises(CheckpointError, match="no such weight file"):
        read_weights(tmp_path / "absent.safetensors")


def test_wrong_kind_of_checkpoint_names_keys(parity_dir):
    # an S2A file into a stage-1 model
    with pytest.raises(CheckpointError) as e:
        load_weights(Stage1Model(Stage1Config(**TINY)), parity_dir / "weights" / "s2a_nq4.safetensors")
    msg = _one_line(e)
    assert "s2a_nq4.safetensors" in msg and "missing key" in msg and "unexpected key" in msg


def test_config_size_mismatch_names_key_and_shapes(parity_dir):
    model = Stage1Model(Stage1Config(**{**TINY, "codebook_size": 256}))
    with pytest.raises(CheckpointError) as e:
        load_weights(model, parity_dir / "weights" / "t2s_base.safetensors")
    msg = _one_line(e)
    assert "to_logit" in msg or "cond_emb" in msg
    assert "(128, 64)" in msg or "(128,)" in msg


def test_lora_rank_mismatch_and_unknown_key(parity_dir, tmp_path):
    model = Stage1Model(Stage1Config(**TINY, adapter="gated", cond_dim=32))
    lora = parity_dir / "weights" / "t2s_lora_r4.safetensors"
    with pytest.raises(CheckpointError, match="rank 4, expected rank 8"):
        merge_lora(model, lora, alpha=8, rank=8)
    state = read_weights(lora)
    state["model.diff_estimator.layers.7.self_attn.q_proj.lora_A.default.weight"] = torch.zeros(4, 64)
    bad = save_weights(state, tmp_path / "bad_lora.safetensors")
    with pytest.raises(CheckpointError, match="layers.7.self_attn.q_proj.lora_A.*matches no linear layer"):
        merge_lora(model, bad, alpha=8)
    only_a = {k: v for k, v in read_weights(lora).items() if "lora_A" in k}
    with pytest.raises(CheckpointError, match="lacks its lora_B"):
        merge_lora(model, only_a, alpha=8)


def test_adapter_file_errors(parity_dir):
    no_adapter = Stage1Model(Stage1Config(**TINY))
    with pytest.raises(CheckpointError, match="no frame-condition adapter"):
        merge_adapter(no_adapter, parity_dir / "weights" / "t2s_lora_r4_adapter.safetensors")
    model = Stage1Model(Stage1Config(**TINY, adapter="gated", cond_dim=32))
    with pytest.raises(CheckpointError, match="not an adapter parameter"):
        merge_adapter(model, parity_dir / "weights" / "t2s_lora_r4.safetensors")


def test_merged_lora_matches_reference_merge(parity_dir):
    model = Stage1Model(Stage1Config(**TINY, adapter="gated", cond_dim=32))
    load_weights(model, parity_dir / "weights" / "t2s_base.safetensors", allow_missing=[r"cond_adapter\."])
    merge_adapter(model, parity_dir / "weights" / "t2s_lora_r4_adapter.safetensors")
    n = merge_lora(model, parity_dir / "weights" / "t2s_lora_r4.safetensors", alpha=8, rank=4)
    assert n == 14
    want = read_weights(parity_dir / "weights" / "t2s_lora_r4_merged_expected.safetensors")
    got = model.state_dict()
    assert set(want) == set(got)
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-6), k


def test_peft_lora_round_trip_merged_equals_unmerged(tmp_path):
    torch.manual_seed(0)
    model = Stage1Model(Stage1Config(**TINY, adapter="gated", cond_dim=32)).eval()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = add_lora(model, r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    peft_model.eval()
    ids = torch.randint(0, 128, (2, 10))
    mask = torch.rand(2, 10) > 0.5
    args = (ids[:, :4], ids[:, 4:], mask[:, 4:], torch.tensor([0.3, 0.8]))
    with torch.no_grad():
        want = peft_model.model(*args).logits
    path = save_weights(lora_state_dict(peft_model), tmp_path / "lora.safetensors")
    fresh = Stage1Model(Stage1Config(**TINY, adapter="gated", cond_dim=32)).eval()
    fresh.load_state_dict(base_state)
    merge_lora(fresh, path, alpha=8, rank=4)
    with torch.no_grad():
        got = fresh(*args).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert set(adapter_state_dict(fresh)) == {
        "model.cond_adapter.gate_scale", "model.cond_adapter.in_linear.weight", "model.cond_adapter.in_linear.bias",
        "model.cond_adapter.out_linear.weight", "model.cond_adapter.out_linear.bias",
    }


def test_mapped_load_equals_copied_load_and_does_not_copy(tmp_path):
    import os

    from safetensors.torch import save_file

    from metis_speech.checkpoint import build_empty, load_weights, map_weights
    from metis_speech.config import Stage1Config
    from metis_speech.models.stage1 import Stage1Model

    cfg = Stage1Config(hidden_size=32, num_layers=1, num_heads=2, codebook_size=50, use_phone_cond=True)
    src = Stage1Model(cfg)
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    copied = load_weights(build_empty(lambda: Stage1Model(cfg)), path)
    mapped = load_weights(build_empty(lambda: Stage1Model(cfg)), path, mmap=True)
    for (k, a), b in zip(copied.state_dict().items(), mapped.state_dict().values()):
        assert torch.equal(a, b), k
    w = mapped.to_logit.weight
    assert w.untyped_storage().nbytes() == os.path.getsize(path)  # a view of the file's map
    assert set(map_weights(path)) == set(src.state_dict())
    # a dtype that differs from the file's falls back to a copying load
    half = load_weights(build_empty(lambda: Stage1Model(cfg), dtype=torch.float16), path, mmap=True)
    assert half.to_logit.weight.dtype == torch.float16
    assert half.to_logit.weight.untyped_storage().nbytes() < os.path.getsize(path)
