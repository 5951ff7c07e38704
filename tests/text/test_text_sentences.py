"""Sentence splitting of long text."""

import re

import pytest

from metis_speech.text import split_sentences


def _chars(pieces):
    return re.sub(r"\s+", "", "".join(pieces))


def test_english_sentences_and_abbreviations():
    text = ('Dr. Smith went to Washington. He arrived at 3.5 p.m. on Monday! '
            'J. K. Rowling wrote "Harry Potter." Then what? Nothing…\nA new line')
    assert split_sentences(text, "en") == [
        "Dr. Smith went to Washington.", "He arrived at 3.5 p.m. on Monday!",
        'J. K. Rowling wrote "Harry Potter."', "Then what?", "Nothing…", "A new line",
    ]


def test_chinese_and_japanese_sentences():
    assert split_sentences("今天天气很好。我们去公园吧！你觉得呢？好的", "zh") == [
        "今天天气很好。", "我们去公园吧！", "你觉得呢？", "好的"]
    assert split_sentences("こんにちは。元気ですか？", "auto") == ["こんにちは。", "元気ですか？"]


def test_french_and_german_abbreviations():
    assert split_sentences("M. Dupont est là. Il dort.", "fr") == ["M. Dupont est là.", "Il dort."]
    assert split_sentences("Das ist z.B. gut. Nr. 5 ist da.", "de") == ["Das ist z.B. gut.", "Nr. 5 ist da."]


@pytest.mark.parametrize("max_chars", [12, 30, 60])
def test_long_sentences_are_cut_within_the_limit(max_chars):
    text = ("This is a long sentence, with many clauses, that goes on and on; and it never seems to end, "
            "really, not at all, because supercalifragilisticexpialidocious words exist.")
    pieces = split_sentences(text, "en", max_chars=max_chars)
    assert all(len(p) <= max_chars for p in pieces)
    assert _chars(pieces) == _chars([text])
    if max_chars == 30:
        assert pieces[:3] == ["This is a long sentence,", "with many clauses,", "that goes on and on;"]


def test_cjk_without_spaces_is_cut_by_characters():
    text = "我" * 250 + "。"
    pieces = split_sentences(text, "zh", max_chars=100)
    assert [len(p) for p in pieces] == [100, 100, 51]


def test_short_sentences_can_be_merged():
    assert split_sentences("Yes. No. Maybe so.", "en", min_chars=5) == ["Yes. No.", "Maybe so."]
    assert split_sentences("Yes. No. Maybe so.", "en") == ["Yes.", "No.", "Maybe so."]
    assert split_sentences("See No. 5 now. It may. Mar. 3 is fine.", "en") == ["See No. 5 now.", "It may.", "Mar. 3 is fine."]


def test_bad_limit():
    with pytest.raises(ValueError):
        split_sentences("Hello.", "en", max_chars=0)
