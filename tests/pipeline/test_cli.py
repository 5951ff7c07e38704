"""The task commands as a user runs them: files in, 24 kHz files out, one-line errors."""

import json
import subprocess
import sys

import pytest
import soundfile as sf

from metis_speech.cli import main

FAST = ["--steps", "2", "--s2a-steps", "2,1"]


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("task", ["tts", "vc", "tse", "se"])
def test_each_task_writes_24k_audio(tiny_bundle, audio_files, tmp_path, capsys, task):
    out = tmp_path / f"{task}.wav"
    inputs = {
        "tts": ["--text", "Hello there.", "--prompt", audio_files["prompt"], "--prompt-text", "A test.", "--language", "en",
                "--duration", "0.6"],
        "vc": ["--source", audio_files["source"], "--prompt", audio_files["prompt"]],
        "tse": ["--mixture", audio_files["source"], "--prompt", audio_files["prompt"]],
        "se": ["--input", audio_files["source"]],
    }[task]
    rc, stdout, err = _run(capsys, task, *inputs, "--model", tiny_bundle, "--device", "cpu", "--out", out, *FAST)
    assert rc == 0, err
    info = sf.info(str(out))
    assert info.samplerate == 24000
    expected = 0.6 if task == "tts" else 1.5
    assert abs(info.duration - expected) < 0.05


def test_l2s_command(tiny_bundle, audio_files, face_video, tmp_path, capsys):
    path, box = face_video
    out = tmp_path / "l2s.wav"
    rc, _, err = _run(capsys, "l2s", "--video", path, "--prompt", audio_files["prompt"], "--crop-box", ",".join(map(str, box)),
                      "--model", tiny_bundle, "--out", out, *FAST)
    assert rc == 0, err
    assert abs(sf.info(str(out)).duration - 1.2) < 0.01
    rc, _, err = _run(capsys, "l2s", "--video", path, "--prompt", audio_files["prompt"], "--crop-box", "1,2,3",
                      "--model", tiny_bundle, "--out", out, *FAST)
    assert rc == 2 and "X,Y,W,H" in err


def test_batch_manifest(tiny_bundle, audio_files, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(d) for d in [
        {"id": "a", "input": str(audio_files["source"])},
        {"id": "b", "input": str(audio_files["stereo"])},
    ]))
    rc, stdout, err = _run(capsys, "se", "--batch", items, "--out-dir", tmp_path / "out", "--model", tiny_bundle, *FAST)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.wav"]


def test_se_refine_option(tiny_bundle, audio_files, tmp_path, capsys):
    """--refine picks the SE output: the generated speech or the input filtered with it
    (the full input length here); an unknown mode is refused by the parser."""
    lengths = {}
    for mode in ("none", "wiener", "lsa"):
        out = tmp_path / f"{mode}.wav"
        rc, _, err = _run(capsys, "se", "--input", audio_files["source"], "--model", tiny_bundle, "--out", out,
                          "--refine", mode, *FAST)
        assert rc == 0, err
        lengths[mode] = sf.info(str(out)).frames
    assert lengths["wiener"] == lengths["lsa"] == 36000 and abs(lengths["none"] - 36000) <= 480  # 1.5 s at 24 kHz
    with pytest.raises(SystemExit) as e:
        main(["se", "--input", str(audio_files["source"]), "--out", str(tmp_path / "x.wav"), "--refine", "mask"])
    assert e.value.code == 2 and "invalid choice: 'mask'" in capsys.readouterr().err


def test_failure_writes_nothing_and_keeps_existing_output(tiny_bundle, audio_files, tmp_path, capsys):
    out = tmp_path / "keep.wav"
    out.write_bytes(b"previous result")
    rc, _, err = _run(capsys, "se", "--input", audio_files["silent"], "--model", tiny_bundle, "--out", out, *FAST)
    assert rc == 2
    assert err.startswith("error:") and "silent" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]  # no temp files left behind


@pytest.mark.parametrize(
    "argv,match",
    [(["tts", "--prompt", "P", "--prompt-text", "x", "--out", "o.wav"], "missing --text"),
     (["se", "--input", "nope.wav", "--out", "o.wav"], "no such file"),
     (["se", "--input", "IN", "--out", "o.mp3"], ".wav or .flac"),
     (["se", "--input", "IN", "--out", "o.wav", "--steps", "0"], "--steps"),
     (["se", "--input", "IN"], "--out is required"),
     (["tse", "--mixture", "IN", "--prompt", "P", "--text", "hi", "--out", "o.wav"], "--omni"),
     (["tts", "--text", "hi", "--prompt", "P", "--prompt-text", "x", "--duration", "0", "--out", "o.wav"], "duration")],
)
def test_bad_arguments(tiny_bundle, audio_files, tmp_path, capsys, argv, match):
    argv = [str(audio_files["prompt"]) if a == "P" else str(audio_files["source"]) if a == "IN" else a for a in argv]
    argv = [str(tmp_path / a) if a.startswith("o.") else a for a in argv]
    rc, _, err = _run(capsys, *argv, "--model", tiny_bundle)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_entry_point(tiny_bundle, audio_files, tmp_path):
    out = tmp_path / "m.wav"
    proc = subprocess.run([sys.executable, "-m", "metis_speech", "se", "--input", str(audio_files["source"]),
                           "--model", str(tiny_bundle), "--out", str(out), *FAST], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_fast_preset_int8_and_low_memory_reach_the_model(tiny_bundle, audio_files, tmp_path, capsys, monkeypatch):
    import metis_speech.pipeline as pl

    seen = {}
    orig = pl.Metis.from_pretrained.__func__

    def spy(cls, *a, **k):
        seen.update(k)
        return orig(cls, *a, **k)

    monkeypatch.setattr(pl.Metis, "from_pretrained", classmethod(spy))
    out = tmp_path / "se.wav"
    rc, _, err = _run(capsys, "se", "--input", audio_files["source"], "--model", tiny_bundle, "--device", "cpu",
                      "--out", out, "--preset", "fast", "--int8", "--low-memory", *FAST)
    assert rc == 0, err
    assert seen["preset"] == "fast" and seen["quantize"] == "int8" and seen["low_memory"] is True
    assert sf.info(str(out)).samplerate == 24000
