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
