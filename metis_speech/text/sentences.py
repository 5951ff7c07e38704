"""Sentence splitting for long text, so that TTS can synthesise it piece by piece.

:func:`split_sentences` cuts at sentence ends (``. ! ? …`` followed by a space, or the CJK
``。！？``; line breaks always), not after abbreviations ("Dr.", "z.B."), initials ("J. K.")
or inside numbers ("3.5"). A sentence longer than ``max_chars`` is cut again at clause
punctuation (``, ; :`` and CJK ``，；：、``), then between words, then (for text without
spaces) every ``max_chars`` characters. Pieces keep their own punctuation, and no
non-space character is lost or reordered.
"""

from __future__ import annotations

import re
from typing import List, Optional

from .detect import detect_language, normalize_language
from .errors import EmptyTextError

DEFAULT_MAX_CHARS = {"en": 300, "fr": 300, "de": 300, "ko": 150, "zh": 100, "ja": 100}

_ABBREVIATIONS = {
    "en": None,  # filled lazily from english.ABBREVIATIONS
    "fr": {"M", "MM", "Mme", "Mlle", "Dr", "Pr", "St", "Ste", "av", "bd", "etc", "ex", "env", "art", "cf", "p", "n°"},
    "de": {"z", "B", "usw", "bzw", "d", "h", "u", "a", "ca", "Dr", "Prof", "Hr", "Fr", "Str", "evtl", "ggf",
           "inkl", "vgl", "bzgl", "Jh", "St"},
}
_CJK_END = "。！？!?；;…"
_CLOSERS = "\"'”’)]}»」』）"
_LATIN_END = re.compile(r"([.!?…]+)([" + re.escape(_CLOSERS) + r"]*)(\s+)")
_CLAUSE = re.compile(r"(?<=[,;:，；：、])")


def _abbreviations(language: str) -> set:
    if language == "en":
        if _ABBREVIATIONS["en"] is None:
            from .english import TITLES, TRAILING

            _ABBREVIATIONS["en"] = {a.split(".")[-1] for a in list(TITLES) + list(TRAILING)} | {"St"}
        return _ABBREVIATIONS["en"]
    return _ABBREVIATIONS.get(language) or set()


# Abbreviations only when a number follows ("No. 5", "Mar. 3"); elsewhere they are words.
_BEFORE_NUMBER = {"No", "Nos", "no", "Nr", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec"}


def _latin_sentences(line: str, language: str) -> List[str]:
    abbr = _abbreviations(language)
    out, start = [], 0
    for m in _LATIN_END.finditer(line):
        before = line[start:m.start()]
        word = re.findall(r"[\w°]+$", before)
        last = word[0] if word else ""
        if m.group(1) == ".":
            initial = len(last) == 1 and last.isalpha() and last.isupper()  # "J. K. Rowling"
            numbered = last in _BEFORE_NUMBER and line[m.end():m.end() + 1].isdigit()
            if last in abbr or initial or numbered:
                continue  # not a sentence end
        out.append(line[start:m.end(2)])
        start = m.end()
    out.append(line[start:])
    return [s.strip() for s in out if s.strip()]


def _cjk_sentences(line: str) -> List[str]:
    out, buf = [], ""
    i = 0
    while i < len(line):
        buf += line[i]
        if line[i] in _CJK_END or (line[i] == "." and (i + 1 == len(line) or line[i + 1].isspace())):
            while i + 1 < len(line) and (line[i + 1] in _CJK_END or line[i + 1] in _CLOSERS):
                i += 1
                buf += line[i]
            out.append(buf)
            buf = ""
        i += 1
    out.append(buf)
    return [s.strip() for s in out if s.strip()]


def _pack(parts: List[str], max_chars: int, joiner: str) -> List[str]:
    """Greedily join consecutive parts while the result fits in ``max_chars``."""
    out: List[str] = []
    for p in parts:
        if out and len(out[-1]) + len(joiner) + len(p) <= max_chars:
            out[-1] = out[-1] + joiner + p
        else:
            out.append(p)
    return out


def _shorten(sentence: str, max_chars: int, spaced: bool) -> List[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    joiner = " " if spaced else ""
    clauses = [c.strip() for c in _CLAUSE.split(sentence) if c.strip()]
    out: List[str] = []
    for clause in _pack(clauses, max_chars, joiner):
        if len(clause) <= max_chars:
            out.append(clause)
        elif spaced and " " in clause:
            words = clause.split()
            for piece in _pack(words, max_chars, " "):
                out += [piece[i:i + max_chars] for i in range(0, len(piece), max_chars)]
        else:
            out += [clause[i:i + max_chars] for i in range(0, len(clause), max_chars)]
    return out


def split_sentences(
    text: str,
    language: str = "auto",
    max_chars: Optional[int] = None,
    min_chars: int = 0,
) -> List[str]:
    """Split ``text`` into sentences of at most ``max_chars`` characters.

    ``max_chars`` defaults per language (:data:`DEFAULT_MAX_CHARS`: about 20 s of speech).
    Sentences shorter than ``min_chars`` are joined to the next one when the result fits.
    """
    if not isinstance(text, str) or not text.strip():
        raise EmptyTextError()
    lang = normalize_language(language)
    if lang == "auto":
        lang = detect_language(text)
    limit = max_chars if max_chars is not None else DEFAULT_MAX_CHARS[lang]
    if limit < 1:
        raise ValueError(f"max_chars must be at least 1, got {limit}")
    spaced = lang not in ("zh", "ja")
    sentences: List[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        found = _cjk_sentences(line) if not spaced else _latin_sentences(line, lang)
        for s in found:
            sentences += _shorten(s, limit, spaced or " " in s)
    if min_chars > 0:
        merged: List[str] = []
        for s in sentences:
            if merged and len(merged[-1]) < min_chars and len(merged[-1]) + 1 + len(s) <= limit:
                merged[-1] = merged[-1] + (" " if spaced else "") + s
            else:
                merged.append(s)
        sentences = merged
    return sentences
