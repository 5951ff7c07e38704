"""English: text normalisation (numbers, dates, money, times, abbreviations) and phones.

:func:`normalize` turns written forms into the words a reader says ("$12.50" -> "twelve
dollars, fifty cents", "Dr. Smith" -> "doctor Smith", "10:30 pm" -> "ten thirty p m").
:func:`phones` then runs espeak-ng (en-us) with the reference settings and applies the
reference's English phone merges (``t ɹ`` -> ``tɹ``, ``ɐ`` -> ``ɚ``, ...) so that every
phone is a symbol of the official vocabulary.

The normaliser is this project's own and covers more than the reference's (times, dates,
ISO dates, ranges, symbols, abbreviations without a stray sentence-final period).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, List, Sequence, Tuple

from . import espeak
from .numbers import cardinal, decimal, digits, ordinal, year

MONTHS = (
    "January February March April May June July August September October November December"
).split()
_MONTH_ABBR = {m[:3].lower(): m for m in MONTHS} | {"sept": "September"}

# Abbreviations read before a name; the period is dropped ("Dr. Smith" -> "doctor Smith").
TITLES = {
    "Mr": "mister", "Mrs": "missus", "Ms": "miz", "Dr": "doctor", "Prof": "professor",
    "Gen": "general", "Capt": "captain", "Lt": "lieutenant", "Col": "colonel", "Sgt": "sergeant",
    "Maj": "major", "Rev": "reverend", "Hon": "honorable", "Gov": "governor", "Sen": "senator",
    "Rep": "representative", "Pres": "president", "Mt": "mount", "Ft": "fort", "Messrs": "messieurs",
}
# Abbreviations that may end a sentence; the period stays when a sentence ends there.
TRAILING = {
    "Jr": "junior", "Sr": "senior", "Inc": "incorporated", "Ltd": "limited", "Co": "company",
    "Corp": "corporation", "Bros": "brothers", "etc": "et cetera", "Esq": "esquire",
    "Ave": "avenue", "Blvd": "boulevard", "Rd": "road", "Dept": "department", "Univ": "university",
    "approx": "approximately", "vs": "versus", "Fig": "figure", "Vol": "volume", "Ch": "chapter",
    "Sq": "square", "Hwy": "highway", "min": "minutes", "hr": "hour", "hrs": "hours",
    "sec": "seconds", "Ph.D": "P H D", "a.m": "a m", "p.m": "p m", "A.M": "a m", "P.M": "p m",
    "e.g": "for example", "i.e": "that is", "U.S": "U S", "U.K": "U K",
}
ABBREVIATIONS = tuple(TITLES) + tuple(TRAILING) + ("St", "No", "Nos") + tuple(m.capitalize() for m in _MONTH_ABBR)
"""Words whose trailing period does not end a sentence (used by the sentence splitter)."""

_SYMBOLS = (
    ("&", " and "), ("+", " plus "), ("=", " equals "), ("@", " at "), ("×", " times "),
    ("°C", " degrees Celsius"), ("°F", " degrees Fahrenheit"), ("°", " degrees"),
    ("½", " one half"), ("¼", " one quarter"), ("¾", " three quarters"),
)
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", "", "")}
_SCALE_WORDS = r"(?:thousand|million|billion|trillion|[kKmMbB]n?)\b"
_SCALE = {"k": "thousand", "m": "million", "mn": "million", "b": "billion", "bn": "billion"}

Rule = Tuple["re.Pattern[str]", Callable[["re.Match[str]"], str]]


def _num(s: str) -> int:
    return int(s.replace(",", ""))


def _amount_words(s: str) -> str:
    s = s.replace(",", "")
    return decimal(s) if "." in s else cardinal(int(s))


# ---- rules, applied in order ---------------------------------------------------------------


def _title(m: "re.Match[str]") -> str:
    return TITLES[m.group(1)] + " "


def _trailing(m: "re.Match[str]") -> str:
    word, rest = TRAILING[m.group(1)], m.group(2)
    ends_sentence = rest == "" or bool(re.match(r"\s+[A-Z\"“]", rest))
    return word + ("." if ends_sentence else "") + rest


def _month_abbr(m: "re.Match[str]") -> str:
    return _MONTH_ABBR[m.group(1).lower()] + " "


def _iso_date(m: "re.Match[str]") -> str:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m.group(0)
    return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"


def _slash_date(m: "re.Match[str]") -> str:
    a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if len(m.group(3)) == 2:
        y += 2000 if y < 50 else 1900
    mo, d = (a, b) if a <= 12 else (b, a)  # US month/day unless that is impossible
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m.group(0)
    return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"


def _month_day(m: "re.Match[str]") -> str:
    month, day, tail = m.group(1), int(m.group(2)), m.group(3) or ""
    if not 1 <= day <= 31:
        return m.group(0)
    out = f"{month} {ordinal(day)}"
    if tail:
        out += ", " + year(int(tail.strip(" ,")))
    return out


def _day_month(m: "re.Match[str]") -> str:
    day, month, tail = int(m.group(1)), m.group(2), m.group(3) or ""
    if not 1 <= day <= 31:
        return m.group(0)
    out = f"the {ordinal(day)} of {month}"
    if tail:
        out += ", " + year(int(tail.strip()))
    return out


def _clock(m: "re.Match[str]") -> str:
    h, mi, sec, ampm = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if h > 24 or mi > 59:
        return m.group(0)
    if mi == 0:
        words = cardinal(h) + ("" if ampm else " o'clock" if h <= 12 else " hundred")
    elif mi < 10:
        words = f"{cardinal(h)} oh {cardinal(mi)}"
    else:
        words = f"{cardinal(h)} {cardinal(mi)}"
    if sec and int(sec):
        words += f" and {cardinal(int(sec))} seconds"
    if ampm:
        words += " " + ampm[0].lower() + " m"
    return words


def _hour_ampm(m: "re.Match[str]") -> str:
    return f"{cardinal(int(m.group(1)))} {m.group(2)[0].lower()} m"


def _money(m: "re.Match[str]") -> str:
    sign, amount, scale = m.group(1), m.group(2), m.group(3)
    one, many, sub_one, sub_many = _CURRENCY[sign]
    if scale:  # "$2.5 million" -> "two point five million dollars"
        word = _SCALE.get(scale.lower(), scale.lower())
        return f"{_amount_words(amount)} {word} {many}"
    whole, _, frac = amount.replace(",", "").partition(".")
    units = int(whole) if whole else 0
    if frac and len(frac) != 2 or frac and not sub_one:
        return f"{_amount_words(amount)} {many}"
    cents = int(frac) if frac else 0
    parts = []
    if units or not cents:
        parts.append(f"{cardinal(units)} {one if units == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return ", ".join(parts)


def _percent(m: "re.Match[str]") -> str:
    return _amount_words(m.group(1)) + " percent"


def _ordinal(m: "re.Match[str]") -> str:
    return ordinal(int(m.group(1)))


def _fraction(m: "re.Match[str]") -> str:
    n, d = int(m.group(1)), int(m.group(2))
    if d == 0:
        return f"{cardinal(n)} over zero"
    if d == 1:
        return f"{cardinal(n)} over one"
    if d == 2:
        return "one half" if n == 1 else f"{cardinal(n)} halves"
    if d == 4:
        return "one quarter" if n == 1 else f"{cardinal(n)} quarters"
    return f"{cardinal(n)} {ordinal(d)}" + ("" if n == 1 else "s")


def _range(m: "re.Match[str]") -> str:
    return f"{m.group(1)} to {m.group(2)}"


def _decade(m: "re.Match[str]") -> str:
    n = int(m.group(1)) if m.group(1) else None
    tens = int(m.group(2))
    word = cardinal(tens * 10) if tens else "hundred"
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    if n is None:
        return m.group(0) if tens == 0 else plural
    if n == 20 and tens == 0:
        return "two thousands"
    return f"{cardinal(n)} {plural}"


def _plain_number(m: "re.Match[str]") -> str:
    s = m.group(0)
    if s.startswith("0") and len(s) > 1:
        return digits(s)
    if len(s) > 15:
        return digits(s)
    return cardinal(int(s))


def _year_or_number(m: "re.Match[str]") -> str:
    n = int(m.group(0))
    return year(n) if 1100 <= n <= 2099 and n % 1000 else cardinal(n)


def _decade_short(m: "re.Match[str]") -> str:
    word = cardinal(int(m.group(1)) * 10)
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


_MONTH_RE = "(" + "|".join(MONTHS) + ")"
_NO_PERIOD_TITLES = ("Mr", "Mrs", "Ms", "Dr")  # British style, still followed by a name
_RULES: Sequence[Rule] = (
    # abbreviations
    (re.compile(r"\b(" + "|".join(TITLES) + r")\.\s*(?=[A-Z])"), _title),
    (re.compile(r"\b(" + "|".join(_NO_PERIOD_TITLES) + r")\s+(?=[A-Z])"), _title),
    (re.compile(r"\bSt\.?\s+(?=[A-Z])"), lambda m: "saint "),
    (re.compile(r"\b(No|Nos|no|nos)\.\s*(?=\d)"), lambda m: "numbers " if m.group(1).lower() == "nos" else "number "),
    (re.compile(r"\b(" + "|".join(sorted(_MONTH_ABBR, key=len, reverse=True)) + r")\.\s*(?=\d)", re.I), _month_abbr),
    (re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(TRAILING, key=len, reverse=True)) + r")\.(\s+\S|\s*$|(?=[,;:!?)]))"), _trailing),
    # dates and times (before plain numbers)
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), _iso_date),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b"), _slash_date),
    (re.compile(_MONTH_RE + r"\s+(\d{1,2})(?:st|nd|rd|th)?\b(,?\s+\d{4}\b)?"), _month_day),
    (re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH_RE + r"\b(\s+\d{4}\b)?"), _day_month),
    (re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([aApP])\.?[mM]\.?(?![a-zA-Z]))?"), _clock),
    (re.compile(r"\b(\d{1,2})\s*([aApP])\.?[mM]\.?(?![a-zA-Z])"), _hour_ampm),
    # money, percent, ordinals, fractions, ranges, decades
    (re.compile(r"([$£€¥])\s?(\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*(" + _SCALE_WORDS + r"))?"), _money),
    (re.compile(r"(\d[\d,]*(?:\.\d+)?|\.\d+)\s?%"), _percent),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), _ordinal),
    (re.compile(r"\b(\d+)/(\d+)\b"), _fraction),
    (re.compile(r"\b(\d+)\s?[-–]\s?(\d+)\b"), _range),
    (re.compile(r"(?<![\w'])'(\d)0s\b"), _decade_short),
    (re.compile(r"\b(1[1-9]|20)?(\d)0s\b"), _decade),
    # numbers
    (re.compile(r"(?<![\w.])-(?=\d)"), lambda m: "minus "),
    (re.compile(r"\b\d{1,3}(?:,\d{3})+\b"), lambda m: str(_num(m.group(0)))),
    (re.compile(r"\d*\.\d+"), lambda m: decimal(m.group(0))),
    (re.compile(r"\b\d{4}\b"), _year_or_number),
    (re.compile(r"\d+"), _plain_number),
)


def normalize(text: str) -> str:
    """Written English -> the words a reader says (see module docstring)."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    text = re.sub(r"\s+[—–]\s+|—", ", ", text)  # dashes between clauses are pauses
    for sym, words in _SYMBOLS:
        text = text.replace(sym, words)
    text = re.sub(r"#(?=\d)", "number ", text)
    for pattern, fn in _RULES:
        text = pattern.sub(fn, text)
    text = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", " ", text)  # "well-known" -> "well known"
    return re.sub(r"\s+", " ", text).strip()


