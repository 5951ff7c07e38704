"""Japanese: readings from pyopenjtalk, split into morae, written as phones of the vocabulary.

OpenJTalk gives each word's pronunciation in katakana; each mora becomes a consonant phone
(if any) and a vowel phone (カ -> ``k a``, シャ -> ``ɕ a``, ン -> ``ɴ``, ッ -> ``q``); a
long-vowel mark repeats the previous vowel. Punctuation is kept; there are no word
boundaries, as in the reference. Phone names follow the reference's conventions, including
its quirks (ハ-row ``h`` is written ``ç``, ツ is ``tsɯ ɯ``), since those are the symbols the
official model was trained with.

Needs ``pyopenjtalk`` with a bundled dictionary (the ``pyopenjtalk-plus`` wheel; plain
``pyopenjtalk`` downloads its dictionary on first use). Words OpenJTalk cannot read are
read with pykakasi when it is installed, else skipped.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from .errors import BackendUnavailableError

PUNCTUATION = ",.!?:;'…"

# Phone name (OpenJTalk style) -> vocabulary symbol.
IPA = {
    "a": "a", "i": "i", "u": "ɯ", "e": "e", "o": "o", "k": "k", "s": "s", "t": "t", "n": "n",
    "h": "c\u0327", "f": "ɸ", "m": "m", "y": "j", "r": "ɾ", "w": "ɰᵝ", "N": "ɴ", "g": "g", "z": "z",
    "d": "d", "b": "b", "p": "p", "q": "q", "v": "v", "j": "dʑ", "ch": "tɕ", "sh": "ɕ", "ts": "tsɯ",
    "by": "bj", "dy": "dej", "ty": "tej", "gy": "gj", "gw": "gɯ", "hy": "c\u0327j", "ky": "kj", "kw": "kɯ",
    "my": "mj", "ny": "nj", "py": "pj", "ry": "ɾj",
}

_ROWS = {  # consonant of the a-i-u-e-o kana of each row (None: no consonant)
    "アイウエオ": (None, None, None, None, None),
    "カキクケコ": ("k",) * 5, "ガギグゲゴ": ("g",) * 5,
    "サシスセソ": ("s", "sh", "s", "s", "s"), "ザジズゼゾ": ("z", "j", "z", "z", "z"),
    "タチツテト": ("t", "ch", "ts", "t", "t"), "ダヂヅデド": ("d", "j", "z", "d", "d"),
    "ナニヌネノ": ("n",) * 5, "ハヒフヘホ": ("h", "h", "f", "h", "h"),
    "バビブベボ": ("b",) * 5, "パピプペポ": ("p",) * 5, "マミムメモ": ("m",) * 5,
    "ヤ_ユ_ヨ": ("y",) * 5, "ラリルレロ": ("r",) * 5, "ワヰ_ヱヲ": ("w", None, None, None, None),
    "ァィゥェォ": (None,) * 5, "ャ_ュ_ョ": ("y",) * 5,
}
_VOWELS = "aiueo"
_SMALL = {"ァ": "a", "ィ": "i", "ゥ": "u", "ェ": "e", "ォ": "o"}
_SMALL_Y = {"ャ": "a", "ュ": "u", "ョ": "o", "ェ": "e"}


def _mora_table() -> Dict[str, Tuple[Optional[str], str]]:
    table: Dict[str, Tuple[Optional[str], str]] = {}
    for kana, consonants in _ROWS.items():
        for k, c, v in zip(kana, consonants, _VOWELS):
            if k != "_":
                table[k] = (c, v)
    table.update({"ン": (None, "N"), "ッ": (None, "q"), "ヴ": ("v", "u"), "ヮ": ("w", "a"), "ヶ": ("k", "e"), "ヵ": ("k", "a")})
    # palatalised: キャ -> ky a, シャ -> sh a, チャ -> ch a, ジャ -> j a
    for base, cons in zip("キギニヒビピミリ", ("ky", "gy", "ny", "hy", "by", "py", "my", "ry")):
        for small, v in _SMALL_Y.items():
            table[base + small] = (cons, v)
    for base, cons in (("シ", "sh"), ("チ", "ch"), ("ジ", "j")):
        for small, v in _SMALL_Y.items():
            table[base + small] = (cons, v)
    for base, cons in (("テ", "ty"), ("デ", "dy"), ("ヴ", "by")):
        for small in "ャュョ":
            table[base + small] = (cons, _SMALL_Y[small])
    # foreign-sound spellings: ファ, ヴァ, ツァ, ティ, ディ, トゥ, ドゥ, スィ, ズィ, クヮ, グヮ
    for base, cons in (("フ", "f"), ("ヴ", "v"), ("ツ", "ts")):
        for small, v in _SMALL.items():
            if small != "ゥ":
                table[base + small] = (cons, v)
    table.update({
        "ティ": ("t", "i"), "ディ": ("d", "i"), "トゥ": ("t", "u"), "ドゥ": ("d", "u"),
        "スィ": ("s", "i"), "ズィ": ("z", "i"), "クヮ": ("kw", "a"), "グヮ": ("gw", "a"),
        "イェ": ("y", "e"), "ウィ": ("w", "i"), "ウェ": ("w", "e"), "ウォ": ("w", "o"),
    })
    return table


MORAE = _mora_table()
_MORA_RE = re.compile("|".join(sorted(map(re.escape, MORAE), key=len, reverse=True)))
_ITERATION_MARKS = set("々ゝヽゞヾ゛")
_PUNCT_MAP = {"：": ":", "；": ";", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "．": ".", "⋯": "…",
              "···": "…", "・・・": "…", "·": ",", "・": ",", "•": ",", "、": ",", "$": ".", "‘": "'", "’": "'",
              "...": "…"}
_PUNCT_RE = re.compile("|".join(map(re.escape, sorted(_PUNCT_MAP, key=len, reverse=True))))
_KEEP = re.compile(r"[^\u3040-\u309F\u30A0-\u30FF\u4E00-\u9FFF\u3400-\u4DBF\u3005A-Za-z\uFF21-\uFF3A\uFF41-\uFF5A"
                   r"\u0370-\u03FF\u1F00-\u1FFF,.!?:;'…]+")


def _clean_word(word: str) -> str:
    return _KEEP.sub("", _PUNCT_RE.sub(lambda m: _PUNCT_MAP[m.group(0)], word))


def _to_katakana(s: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in s)


def kana_phones(kana: str, previous: str = "") -> List[str]:
    """Katakana -> OpenJTalk-style phone names; ``ー`` repeats the last letter before it."""
    out: List[str] = []
    pos = 0
    kana = _to_katakana(kana)
    while pos < len(kana):
        if kana[pos] == "ー":
            last = (out[-1] if out else previous)[-1:]
            if last:
                out.append(last)
            pos += 1
            continue
        m = _MORA_RE.match(kana, pos)
        if m is None:  # not a kana we know: skip it
            pos += 1
            continue
        consonant, vowel = MORAE[m.group(0)]
        if consonant:
            out.append(consonant)
        out.append(vowel)
        pos = m.end()
    return out


@lru_cache(maxsize=1)
def _openjtalk():
    try:
        import pyopenjtalk
    except ImportError:
        raise BackendUnavailableError(
            "Japanese needs pyopenjtalk with its dictionary; pip install pyopenjtalk-plus"
        ) from None
    try:
        from pykakasi import kakasi

        reader = kakasi()
    except ImportError:
        reader = None
    return pyopenjtalk, reader


def readings(text: str) -> List[str]:
    """Per word: its katakana reading, or a punctuation mark."""
    pyopenjtalk, kakasi_reader = _openjtalk()
    sentence = re.sub(r"\s+", "", text.strip().strip("'"))
    if not sentence:
        return []
    try:
        nodes = pyopenjtalk.run_frontend(sentence)
    except Exception as e:  # noqa: BLE001 - e.g. a dictionary that could not be loaded
        raise BackendUnavailableError(f"pyopenjtalk cannot analyse Japanese text here ({type(e).__name__}: {e})") from None
    out: List[str] = []
    i = 0
    while i < len(nodes):
        word, pron = nodes[i]["string"], nodes[i]["pron"].replace("’", "")
        if i + 1 < len(nodes) and nodes[i + 1]["string"] in _ITERATION_MARKS:
            word += nodes[i + 1]["string"]
            i += 1
        i += 1
        word = _clean_word(word)
        if not word:
            continue
        if not re.search(r"[\u30A0-\u30FF\u3040-\u309F]", pron):  # OpenJTalk's reading of a symbol (、？！)
            if all(c in PUNCTUATION for c in word):
                out += list(word)
                continue
            if kakasi_reader is None:
                continue
            pron = "".join(part["kana"] for part in kakasi_reader.convert(word))
        out.append(pron)
    return out


def phones(text: str) -> List[str]:
    """Japanese text -> phone symbols (no word boundaries; punctuation kept)."""
    out: List[str] = []
    last = ""
    for item in readings(text):
        if item in PUNCTUATION:
            out.append(item)
            continue
        names = kana_phones(item, last)
        if names:
            last = names[-1]
        out += [IPA[n] for n in names if n in IPA]
    return out
