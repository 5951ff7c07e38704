"""``metis make-corpus`` end to end: outputs, schemas, and one-line errors for bad input."""

import json
import math

import pytest
import soundfile as sf

from metis_speech.cli import main

from .util import read_jsonl

UTT_KEYS = {"id", "audio", "text", "speaker", "voice", "perturbation", "duration", "split", "sample_rate"}
TEST_KEYS = {"id", "task", "text", "reference", "speaker"}


def test_cli_prints_summary(corpus_run):
    out, proc = corpus_run
    assert "train" in proc.stdout and "test sets: tts 2" in proc.stdout
    assert (out / "summary.json").exists()


def test_manifests(corpus):
    for split in ("train", "dev", "test"):
        rows = read_jsonl(corpus / f"{split}.jsonl")
        assert rows
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            assert UTT_KEYS <= set(r) and r["split"] == split and r["sample_rate"] == 24000
            info = sf.info(str(corpus / r["audio"]))
            assert info.samplerate == 24000 and info.channels == 1
            assert abs(info.frames / 24000 - r["duration"]) < 1e-3
            assert set(r["perturbation"]) == {"name", "pitch_semitones", "vtl", "tempo"}
        align = read_jsonl(corpus / "alignments" / f"{split}.jsonl")
        assert [a["id"] for a in align] == [r["id"] for r in rows]
        assert all(a["phones"] and a["phones"][-1][2] <= r["duration"] + 1e-3 for a, r in zip(align, rows))
    for name in ("noise", "rirs"):
        for r in read_jsonl(corpus / name / "train.jsonl"):
            assert (corpus / name / r["audio"]).exists()


@pytest.mark.parametrize("task", ["tts", "vc", "tse", "se", "l2s"])
def test_test_set_schema(corpus, task):
    items = read_jsonl(corpus / "tests" / f"{task}.jsonl")
    assert len(items) == 2
    for it in items:
        assert TEST_KEYS <= set(it) and it["task"] == task
        assert ("input" in it) == (task != "tts")
        assert ("prompt" in it) == (task != "se") and ("prompt_text" in it) == (task != "se")
        for key in ("input", "prompt", "reference"):
            if key in it:
                assert (corpus / "tests" / it[key]).exists(), (task, key)
        if task in ("tse", "se"):
            assert isinstance(it["snr_db"], float)
        if task == "se":
            assert it["noise_type"] and "room" in it
        if task == "vc":
            assert it["source_speaker"] != it["speaker"]
        if task == "l2s":
            assert it["input"].endswith(".mp4") and it["fps"] == 25
            assert it["n_frames"] == math.ceil(it["duration"] * 25 - 1e-6)


def test_rerun_is_a_no_op(corpus_run):
    out, _ = corpus_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    from .util import TINY, run_cli

    proc = run_cli("make-corpus", out, *TINY, "--jobs", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == before


def _error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--minutes", "-1"], "--minutes must be a positive number"),
        (["--minutes", "0"], "--minutes must be a positive number"),
        (["--minutes", "1", "--tasks", "tts,singing"], "unknown task 'singing'"),
        (["--minutes", "1", "--test-items", "-3"], "--test-items must be 0 or more"),
        (["--minutes", "1", "--jobs", "0"], "--jobs must be at least 1"),
        (["--minutes", "1", "--text-sources", "poems"], "unknown text source"),
    ],
)
def test_bad_input_one_line_error(tmp_path, capsys, extra, message):
    rc, err = _error(capsys, ["make-corpus", str(tmp_path / "out"), *extra])
    assert rc == 2 and err.count("\n") == 0 and err.startswith("error: ") and message in err


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub"):
        rc, err = _error(capsys, ["make-corpus", str(target), "--minutes", "1"])
        assert rc == 2 and err.count("\n") == 0 and err.startswith(f"error: {target}")


def test_missing_synthesiser_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no flite, festival or ffmpeg on it
    rc, err = _error(capsys, ["make-corpus", str(tmp_path / "out"), "--minutes", "1"])
    assert rc == 2 and err.count("\n") == 0 and "flite is not installed" in err and "apt-get install" in err
