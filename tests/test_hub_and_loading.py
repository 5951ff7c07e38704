"""Official-file registry, local/Hub resolution, task assembly, own checkpoints."""

import shutil

import pytest
import torch

from metis_speech import hub
from metis_speech.checkpoint import read_weights
from metis_speech.cli import main
from metis_speech.config import Stage1Config, load_preset
from metis_speech.errors import HubError, MetisError
from metis_speech.loading import build_model, load_checkpoint, load_stage1, save_checkpoint


def test_registry_is_complete():
    for task in ("tts", "vc", "tse", "se", "omni", "l2s"):
        keys = hub.files_for_task(task)
        assert {"s2a_1layer", "s2a_full", "acoustic_decoder", "semantic_codec"} <= set(keys)
        for k in keys:
            load_preset("official", hub.FILES[k].component)
    assert hub.TASKS["vc"].lora_rank == 16 and hub.TASKS["tse"].lora_alpha == 64


def test_hub_unreachable_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError) as e:
        hub.resolve("s2a_full", "hub")
    msg = str(e.value)
    assert "amphion/MaskGCT:s2a_model/s2a_model_full/model.safetensors" in msg and "--model DIR" in msg
    assert "\n" not in msg


def test_local_directory_missing_file(tmp_path):
    with pytest.raises(MetisError, match="missing metis_base/model.safetensors"):
        hub.resolve("metis_base", tmp_path)
    with pytest.raises(MetisError, match="does not exist"):
        hub.resolve("metis_base", tmp_path / "nope")


def _fake_release(parity_dir, root):
    """A local directory laid out like the Hub repos, holding the small reference files."""
    w = parity_dir / "weights"
    (root / "metis" / "metis_base").mkdir(parents=True)
    (root / "metis" / "metis_tse").mkdir(parents=True)
    shutil.copy(w / "t2s_base.safetensors", root / "metis" / "metis_base" / "model.safetensors")
    shutil.copy(w / "t2s_lora_r4.safetensors", root / "metis" / "metis_tse" / "metis_tse_lora_32.safetensors")
    shutil.copy(w / "t2s_lora_r4_adapter.safetensors", root / "metis" / "metis_tse" / "metis_tse_lora_32_adapter.safetensors")


def test_load_stage1_lora_task_from_local_dir(parity_dir, tmp_path, monkeypatch):
    _fake_release(parity_dir, tmp_path)
    tiny = Stage1Config(hidden_size=64, num_layers=2, num_heads=4, codebook_size=128, adapter="gated", cond_dim=32)
    monkeypatch.setattr("metis_speech.loading.load_preset", lambda preset, comp: tiny)
    # the official TSE LoRA is rank 32: a rank-4 file is refused with the rank named
    with pytest.raises(MetisError, match="rank 4, expected rank 32"):
        load_stage1("tse", tmp_path)
    monkeypatch.setitem(hub.TASKS, "tse", hub.TaskSpec("stage1_adapter", "metis_base", "tse_lora", "tse_adapter", 4, 8.0))
    model = load_stage1("tse", tmp_path)
    want = read_weights(parity_dir / "weights" / "t2s_lora_r4_merged_expected.safetensors")
    for k, v in model.state_dict().items():
        assert torch.allclose(v, want[k], atol=1e-6), k


def test_save_and_load_checkpoint_dir(tmp_path):
    torch.manual_seed(0)
    model = build_model(load_preset("tiny", "s2a_full")).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "config.json").is_file()
    again = load_checkpoint(tmp_path / "ckpt")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    again_bf16 = load_checkpoint(tmp_path / "ckpt", dtype=torch.bfloat16)
    assert again_bf16.mask_emb.weight.dtype == torch.bfloat16


def test_download_cli_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["download", "tts"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "t2s_model/model.safetensors" in captured.out
    assert captured.err.startswith("error: cannot fetch")
