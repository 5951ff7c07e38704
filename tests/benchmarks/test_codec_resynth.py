"""benchmarks/codec_resynth.py: encode -> decode scoring of an acoustic codec, driven through
its command line on a tiny random codec."""

import json

import numpy as np
import pytest
import soundfile as sf

from .util import load_script


@pytest.mark.parametrize("frontend", ["conv", "mel"])
def test_scores_a_codec_run_on_a_manifest(tmp_path, frontend):
    from metis_speech.config import load_preset
    from metis_speech.loading import build_model, save_checkpoint

    import dataclasses

    enc_cfg = dataclasses.replace(load_preset("tiny", "acoustic_encoder"), frontend=frontend)
    save_checkpoint(build_model(enc_cfg), tmp_path / "final" / "encoder")
    save_checkpoint(build_model(load_preset("tiny", "acoustic_decoder")), tmp_path / "final" / "decoder")
    t = np.arange(24000) / 24000
    for i, f in enumerate((150.0, 220.0)):
        sf.write(tmp_path / f"a{i}.wav", (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), 24000)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"id": f"a{i}", "audio": f"a{i}.wav", "text": "hello there"}) + "\n"
                                              for i in range(2)))
    mod = load_script("codec_resynth")
    assert mod.main(["--model", str(tmp_path / "final"), "--manifest", str(tmp_path / "m.jsonl"),
                     "--quantizers", "1", "0", "--out", str(tmp_path / "out")]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["id"] for r in res["items"]] == ["a0", "a1"]
    assert set(res["means"]) == {"wer_original", "wer_q1", "pesq_q1", "stoi_q1", "wer_all", "pesq_all", "stoi_all"}
    assert all(np.isfinite(v) for v in res["means"].values())
    assert all(r[k] >= 0.0 for r in res["items"] for k in r if k.startswith(("wer", "pesq")))
    assert sf.info(tmp_path / "out" / "all" / "a0.wav").samplerate == 24000
    with pytest.raises(SystemExit, match="neither a bundle"):
        mod.main(["--model", str(tmp_path), "--manifest", str(tmp_path / "m.jsonl")])
