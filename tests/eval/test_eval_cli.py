"""`metis eval` end to end on a 4-item folder (tts, vc, se, tse), and its one-line errors."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metis_speech.cli import main

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    with open(path, newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_eval_folder_end_to_end(mini_set, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["eval", str(mini_set["generated"]), "--testset", str(mini_set["testset"]), "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "metis eval: 4 items (tts 1, vc 1, tse 1, se 1)" in printed
    for name in ("[tts]", "[se]", "[all]", "wer", "sim", "dnsmos_ovrl", "pesq", "si_sdri", "95% CI"):
        assert name in printed, name
    rows = _rows(out / "scores.csv")
    assert set(rows) == {"tts1", "vc1", "se1", "tse1"}
    # perfect TTS / VC systems: exact transcripts of the flite voices, same-voice similarity
    assert float(rows["tts1"]["wer"]) <= 0.15 and float(rows["vc1"]["wer"]) <= 0.15
    assert float(rows["tts1"]["sim"]) > 0.75 and float(rows["vc1"]["sim"]) > 0.75
    assert rows["tts1"]["pesq"] == "" and rows["tts1"]["si_sdr"] == ""  # no intrusive metrics for TTS
    # SE: 5 dB noisy input, 20 dB "enhanced" output; TSE: 0 dB mixture, 15 dB output
    assert float(rows["se1"]["si_sdr"]) == pytest.approx(20.0, abs=0.5)
    assert float(rows["se1"]["si_sdri"]) == pytest.approx(15.0, abs=0.7)
    assert float(rows["tse1"]["si_sdri"]) > 10
    assert 1.0 < float(rows["se1"]["pesq"]) < 4.64 and 0.8 < float(rows["se1"]["stoi"]) <= 1.0
    assert all(1 <= float(r["dnsmos_ovrl"]) <= 5 for r in rows.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_items"] == 4 and summary["backends"]["asr"] == "pocketsphinx"
    assert summary["metrics"]["pesq"]["n"] == 2 and summary["metrics"]["wer"]["n"] == 4
    assert set(summary["by_task"]) == {"tts", "vc", "tse", "se"}
    assert summary["metrics"]["sim"]["ci95"] > 0
    for png in ("metrics.png", "spectrograms.png"):
        assert (out / png).read_bytes()[:8] == PNG


def test_score_references_gives_ground_truth_and_input_scores(mini_set, tmp_path, capsys):
    out = tmp_path / "gt"
    rc = main(["eval", "--testset", str(mini_set["testset"]), "--score-references", "--tasks", "se,tse",
               "--metrics", "pesq,stoi,si_sdr,dnsmos", "--out", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    assert "scoring the references" in capsys.readouterr().out
    rows = _rows(out / "scores.csv")
    assert set(rows) == {"se1", "tse1"}
    se = rows["se1"]
    assert float(se["input_si_sdr"]) == pytest.approx(5.0, abs=0.5)  # the 5 dB noisy input
    assert float(se["input_pesq"]) < 2.0 and float(se["input_stoi"]) < 0.95
    assert float(se["dnsmos_ovrl"]) > float(se["input_dnsmos_ovrl"])  # clean reference beats noisy input
    assert float(rows["tse1"]["input_si_sdr"]) == pytest.approx(0.0, abs=1.0)  # the 0 dB mixture
    assert "pesq" not in rows["se1"] or rows["se1"].get("pesq", "") == ""  # the reference is not compared with itself


def test_generated_manifest_in_a_subprocess(mini_set, tmp_path):
    root = mini_set["root"]
    manifest = root / "generated.jsonl"
    rows = [dict(it, generated=f"gen/{it['id']}.wav", wall_s=0.5, peak_rss_mb=900.0) for it in mini_set["items"]]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sub"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "metis_speech", "eval", str(manifest), "--metrics", "si_sdr,speed", "--out", str(out), "--examples", "2"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "si_sdri" in proc.stdout and "rtf" in proc.stdout and "peak_rss_mb" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["peak_rss_mb"]["mean"] == pytest.approx(900.0)
    assert 0.1 < summary["metrics"]["rtf"]["mean"] < 0.3  # 0.5 s for 2.3-3 s clips
    assert (out / "scores.csv").exists() and (out / "metrics.png").read_bytes()[:8] == PNG


def _one_line_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_bad_input_gives_one_line_errors(mini_set, tmp_path, capsys):
    gen, testset = str(mini_set["generated"]), str(mini_set["testset"])
    assert "no such manifest" in _one_line_error(capsys, ["eval", gen, "--testset", str(tmp_path / "missing.jsonl")])
    partial = tmp_path / "partial"
    shutil.copytree(mini_set["generated"], partial, ignore=shutil.ignore_patterns("eval"))
    (partial / "se1.wav").unlink()
    assert "1 of 4 items have no generated file" in _one_line_error(capsys, ["eval", str(partial), "--testset", testset])
    assert "unknown metric 'mosnet'" in _one_line_error(capsys, ["eval", gen, "--testset", testset, "--metrics", "wer,mosnet"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no audio files" in _one_line_error(capsys, ["eval", str(empty), "--testset", testset])
    assert "no such folder or manifest" in _one_line_error(capsys, ["eval", str(tmp_path / "nowhere")])
    assert "unknown ASR backend" in _one_line_error(capsys, ["eval", gen, "--testset", testset, "--asr", "kaldi"])
    assert "unknown task" in _one_line_error(capsys, ["eval", gen, "--testset", testset, "--tasks", "tts,singing"])
    bad_audio = tmp_path / "bad"
    shutil.copytree(mini_set["generated"], bad_audio, ignore=shutil.ignore_patterns("eval"))
    (bad_audio / "tts1.wav").write_bytes(b"not audio at all")
    assert "tts1.wav" in _one_line_error(capsys, ["eval", str(bad_audio), "--testset", testset, "--metrics", "wer", "-q"])


def test_bad_input_in_a_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "metis_speech", "eval", str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_python_api_scores_a_silent_output_without_crashing(mini_set, tmp_path):
    import numpy as np

    from metis_speech.audio import save_audio
    from metis_speech.eval import evaluate, format_table, load_items

    gen = tmp_path / "gen"
    shutil.copytree(mini_set["generated"], gen, ignore=shutil.ignore_patterns("eval", "se1.wav", "tse1.wav"))
    save_audio(gen / "vc1.wav", np.zeros(16000, np.float32), 16000)  # a broken system's output
    items = load_items(gen, mini_set["testset"], allow_missing=True)
    assert [it.id for it in items] == ["tts1", "vc1"]
    report = evaluate(items, metrics="wer,sim", progress=False)
    rows = {r["id"]: r for r in report.rows}
    assert rows["vc1"]["wer"] == 1.0 and rows["vc1"]["hypothesis"] == ""
    assert np.isnan(rows["vc1"]["sim"]) and rows["tts1"]["sim"] > 0.75
    table = format_table(report)
    assert "(1 NaN)" in table and "vc1: generated audio is silent" in table
