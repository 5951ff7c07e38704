"""benchmarks/generate_testset.py: a test set's outputs written by the real task API, with the
TTS-only options (--speed, --max-prompt-s) passed through and refused for other tasks."""

import json

import pytest
import soundfile as sf

from tests.pipeline.conftest import speechlike

from .util import load_script


@pytest.fixture
def testsets(tmp_path, shared_dir):
    from metis_speech.bundle import random_bundle

    bundle = random_bundle(tmp_path / "bundle", tasks=("tts", "se"), phone_vocab=shared_dir / "g2p" / "vocab.json")
    sf.write(tmp_path / "prompt.wav", speechlike(1.5, 16000, 130.0, seed=1), 16000)
    sf.write(tmp_path / "noisy.wav", speechlike(1.0, 16000, 180.0, seed=2), 16000)
    tts = {"id": "t0", "task": "tts", "text": "good morning to you", "prompt": "prompt.wav", "prompt_text": "hello there"}
    (tmp_path / "tts.jsonl").write_text(json.dumps(tts) + "\n")
    (tmp_path / "se.jsonl").write_text(json.dumps({"id": "s0", "task": "se", "input": "noisy.wav"}) + "\n")
    return bundle, tmp_path


def test_speed_reaches_the_tts_call_and_other_tasks_refuse_it(testsets, capsys):
    bundle, d = testsets
    mod = load_script("generate_testset")
    common = ["--model", str(bundle), "--steps", "2", "--s2a-steps", "1,1"]
    assert mod.main(["--testset", str(d / "tts.jsonl"), "--out", str(d / "a"), *common]) == 0
    assert mod.main(["--testset", str(d / "tts.jsonl"), "--out", str(d / "b"), "--speed", "0.5", *common]) == 0
    n1, n2 = (sf.info(d / x / "t0.wav").frames for x in ("a", "b"))
    assert n2 > 1.5 * n1  # half the speaking rate: about twice as long
    with pytest.raises(SystemExit, match="--speed is a TTS option"):
        mod.main(["--testset", str(d / "se.jsonl"), "--out", str(d / "c"), "--speed", "0.5", *common])
    with pytest.raises(SystemExit, match="--max-prompt-s is a TTS option"):
        mod.main(["--testset", str(d / "se.jsonl"), "--out", str(d / "c"), "--max-prompt-s", "2", *common])
