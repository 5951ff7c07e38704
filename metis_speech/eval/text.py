"""Text normalisation and word / character error rates.

The same :func:`normalize_text` is applied to the target text and to the ASR transcript
before scoring, as published evaluations do (Seed-TTS-eval, Whisper's normaliser):
lowercase, numbers spelled out where it is simple (cardinals, ordinals, decimals, years,
percent, currency), punctuation removed, apostrophes dropped ("don't" == "dont"),
whitespace collapsed. For Chinese (``language="zh"``) punctuation and spaces are removed
and error rates are computed over characters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["normalize_text", "number_to_words", "ErrorCounts", "word_errors", "char_errors", "wer", "cer"]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
# one English number speller for the whole package (the TTS front end's)
from ..text.numbers import cardinal as number_to_words  # noqa: E402
from ..text.numbers import ordinal as _ordinal  # noqa: E402


def _year(n: int) -> str:
    """1984 -> 'nineteen eighty four', 1900 -> 'nineteen hundred', 1905 -> 'nineteen oh five'."""
    hi, lo = divmod(n, 100)
    if lo == 0:
        return number_to_words(hi) + " hundred"
    return number_to_words(hi) + " " + ("oh " + _ONES[lo] if lo < 10 else number_to_words(lo))


def _spell_number(m: re.Match) -> str:
    cur, num, suffix = m.group("cur"), m.group("num").replace(",", ""), (m.group("suf") or "").lower()
    if cur and re.fullmatch(r"\d*\.\d\d", num):  # $5.50 -> five dollars fifty cents
        whole, cents = num.split(".")
        unit = {"$": "dollar", "£": "pound", "€": "euro"}[cur]
        words = number_to_words(int(whole or 0))
        words += " " + unit + ("" if words == "one" else "s")
        cents_unit = "pence" if cur == "£" else "cents"
        return " " + words + (" " + number_to_words(int(cents)) + " " + cents_unit if int(cents) else "") + " "
    if "." in num:
        whole, frac = num.split(".", 1)
        words = (number_to_words(int(whole)) if whole else "zero") + " point " + " ".join(_ONES[int(d)] for d in frac)
    else:
        n = int(num)
        if suffix in ("st", "nd", "rd", "th"):
            return " " + _ordinal(n) + " "
        is_year = not cur and suffix != "%" and len(num) == 4 and 1100 <= n <= 1999
        words = _year(n) if is_year else number_to_words(n)
    if suffix == "%":
        words += " percent"
    if cur:
        unit = {"$": "dollar", "£": "pound", "€": "euro"}[cur]
        words += " " + unit + ("" if words == "one" else "s")
    return " " + words + " "


_NUMBER = re.compile(r"(?P<cur>[$£€])?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<suf>%|st\b|nd\b|rd\b|th\b)?", re.IGNORECASE)


def normalize_text(text: str, language: str = "en") -> str:
    """Normalise a transcript for scoring; apply it to both reference and hypothesis."""
    text = unicodedata.normalize("NFKC", text or "")
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    if language.startswith("zh"):
        text = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith(("P", "S", "Z")) and not ch.isspace())
        return text
    text = text.lower()
    text = re.sub(r"(?<=\d)\s*-\s*(?=\d)", " to ", text)  # 1990-1995 -> 1990 to 1995
    text = _NUMBER.sub(_spell_number, text)
    text = text.replace("&", " and ").replace("%", " percent ").replace("+", " plus ")
    text = text.replace("'", "")  # don't -> dont, dog's -> dogs (identically on both sides)
    text = "".join(ch if (ch.isalnum() or ch.isspace()) else " " for ch in text)
    return " ".join(text.split())


@dataclass
class ErrorCounts:
    """Edit-distance counts of a hypothesis against a reference (words or characters)."""

    substitutions: int
    deletions: int
    insertions: int
    ref_len: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors / reference length; an empty reference gives 0 if the hypothesis is empty, else 1."""
        if self.ref_len == 0:
            return 0.0 if self.insertions == 0 else 1.0
        return self.errors / self.ref_len


def _edit_counts(ref: list, hyp: list) -> ErrorCounts:
    """Levenshtein alignment of token lists -> (S, D, I), ties broken towards fewer edits."""
    # d[j] = (cost, S, D, I) for ref[:i] vs hyp[:j]
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            c, s, d, n = prev[j - 1]
            best = (c, s, d, n) if ref[i - 1] == hyp[j - 1] else (c + 1, s + 1, d, n)
            c, s, d, n = prev[j]
            if c + 1 < best[0]:
                best = (c + 1, s, d + 1, n)
            c, s, d, n = cur[j - 1]
            if c + 1 < best[0]:
                best = (c + 1, s, d, n + 1)
            cur.append(best)
        prev = cur
    _, s, d, n = prev[-1]
    return ErrorCounts(s, d, n, len(ref))


def _tokens(text: str, language: str, unit: str) -> list:
    norm = normalize_text(text, language)
    if unit == "char" or language.startswith("zh"):
        return list(norm.replace(" ", "")) if language.startswith("zh") else list(norm)
    return norm.split()


def word_errors(reference: str, hypothesis: str, language: str = "en") -> ErrorCounts:
    """Word-level edit counts after normalisation (characters for Chinese)."""
    return _edit_counts(_tokens(reference, language, "word"), _tokens(hypothesis, language, "word"))


def char_errors(reference: str, hypothesis: str, language: str = "en") -> ErrorCounts:
    """Character-level edit counts after normalisation (spaces count as characters for English)."""
    return _edit_counts(_tokens(reference, language, "char"), _tokens(hypothesis, language, "char"))


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Word error rate of one utterance, after :func:`normalize_text` on both sides."""
    return word_errors(reference, hypothesis, language).rate


def cer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Character error rate of one utterance, after :func:`normalize_text` on both sides."""
    return char_errors(reference, hypothesis, language).rate