# ---- phones --------------------------------------------------------------------------------

_MERGE_PAIRS = (("t", "ɹ", "tɹ"), ("d", "ɹ", "dɹ"), ("t", "s", "ts"), ("d", "z", "dz"), ("ɪ", "ɹ", "ɪɹ"))
_RENAME = {"ɐ": "ɚ", "ᵻ": "ɪ", "əl": "l", "x": "k", "ɬ": "l", "ʔ": "t", "n̩": "n"}
_LATE_PAIRS = (("oː", "ɹ", "oːɹ"),)
# Last characters after which the reference closes an English stretch with a word boundary.
_CLOSING_CHARS = frozenset("p⁼ʰmftnlkxʃs`ɹaoəɛɪeɑʊŋiuɥwæjː")


def _merge(phones: List[str], pairs) -> List[str]:
    for a, b, ab in pairs:
        out: List[str] = []
        i = 0
        while i < len(phones):
            if phones[i] == a and i + 1 < len(phones) and phones[i + 1] == b:
                out.append(ab)
                i += 2
            else:
                out.append(phones[i])
                i += 1
        phones = out
    return phones


def fix_phones(phones: List[str]) -> List[str]:
    """The reference's English phone merges and renames, in its order."""
    phones = _merge(phones, _MERGE_PAIRS)
    phones = [_RENAME.get(p, p) for p in phones]
    return _merge(phones, _LATE_PAIRS)


def phones(text: str, normalized: bool = False, keep_contractions: bool = True, closing_boundary: bool = False) -> List[str]:
    """English text -> phone symbols (``"_"`` between words, punctuation kept).

    ``closing_boundary`` appends the word boundary the reference puts after an English
    stretch that is followed by more text (mixed Chinese/English input).
    """
    if not normalized:
        text = normalize(text)
    out = espeak.phonemize(text, "en", keep_contractions=keep_contractions)
    if closing_boundary and out and out[-1][-1] in _CLOSING_CHARS:
        out.append("_")
    return fix_phones(out)
