"""English normalisation: numbers, ordinals, years, dates, money, percent, times, abbreviations."""

import pytest

from metis_speech.text.english import normalize
from metis_speech.text.numbers import cardinal, ordinal, year


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (21, "twenty one"), (100, "one hundred"),
    (115, "one hundred fifteen"), (1001, "one thousand one"),
    (1234567, "one million two hundred thirty four thousand five hundred sixty seven"),
    (-5, "minus five"),
])
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (12, "twelfth"),
                                      (20, "twentieth"), (21, "twenty first"), (100, "one hundredth")])
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize("n, words", [(1999, "nineteen ninety nine"), (2000, "two thousand"),
                                      (2005, "two thousand five"), (2024, "twenty twenty four"),
                                      (1905, "nineteen oh five"), (1900, "nineteen hundred")])
def test_year(n, words):
    assert year(n) == words


@pytest.mark.parametrize("text, expected", [
    # numbers
    ("I have 3 cats", "I have three cats"),
    ("1,234,567 people", "one million two hundred thirty four thousand five hundred sixty seven people"),
    ("pi is 3.14", "pi is three point one four"),
    ("it is -5 outside", "it is minus five outside"),
    ("agent 007", "agent zero zero seven"),
    ("pages 10-20", "pages ten to twenty"),
    ("1/2 and 3/4 and 2/3", "one half and three quarters and two thirds"),
    # ordinals, years, decades
    ("the 21st century", "the twenty first century"),
    ("in 1999 and 2024", "in nineteen ninety nine and twenty twenty four"),
    ("the 1990s and the '80s", "the nineteen nineties and the eighties"),
    # dates
    ("on March 3rd, 1999", "on March third, nineteen ninety nine"),
    ("on March 3, 2024", "on March third, twenty twenty four"),
    ("on 2024-03-15", "on March fifteenth, twenty twenty four"),
    ("on 12/25/2001", "on December twenty fifth, two thousand one"),
    ("on 4 July 1976", "on the fourth of July, nineteen seventy six"),
    ("Jan. 5", "January fifth"),
    # money and percent
    ("$12.50", "twelve dollars, fifty cents"),
    ("$1", "one dollar"),
    ("€0.99", "ninety nine cents"),
    ("£3.20", "three pounds, twenty pence"),
    ("$5 million", "five million dollars"),
    ("$2.5bn", "two point five billion dollars"),
    ("25% and 3.5%", "twenty five percent and three point five percent"),
    # times
    ("at 10:30", "at ten thirty"),
    ("at 9:05 pm", "at nine oh five p m"),
    ("at 7:00", "at seven o'clock"),
    ("at 5pm", "at five p m"),
    ("at 18:45", "at eighteen forty five"),
    # abbreviations and symbols
    ("Mr. Smith and Mrs. Brown", "mister Smith and missus Brown"),
    ("Dr Jones", "doctor Jones"),
    ("St. Louis", "saint Louis"),
    ("Prof. Xavier", "professor Xavier"),
    ("Apple Inc. is big.", "Apple incorporated is big."),
    ("cats, dogs, etc. Then more", "cats, dogs, et cetera. Then more"),
    ("e.g. this", "for example this"),
    ("room No. 7", "room number seven"),
    ("rock & roll", "rock and roll"),
    ("30°C", "thirty degrees Celsius"),
    ("state-of-the-art", "state of the art"),
    ("wait — really?", "wait, really?"),
])
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_title_keeps_no_sentence_period():
    # The reference leaves "Mr." -> "mister." (a sentence end, i.e. a pause); we drop the period.
    assert "." not in normalize("Mr. Smith")
