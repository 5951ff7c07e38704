"""English phones: golden sequences from espeak-ng itself, and ids spot-checked in vocab.json."""

import re
import subprocess

import pytest

from metis_speech.text import PhoneTokenizer, text_to_phones

pytestmark = pytest.mark.usefixtures("need_espeak")

# The reference's English phone merges, written out independently of the package.
_PAIRS = [("t", "ɹ", "tɹ"), ("d", "ɹ", "dɹ"), ("t", "s", "ts"), ("d", "z", "dz"), ("ɪ", "ɹ", "ɪɹ")]
_RENAME = {"ɐ": "ɚ", "ᵻ": "ɪ", "əl": "l", "x": "k", "ɬ": "l", "ʔ": "t", "n̩": "n"}


def _merge(phones, pairs):
    for a, b, ab in pairs:
        out, i = [], 0
        while i < len(phones):
            if phones[i] == a and i + 1 < len(phones) and phones[i + 1] == b:
                out.append(ab)
                i += 2
            else:
                out.append(phones[i])
                i += 1
        phones = out
    return phones


def espeak_golden(cli, text):
    """Phones of ``text`` straight from the espeak-ng command (en-us, IPA, ``_`` between phones)."""
    raw = subprocess.run([cli, "-q", "--ipa", "--sep=_", "-v", "en-us", text],
                         capture_output=True, text=True, check=True).stdout
    phones = []
    for word in re.sub("[ˈˌ]", "", raw).split():
        if phones:
            phones.append("_")
        phones += [p for p in word.split("_") if p]
    phones = [_RENAME.get(p, p) for p in _merge(phones, _PAIRS)]
    return _merge(phones, [("oː", "ɹ", "oːɹ")])


GOLDEN = [
    "The quick brown fox jumps over the lazy dog",
    "She sells seashells by the seashore",
    "Little bottles of water are on the table",
    "Trust me the train tracks are dry",
    "Please call Stella and ask her to bring these things with her from the store",
    "I can't believe it's already over",
]


@pytest.mark.parametrize("text", GOLDEN)
def test_matches_espeak_ng(espeak_cli, text):
    assert text_to_phones(text, "en") == espeak_golden(espeak_cli, text)


def test_final_punctuation_replaces_no_boundary(espeak_cli):
    phones = text_to_phones("Hello, world.", "en")
    hello, world = espeak_golden(espeak_cli, "Hello"), espeak_golden(espeak_cli, "world")
    assert phones == hello + [","] + world + ["."]


def test_ids_spot_checked_against_vocab(tok):
    # h ə l oʊ _ w ɜː l d . : ids read off vocab.json by hand (h=41 ə=57 l=50 oʊ=23 _=4 w=48 ɜː=7 d=30 .=1);
    # the reference G2P gives the same sequence.
    r = tok("Hello world.", "en")
    assert r.phone_string == "h|ə|l|oʊ|_|w|ɜː|l|d|."
    assert r.ids == [41, 57, 50, 23, 4, 48, 7, 50, 30, 1]
    # merged phones: tɹ=51, dɹ=52, ts=53
    r = tok("tree dream cats", "en")
    assert r.ids == [51, 5, 4, 52, 5, 44, 4, 31, 18, 53]
    # a number and a question mark. The reference reads "twenty-five" as one word ("twɛntɪfaɪv",
    # it deletes the hyphen); we write numbers with spaces, so "twenty" keeps its own boundary.
    r = tok("What is 25% of 1,000?", "en")
    assert r.phone_string == "w|ʌ|t|_|ɪ|z|_|t|w|ɛ|n|t|i|_|f|aɪ|v|_|p|ɚ|s|ɛ|n|t|_|ʌ|v|_|w|ʌ|n|_|θ|aʊ|z|ə|n|d|?"
    assert r.ids == [48, 16, 29, 4, 6, 38, 4, 29, 48, 17, 45, 29, 55, 4, 33, 20, 34, 4, 27, 8, 37, 17, 45, 29,
                     4, 16, 34, 4, 48, 16, 45, 4, 35, 22, 38, 57, 45, 30, 2]


def test_all_ids_in_official_range(tok):
    text = "Mr. Smith paid $12.50 on March 3rd, 1999, at 10:30 p.m.; isn't that odd? Yes… really!"
    r = tok(text, "en")
    assert r.ids and all(0 <= i < 363 for i in r.ids)
    assert not r.unknown
    assert r.phones[-1] == "!" and "_" in r.phones and "…" in r.phones


def test_contractions(vocab_path):
    whole = PhoneTokenizer(vocab_path)("don't", "en")
    split = PhoneTokenizer(vocab_path, keep_contractions=False)("don't", "en")
    assert "'" not in whole.phones and whole.phones == ["d", "oʊ", "n", "t"]
    # the reference splits the word at the apostrophe and reads "don" and "t" apart
    assert "'" in split.phones
