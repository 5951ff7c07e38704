"""Test-set manifests, matching generated files to items, and metric selection."""

import json

import pytest

from metis_speech.eval.backends import EvalError
from metis_speech.eval.manifest import load_items, load_testset, match_folder
from metis_speech.eval.runner import mean_ci, resolve_metrics


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_testset_paths_are_relative_to_the_manifest(tmp_path):
    (tmp_path / "sub").mkdir()
    m = _write(tmp_path / "sub" / "t.jsonl", [{"id": "x", "task": "SE", "input": "n/x.wav", "reference": "c/x.wav", "snr_db": 5}])
    (item,) = load_testset(m)
    assert item.task == "se" and item.input == (tmp_path / "sub" / "n" / "x.wav").resolve()
    assert item.prompt is None and item.extra == {"snr_db": 5} and item.input_is_audio


def test_l2s_input_is_a_video(tmp_path):
    m = _write(tmp_path / "t.jsonl", [{"id": "v", "task": "l2s", "input": "v.mp4", "text": "hi"}])
    assert not load_testset(m)[0].input_is_audio


@pytest.mark.parametrize(
    "rows, message",
    [
        (["{not json"], "not valid JSON"),
        (["[1, 2]"], "expected a JSON object"),
        ([{"task": "tts"}], "has no 'id'"),
        ([{"id": "a", "task": "singing"}], "expected one of tts, vc, tse, se, l2s"),
        ([{"id": "a", "task": "tts"}, {"id": "a", "task": "tts"}], "duplicate item id"),
        ([], "no items"),
    ],
)
def test_bad_manifests(tmp_path, rows, message):
    with pytest.raises(EvalError, match=message):
        load_testset(_write(tmp_path / "t.jsonl", rows))


def test_missing_manifest_and_folder(tmp_path):
    with pytest.raises(EvalError, match="no such manifest"):
        load_testset(tmp_path / "nope.jsonl")
    with pytest.raises(EvalError, match="no such folder or manifest"):
        load_items(tmp_path / "nope")


def test_folder_matching(tmp_path):
    m = _write(tmp_path / "t.jsonl", [{"id": "a", "task": "tts"}, {"id": "b", "task": "tts"}])
    gen = tmp_path / "gen"
    gen.mkdir()
    with pytest.raises(EvalError, match="no audio files"):
        match_folder(load_testset(m), gen)
    (gen / "zzz.wav").write_bytes(b"RIFF")
    with pytest.raises(EvalError, match="none of its 1 audio files"):
        match_folder(load_testset(m), gen)
    (gen / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(EvalError, match="1 of 2 items have no generated file"):
        load_items(gen, m)
    items = load_items(gen, m, allow_missing=True)
    assert [it.id for it in items] == ["a"] and items[0].generated == (gen / "a.wav").resolve()
    with pytest.raises(EvalError, match="--testset"):
        load_items(gen)


def test_generated_manifest_joined_to_testset(tmp_path):
    t = _write(tmp_path / "t.jsonl", [{"id": "a", "task": "tts", "text": "hi"}])
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    g = _write(tmp_path / "g.jsonl", [{"id": "a", "generated": "a.wav", "rtf": 0.2}])
    (item,) = load_items(g, t)
    assert item.text == "hi" and item.extra["rtf"] == 0.2 and item.generated.name == "a.wav"
    bad = _write(tmp_path / "bad.jsonl", [{"id": "zz", "generated": "a.wav"}])
    with pytest.raises(EvalError, match="not in the test set"):
        load_items(bad, t)
    gone = _write(tmp_path / "gone.jsonl", [{"id": "a", "task": "tts", "generated": "missing.wav"}])
    with pytest.raises(EvalError, match="does not exist"):
        load_items(gone)


def test_score_references_needs_references(tmp_path):
    t = _write(tmp_path / "t.jsonl", [{"id": "a", "task": "tts", "text": "hi"}])
    with pytest.raises(EvalError, match="no 'reference'"):
        load_items(testset=t, score_references=True)


def test_resolve_metrics():
    assert resolve_metrics(None) == ["wer", "sim", "dnsmos", "pesq", "stoi", "si_sdr", "speed"]
    assert resolve_metrics("sim, wer") == ["wer", "sim"]
    assert resolve_metrics("cer,estoi,si-sdr") == ["wer", "stoi", "si_sdr"]
    assert resolve_metrics("quality") == ["dnsmos", "pesq", "stoi", "si_sdr"]
    with pytest.raises(EvalError, match="unknown metric 'mos'"):
        resolve_metrics("wer,mos")
    with pytest.raises(EvalError, match="no metrics"):
        resolve_metrics(" , ")


def test_mean_ci():
    s = mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert s["n"] == 3 and s["n_nan"] == 1 and s["mean"] == pytest.approx(2.0)
    assert s["ci95"] == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-5)  # t(0.975, 2) * s / sqrt(n)
    assert mean_ci([5.0])["n"] == 1 and mean_ci([])["n"] == 0
