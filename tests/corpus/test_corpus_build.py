"""Determinism for a seed, resuming, and never trusting a half-written file."""

import hashlib
import json
from pathlib import Path

import pytest

from metis_speech.corpus.build import build_corpus
from metis_speech.corpus.config import CorpusConfig
from metis_speech.corpus.plan import make_plan

from .util import read_jsonl


def _hashes(root: Path):
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".build" not in p.parts and p.name != "summary.json"
    }


def _cfg(out, **kw):
    return CorpusConfig(out_dir=out, minutes=0.3, seed=7, test_items=2, jobs=kw.pop("jobs", 1), **kw)


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    """The conftest corpus again, through the Python API, with 1 job instead of 2."""
    out = tmp_path_factory.mktemp("again") / "c"
    build_corpus(_cfg(out), log=lambda *a: None)
    return out


def test_same_seed_same_bytes(corpus, second):
    a, b = _hashes(corpus), _hashes(second)
    assert any(k.endswith(".wav") for k in a) and any(k.endswith(".mp4") for k in a)
    assert a == b


def test_other_seed_other_plan():
    p7, p8 = make_plan(_cfg("/tmp/unused-7")), make_plan(CorpusConfig("/tmp/unused-8", 0.3, seed=8, test_items=2))
    assert [u.text for u in p7.train] != [u.text for u in p8.train]
    assert [u.text for u in p7.train] == [u.text for u in make_plan(_cfg("/tmp/unused-7b")).train]


def test_bigger_size_extends_the_plan():
    small, big = make_plan(_cfg("/tmp/unused")), make_plan(CorpusConfig("/tmp/unused", 2.0, seed=7, test_items=4))
    assert [u.text for u in big.train[: len(small.train)]] == [u.text for u in small.train]
    assert [i.utts["reference"].text for i in big.tests["tts"][:2]] == [i.utts["reference"].text for i in small.tests["tts"]]
    assert len(big.train) > 3 * len(small.train)


def test_resume_rebuilds_only_missing_or_untrusted_files(second):
    before = _hashes(second)
    ledger = second / ".build" / "ledger.jsonl"
    records = [json.loads(line) for line in ledger.read_text().splitlines()]
    train = read_jsonl(second / "train.jsonl")
    gone = second / train[0]["audio"]
    half = second / train[1]["audio"]
    gone.unlink()  # a deleted file
    half.write_bytes(half.read_bytes()[:100])  # a file cut short by a crash before its ledger line...
    kept = [r for r in records if train[1]["audio"] not in r["outputs"]]
    ledger.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"key": "trunc')  # ...and a torn last line
    build_corpus(_cfg(second), log=lambda *a: None)
    assert _hashes(second) == before
    lines = ledger.read_text().splitlines()
    assert len(lines) == len(kept) + 1 + 2  # only the two utterances were made again


def test_summary(corpus):
    s = json.loads((corpus / "summary.json").read_text())
    assert s["seed"] == 7 and s["sample_rate"] == 24000
    assert set(s["splits"]) == {"train", "dev", "test"}
    for split in ("train", "dev", "test"):
        st = s["splits"][split]
        assert st["utterances"] > 0 and st["hours"] > 0 and st["speakers"] > 0
    assert 0.15 <= s["splits"]["train"]["minutes"] + s["splits"]["dev"]["minutes"] <= 0.6
    assert s["test_sets"] == {t: 2 for t in ("tts", "vc", "tse", "se", "l2s")}
    assert "flite:rms" in s["held_out"]["voices"] and s["held_out"]["noise_types"]
