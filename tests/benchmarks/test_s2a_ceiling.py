"""benchmarks/s2a_ceiling.py: speech rebuilt from a reference's own semantic ids (with and
without a prompt) beside the codec's resynthesis, driven through its command line on a tiny
random bundle."""

import json

import numpy as np
import pytest
import soundfile as sf

from tests.pipeline.conftest import speechlike

from .util import load_script


def test_scores_codec_and_s2a_renderings(tmp_path, shared_dir):
    from metis_speech.bundle import random_bundle

    bundle = random_bundle(tmp_path / "bundle", tasks=("se",), phone_vocab=shared_dir / "g2p" / "vocab.json")
    for i, f0 in enumerate((120.0, 190.0)):
        sf.write(tmp_path / f"ref{i}.wav", speechlike(1.2, 24000, f0, seed=i), 24000)
    sf.write(tmp_path / "prompt.wav", speechlike(2.0, 16000, 130.0, seed=5), 16000)
    rows = [{"id": "a", "reference": "ref0.wav", "text": "hello there", "prompt": "prompt.wav"},
            {"id": "b", "reference": "ref1.wav", "text": "good morning"},
            {"id": "c", "input": "ref1.wav"}]  # no reference or text: not scored
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mod = load_script("s2a_ceiling")
    assert mod.main(["--testset", str(tmp_path / "t.jsonl"), "--model", str(bundle), "--s2a-steps", "2,1",
                     "--known-layers", "1,4", "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["id"] for r in res["items"]] == ["a", "b"]
    a, b = res["items"]
    assert "wer_s2a_prompt" in a and "wer_s2a_prompt" not in b  # only an item with a prompt gets that rendering
    for kind in ("codec", "s2a_prompt", "s2a_none", "known1", "known4"):
        assert {f"{m}_{kind}" for m in ("wer", "sim", "pesq", "stoi")} <= set(res["means"])
    assert all(np.isfinite(v) for v in res["means"].values())
    # every rendering keeps the reference's length (frame for frame)
    n = sf.info(tmp_path / "ref0.wav").frames
    # with all of the tiny codec's 4 layers given, the S2A adds nothing: the codec's resynthesis
    assert np.array_equal(sf.read(tmp_path / "out" / "known4" / "a.wav")[0], sf.read(tmp_path / "out" / "codec" / "a.wav")[0])
    for kind in ("codec", "s2a_prompt", "s2a_none", "known1"):
        assert abs(sf.info(tmp_path / "out" / kind / "a.wav").frames - n) <= 480


def test_refuses_bad_input(tmp_path):
    mod = load_script("s2a_ceiling")
    with pytest.raises(SystemExit, match="no such test set"):
        mod.main(["--testset", str(tmp_path / "missing.jsonl")])
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "x", "input": "a.wav"}) + "\n")
    with pytest.raises(SystemExit, match="no item has both"):
        mod.main(["--testset", str(tmp_path / "t.jsonl")])
    with pytest.raises(SystemExit, match="--s2a-steps"):
        mod.main(["--testset", str(tmp_path / "t.jsonl"), "--s2a-steps", "4,x"])
    for bad in ("0", "1,x"):
        with pytest.raises(SystemExit, match="--known-layers"):
            mod.main(["--testset", str(tmp_path / "t.jsonl"), "--known-layers", bad])
