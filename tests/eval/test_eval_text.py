"""Text normalisation and WER / CER on known cases (no audio, no backends)."""

import random

import jiwer
import pytest

from metis_speech.eval.text import cer, char_errors, normalize_text, number_to_words, wer, word_errors


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello world"),
        ("  Multiple   spaces\tand\nnewlines ", "multiple spaces and newlines"),
        ("It's John's dog\u2019s bone.", "its johns dogs bone"),
        ("well-known state-of-the-art", "well known state of the art"),
        ("I have 3 cats and 21 dogs", "i have three cats and twenty one dogs"),
        ("1,000,000 people", "one million people"),
        ("In 1984 and 1900 and 1905", "in nineteen eighty four and nineteen hundred and nineteen oh five"),
        ("in 2024", "in two thousand twenty four"),
        ("the 1st, 2nd, 3rd, 12th and 20th", "the first second third twelfth and twentieth"),
        ("pi is 3.14", "pi is three point one four"),
        ("50% off", "fifty percent off"),
        ("$5.50 and $1 and £3", "five dollars fifty cents and one dollar and three pounds"),
        ("Tom & Jerry", "tom and jerry"),
        ("pages 10-12", "pages ten to twelve"),
        ("ＦＵＬＬ　ＷＩＤＴＨ", "full width"),
        ("", ""),
        ("你好，世界！", "你好 世界"),
    ],
)
def test_normalize_text_english(text, expected):
    assert normalize_text(text) == expected


def test_normalize_text_chinese_drops_punctuation_and_spaces():
    assert normalize_text("你好，世界！ 今天 天气 好。", language="zh") == "你好世界今天天气好"


@pytest.mark.parametrize("n, words", [(0, "zero"), (13, "thirteen"), (40, "forty"), (105, "one hundred five"),
                                      (999, "nine hundred ninety nine"), (1001, "one thousand one"),
                                      (2_000_017, "two million seventeen"), (-7, "minus seven")])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_identical_text_gives_zero_error_whatever_the_formatting():
    assert wer("The quick brown fox.", "the quick brown fox") == 0.0
    assert cer("The quick brown fox.", "THE QUICK, BROWN FOX!") == 0.0
    assert wer("He is 25 years old", "he is twenty five years old") == 0.0  # digits vs words


def test_wer_counts():
    e = word_errors("a b c d", "a x c d e")
    assert (e.substitutions, e.deletions, e.insertions, e.ref_len) == (1, 0, 1, 4)
    assert wer("a b c d", "a x c d e") == pytest.approx(0.5)
    assert wer("a b c d", "") == 1.0
    assert wer("", "") == 0.0 and wer("", "extra") == 1.0
    assert cer("abcd", "abd") == pytest.approx(0.25)
    assert char_errors("ab", "ab").errors == 0


def test_chinese_error_rate_is_per_character():
    assert wer("今天天气好", "今天天汽好", language="zh") == pytest.approx(0.2)


def test_edit_distance_agrees_with_jiwer():
    rng = random.Random(0)
    vocab = "the a cat dog sat on mat".split()
    for _ in range(200):
        ref = " ".join(rng.choices(vocab, k=rng.randint(1, 9)))
        hyp = " ".join(rng.choices(vocab, k=rng.randint(1, 9)))
        ours = word_errors(ref, hyp)
        theirs = jiwer.process_words(ref, hyp)
        assert ours.errors == theirs.substitutions + theirs.deletions + theirs.insertions
        assert wer(ref, hyp) == pytest.approx(theirs.wer)
