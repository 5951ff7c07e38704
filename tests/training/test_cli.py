"""The train sub-command: parser wiring, recipes, and one-line errors."""

import argparse
import subprocess
import sys

from metis_speech.recipes import list_recipes, recipe_path
from metis_speech.training import cli
from metis_speech.training.trainer import load_train_config

RECIPES = {
    "stage1_pretrain_tiny", "stage1_tts_tiny", "stage1_se_lora_tiny", "s2a_tiny",
    "stage1_pretrain", "stage1_tts", "stage1_se_lora", "s2a",
    "stage1_omni_tiny", "stage1_omni", "stage1_l2s_tiny", "stage1_l2s", "visual_encoder_corpus_tiny",
    "semantic_codec_tiny", "semantic_codec", "acoustic_codec_tiny", "acoustic_codec", "visual_encoder_tiny", "visual_encoder",
}


def test_every_recipe_parses():
    assert RECIPES <= set(list_recipes())
    for name in list_recipes():
        cfg = load_train_config(recipe_path(name))
        assert cfg.train.max_steps > 0
    assert load_train_config("stage1_se_lora").finetune.lora_r == 32


def test_add_parser_builds_the_train_command():
    parser = argparse.ArgumentParser(prog="metis")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "s2a_tiny", "--resume", "--max-steps", "5", "--out", "x"])
    assert args.func is cli.run and args.resume and args.max_steps == 5 and args.out == "x"


def test_bad_config_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {preset: tiny}\noptimiser: {lr: 1}\n")
    r = subprocess.run([sys.executable, "-m", "metis_speech.training.cli", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error:") and "optimiser" in r.stderr and "Traceback" not in r.stderr


def test_val_data_runs_a_held_out_evaluation(tmp_path):
    """``metis train ... --val-data SHARDS``: the run logs val_loss on them and prints the last
    one; a folder that does not exist is a one-line error before any training."""
    import json

    from metis_speech.config import load_preset
    from metis_speech.training.data import synthetic_utterances, write_shard

    pc = load_preset("tiny", "s2a_full")
    (tmp_path / "val").mkdir()
    write_shard(tmp_path / "val" / "shard-00000.safetensors",
                synthetic_utterances(8, vocab=pc.cond_codebook_size, min_frames=16, max_frames=32, seed=1, symbol_seed=0,
                                     num_quantizers=pc.num_quantizers, acoustic_vocab=pc.codebook_size))
    recipe = tmp_path / "s2a.yaml"
    recipe.write_text(
        "model: {preset: tiny, component: s2a_full, overrides: {hidden_size: 64, num_layers: 2, num_heads: 4}}\n"
        "data: {synthetic: {n: 16, min_frames: 16, max_frames: 32, seed: 0}, max_frames: 256}\n"
        "optim: {lr: 3.0e-3, warmup_steps: 1}\n"
        "train: {max_steps: 4, checkpoint_every: 2, log_every: 1}\n")
    cmd = [sys.executable, "-m", "metis_speech.training.cli", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]
    r = subprocess.run(cmd + ["--val-data", str(tmp_path / "val")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    logged = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged if "val_loss" in x] == [2, 4]
    assert printed["val_loss"] == logged[-1]["val_loss"] > 0
    r = subprocess.run(cmd[:-3] + ["--out", str(tmp_path / "run2"), "--val-data", str(tmp_path / "absent")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: --val-data") and "Traceback" not in r.stderr
    assert not (tmp_path / "run2").exists()
