"""Held-out voices, perturbations, noise types and sentences never reach training data."""

from metis_speech.corpus.noise import TEST_ONLY_NOISE_TYPES, TRAIN_NOISE_TYPES
from metis_speech.corpus.text import normalize_text
from metis_speech.corpus.voices import HELD_OUT_PERSON, TEST_PERTURBATIONS, VOICES, speakers_for_split

from .util import read_jsonl

TASKS = ("tts", "vc", "tse", "se", "l2s")
HELD_OUT_VOICES = {v.label for v in VOICES if v.held_out}
HELD_OUT_PERTS = {p.name for p in TEST_PERTURBATIONS}


def test_speaker_tables_keep_the_rules():
    train = {s.name for s in speakers_for_split("train")}
    test = speakers_for_split("test")
    assert not train & {s.name for s in test}
    assert all(s.voice.held_out or s.perturbation.name in HELD_OUT_PERTS for s in test)
    assert not any(s.voice.held_out or s.voice.person == HELD_OUT_PERSON for s in speakers_for_split("train"))
    assert {s.voice.person for s in test} >= {HELD_OUT_PERSON}


def test_train_and_dev_never_hold_held_out_voices_or_perturbations(corpus):
    rows = read_jsonl(corpus / "train.jsonl") + read_jsonl(corpus / "dev.jsonl")
    assert rows
    for r in rows:
        assert r["voice"] not in HELD_OUT_VOICES
        assert r["person"] != HELD_OUT_PERSON
        assert r["perturbation"]["name"] not in HELD_OUT_PERTS


def test_every_test_speaker_is_unseen(corpus):
    train_speakers = {r["speaker"] for r in read_jsonl(corpus / "train.jsonl") + read_jsonl(corpus / "dev.jsonl")}
    test_rows = read_jsonl(corpus / "test.jsonl")
    assert test_rows
    for r in test_rows:
        assert r["speaker"] not in train_speakers
        assert r["voice"] in HELD_OUT_VOICES or r["perturbation"]["name"] in HELD_OUT_PERTS
    for task in TASKS:
        for item in read_jsonl(corpus / "tests" / f"{task}.jsonl"):
            assert item["speaker"] not in train_speakers


def test_no_sentence_in_both_train_and_test(corpus):
    train = {normalize_text(r["text"]) for r in read_jsonl(corpus / "train.jsonl") + read_jsonl(corpus / "dev.jsonl")}
    test = {normalize_text(r["text"]) for r in read_jsonl(corpus / "test.jsonl")}
    for task in TASKS:
        for item in read_jsonl(corpus / "tests" / f"{task}.jsonl"):
            test |= {normalize_text(item[k]) for k in ("text", "prompt_text", "interferer_text") if k in item}
    assert test and not train & test
    dev = {normalize_text(r["text"]) for r in read_jsonl(corpus / "dev.jsonl")}
    assert not dev & {normalize_text(r["text"]) for r in read_jsonl(corpus / "train.jsonl")}


def test_held_out_noise_types_only_in_test(corpus):
    bank = read_jsonl(corpus / "noise" / "train.jsonl")
    assert {r["noise_type"] for r in bank} == set(TRAIN_NOISE_TYPES)
    assert not {r["noise_type"] for r in bank} & set(TEST_ONLY_NOISE_TYPES)
    for item in read_jsonl(corpus / "tests" / "se.jsonl"):
        assert item["noise_seen"] == (item["noise_type"] in TRAIN_NOISE_TYPES)
