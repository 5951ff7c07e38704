"""`metis compare`: rows paired by item id, the paired mean difference and its Student-t 95 %
interval, verdicts in each metric's own direction, pooling over pairs, and one-line refusals."""

import csv
import json
import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from metis_speech.cli import main
from metis_speech.eval.compare import compare


def _scores(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "task", "wer", "sim", "text"])
        w.writeheader()
        for i, (wer, sim) in rows.items():
            w.writerow({"id": i, "task": "tts", "wer": wer, "sim": sim, "text": "a b c"})
    return path


def _ci(d):
    d = np.asarray(d, float)
    return float(student_t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))


def test_pairs_by_id_and_gives_the_paired_interval(tmp_path):
    before = _scores(tmp_path / "a", {"x1": (0.8, 0.70), "x2": (0.6, 0.72), "x3": (1.0, 0.69), "x4": (0.9, 0.71), "old": (0.1, 0.9)})
    # other order, one item only here: pairing is by id, not by row
    after = _scores(tmp_path / "b" / "eval", {"x4": (0.5, 0.70), "x3": (0.7, 0.70), "new": (0.0, 0.0), "x2": (0.4, 0.70),
                                            "x1": (0.6, 0.69)})
    r = compare([(before, tmp_path / "b")])
    p = r["pairs"][0]
    assert (p["n_common"], p["only_before"], p["only_after"]) == (4, 1, 1)
    d_wer = [0.6 - 0.8, 0.4 - 0.6, 0.7 - 1.0, 0.5 - 0.9]
    row = p["metrics"]["wer"]
    assert row["n"] == 4 and row["before"] == pytest.approx(0.825) and row["after"] == pytest.approx(0.55)
    assert row["diff"] == pytest.approx(np.mean(d_wer)) and row["ci95"] == pytest.approx(_ci(d_wer))
    assert row["verdict"] == "better"  # WER fell by more than the interval
    d_sim = [-0.01, -0.02, 0.01, -0.01]
    assert p["metrics"]["sim"]["diff"] == pytest.approx(np.mean(d_sim))
    assert p["metrics"]["sim"]["verdict"] == "within"
    assert r["pooled"] == {}  # one pair: nothing to pool


def test_pooled_over_pairs_and_worse_in_the_metrics_direction(tmp_path):
    a0 = _scores(tmp_path / "a0", {f"i{k}": (0.5, 0.80 + 0.01 * k) for k in range(5)})
    b0 = _scores(tmp_path / "b0", {f"i{k}": (0.5, 0.70 + 0.01 * k + 0.002 * (k % 2)) for k in range(5)})
    a1 = _scores(tmp_path / "a1", {f"i{k}": (0.4, 0.81) for k in range(3)})
    b1 = _scores(tmp_path / "b1", {f"i{k}": (0.4, 0.70 + 0.01 * k) for k in range(3)})
    r = compare([(a0, b0), (a1, b1)], ["sim"])
    assert list(r["pairs"][0]["metrics"]) == ["sim"]
    pooled = r["pooled"]["sim"]
    d = [-0.10, -0.098, -0.10, -0.098, -0.10, -0.11, -0.10, -0.09]
    assert pooled["n"] == 8 and pooled["diff"] == pytest.approx(np.mean(d)) and pooled["ci95"] == pytest.approx(_ci(d))
    assert pooled["verdict"] == "worse"  # similarity fell


def test_cli_prints_writes_json_and_refuses_in_one_line(tmp_path, capsys):
    a = _scores(tmp_path / "a", {"x1": (0.8, 0.7), "x2": (0.6, 0.7), "x3": (0.9, 0.7)})
    b = _scores(tmp_path / "b", {"x1": (0.4, 0.7), "x2": (0.3, 0.7), "x3": (0.5, 0.7)})
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b), "-m", "wer", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wer" in text and "-0.367" in text and "better" in text
    assert json.loads(out.read_text())["pairs"][0]["metrics"]["wer"]["n"] == 3
    other = _scores(tmp_path / "c", {"y1": (0.1, 0.1)})
    for argv, says in [([str(a)], "pairs"), ([str(a), str(tmp_path / "none")], "no scores.csv"),
                       ([str(a), str(other)], "share no item ids"), ([str(a), str(b), "-m", "pesq"], "metric 'pesq'")]:
        assert main(["compare", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_help_prints(capsys):
    for argv in (["--help"], ["compare", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        assert "compare" in capsys.readouterr().out
