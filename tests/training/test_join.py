"""metis join-utterances: a speaker's short utterances joined into longer ones for training."""

import json

import numpy as np
import pytest
import soundfile as sf

from metis_speech.cli import main
from metis_speech.errors import MetisError
from metis_speech.training.join import join_utterances
from metis_speech.training.prepare_io import list_items
from tests.pipeline.conftest import speechlike


@pytest.fixture
def manifest(tmp_path):
    rows = []
    spec = [("a1", "A", "First one", 1.0, 16000), ("a2", "A", "Second one!", 1.5, 16000), ("a3", "A", "Third", 0.8, 22050),
            ("b1", "B", "Only one of B.", 1.2, 16000), ("n1", "A", None, 1.0, 16000),
            ("n2", "A", None, 0.8, 16000)]
    for uid, spk, text, secs, sr in spec:
        f = tmp_path / "audio" / f"{uid}.wav"
        f.parent.mkdir(exist_ok=True)
        sf.write(f, speechlike(secs, sr, seed=len(rows)), sr)
        row = {"id": uid, "audio": f"audio/{uid}.wav", "speaker": spk, "language": "en"}
        if text:
            row["text"] = text
        rows.append(row)
    m = tmp_path / "train.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_pairs_of_a_speaker_are_joined_with_a_pause_and_nothing_is_lost(manifest, tmp_path):
    s = join_utterances(manifest, tmp_path / "out", per=2, gap_s=(0.2, 0.2), seed=0, progress=False)
    # A's transcribed three: one pair + one left over; A's untranscribed two: a pair of their own; B alone
    assert (s["read"], s["joined"], s["single"]) == (6, 2, 2)
    rows = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    untranscribed = [r for r in rows if "text" not in r]
    assert len(untranscribed) == 1 and sorted(untranscribed[0]["id"].split("+")) == ["n1", "n2"]
    assert untranscribed[0]["joined"] == 2 and abs(untranscribed[0]["duration"] - 2.0) < 0.01
    joined = [r for r in rows if r["joined"] == 2 and "text" in r]
    assert len(joined) == 1 and joined[0]["speaker"] == "A" and joined[0]["language"] == "en"
    j = joined[0]
    ids = j["id"].split("+")
    durs = {"a1": 1.0, "a2": 1.5, "a3": 0.8}
    texts = {"a1": "First one.", "a2": "Second one!", "a3": "Third."}
    assert set(ids) <= set(durs) and j["text"] == " ".join(texts[i] for i in ids)  # each part ends as a sentence
    wav, sr = sf.read(tmp_path / "out" / j["audio"])
    assert sr == (22050 if ids[0] == "a3" else 16000)  # the first member's rate
    assert abs(len(wav) / sr - (sum(durs[i] for i in ids) + 0.2)) < 0.01 and abs(j["duration"] - len(wav) / sr) < 1e-3
    single_ids = sorted(r["id"] for r in rows if r["joined"] == 1)
    assert single_ids == sorted((set(durs) - set(ids)) | {"b1"})
    items, skips = list_items(tmp_path / "out" / "train.jsonl")  # what metis prepare reads
    assert len(items) == s["written"] == 4 and not skips and all(sf.info(it.audio).frames > 0 for it in items)
    again = join_utterances(manifest, tmp_path / "again", per=2, gap_s=(0.2, 0.2), seed=0, progress=False)
    assert (tmp_path / "again" / "train.jsonl").read_text() == (tmp_path / "out" / "train.jsonl").read_text()
    assert again["seconds"] == s["seconds"]


def test_too_long_groups_stay_single_and_bad_arguments_are_refused(manifest, tmp_path):
    s = join_utterances(manifest, tmp_path / "o", per=3, gap_s=(0.1, 0.1), max_duration=2.0, progress=False)
    assert s["too_long"] == 1 and s["joined"] == 1 and s["written"] == 5  # A's three (3.3 s) each alone; n1+n2 1.9 s
    with pytest.raises(MetisError, match="exists already"):
        join_utterances(manifest, tmp_path / "o", progress=False)
    with pytest.raises(MetisError, match="--per"):
        join_utterances(manifest, tmp_path / "p", per=1)
    with pytest.raises(MetisError, match="--gap"):
        join_utterances(manifest, tmp_path / "p", gap_s=(0.5, 0.1))
    with pytest.raises(MetisError, match="no utterances"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text("")
        join_utterances(empty, tmp_path / "p")


def test_command(manifest, tmp_path, capsys):
    assert main(["join-utterances", str(manifest), "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert "4 utterances (2 joined, 2 single) from 6" in capsys.readouterr().out
    assert main(["join-utterances", str(manifest), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "exists already" in capsys.readouterr().err
