"""English number words: cardinals, ordinals, years, digit strings.

Written out with spaces, never hyphens ("twenty one"), so that each word reaches espeak-ng
as its own word and gets its own word boundary.
"""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**15, "quadrillion"), (10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def cardinal(n: int) -> str:
    """``1234567`` -> ``one million two hundred thirty four thousand five hundred sixty seven``.

    Numbers of 10**18 and more are read digit by digit.
    """
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= 10**18:
        return digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    words = []
    for value, name in _SCALES:
        if n >= value:
            words += [_below_thousand(n // value) if n // value < 1000 else cardinal(n // value), name]
            n %= value
    if n:
        words.append(_below_thousand(n))
    return " ".join(words)


def ordinal(n: int) -> str:
    """``21`` -> ``twenty first``; ``100`` -> ``one hundredth``."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _IRREGULAR_ORDINALS:
        words[-1] = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year(n: int) -> str:
    """Read a year the way people say it: 1999 -> nineteen ninety nine, 2005 -> two thousand
    five, 1905 -> nineteen oh five, 1900 -> nineteen hundred, 2010 -> twenty ten."""
    if n < 1000 or n >= 10000:
        return cardinal(n)
    hi, lo = divmod(n, 100)
    if n % 1000 == 0:
        return cardinal(n)
    if 2000 <= n < 2010:
        return cardinal(n)
    if lo == 0:
        return cardinal(hi) + " hundred"
    if lo < 10:
        return cardinal(hi) + " oh " + _ONES[lo]
    return cardinal(hi) + " " + cardinal(lo)


def digits(s: str) -> str:
    """Digit by digit: ``"0042"`` -> ``zero zero four two``."""
    return " ".join(_ONES[int(c)] for c in s if c.isdigit())


def decimal(s: str) -> str:
    """``"3.14"`` -> ``three point one four``; ``".5"`` -> ``point five``."""
    whole, _, frac = s.partition(".")
    head = cardinal(int(whole)) if whole else ""
    tail = ("point " + digits(frac)) if frac else ""
    return " ".join(w for w in (head, tail) if w)
