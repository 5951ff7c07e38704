"""benchmarks/real_testset.py: TTS / SE test sets from the offline real recordings, in the
format generate_testset.py and `metis eval` read."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .util import load_script


rt = load_script("real_testset")
need = pytest.mark.skipif(not (rt.ALSA_DIR / "Front_Left.wav").is_file() or not (rt.KTUBERLING_DIR / "en").is_dir(),
                          reason="needs the Debian packages alsa-utils and ktuberling-data (.ci/run installs them)")


@need
def test_builds_tts_and_se_sets_from_real_voices(tmp_path):
    assert rt.main(["--out", str(tmp_path), "--texts", "2", "--se-items", "5", "--snr", "5"]) == 0
    tts = [json.loads(x) for x in (tmp_path / "tts.jsonl").read_text().splitlines()]
    se = [json.loads(x) for x in (tmp_path / "se.jsonl").read_text().splitlines()]
    assert {t["speaker"] for t in tts} == {"alsa", "ktuberling-en"} and len(tts) == 4
    assert tts[0]["prompt_text"] == "Front left. Front right. Front center."
    assert len(se) == 5 and {s["noise_type"] for s in se} == {"white", "pink", "hum", "siren", "crackle"}
    for s in se:  # the mixture is the reference plus noise at the stated SNR
        noisy, sr = sf.read(tmp_path / s["input"])
        ref, _ = sf.read(tmp_path / s["reference"])
        assert sr == 24000 and len(noisy) == len(ref)
        snr = 10 * np.log10(np.sum(ref**2) / np.sum((noisy - ref) ** 2))
        assert abs(snr - 5.0) < 0.2, (s["noise_type"], snr)
    for t in tts:
        w, sr = sf.read(tmp_path / t["prompt"])
        assert sr == 24000 and 3.0 < len(w) / sr < 8.0  # a usable zero-shot prompt length


@need
def test_manifests_load_with_the_eval_reader(tmp_path):
    from metis_speech.eval.manifest import load_testset

    rt.main(["--out", str(tmp_path), "--texts", "1", "--se-items", "2"])
    for name in ("tts", "se"):
        items = load_testset(tmp_path / f"{name}.jsonl")
        assert items and all(Path(i.input or i.prompt).is_file() for i in items)
        assert all(i.reference is None or Path(i.reference).is_file() for i in items)


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit, match="--texts"):
        rt.main(["--out", str(tmp_path), "--texts", "0"])
