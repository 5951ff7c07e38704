"""French and German: light text normalisation before espeak-ng (fr-fr, de).

As in the reference, espeak-ng itself reads numbers in these languages; this module expands
common abbreviations, maps typographic punctuation to the kept set, drops brackets and
quotes, and turns dashes into spaces. An apostrophe inside a word ("l'homme", "m’appelle")
stays in the word so that espeak-ng reads the elision (see :mod:`.espeak`).
"""

from __future__ import annotations

import re
from typing import Dict, List

from . import espeak

FRENCH_ABBREVIATIONS: Dict[str, str] = {
    "M.": "monsieur", "MM.": "messieurs", "Mme": "madame", "Mmes": "mesdames", "Mlle": "mademoiselle",
    "Mlles": "mesdemoiselles", "Dr.": "docteur", "Pr.": "professeur", "St.": "saint", "Ste.": "sainte",
    "av.": "avenue", "bd.": "boulevard", "boul.": "boulevard", "n°": "numéro", "No.": "numéro",
    "etc.": "et cetera", "ex.": "exemple", "p.ex.": "par exemple", "c.-à-d.": "c'est-à-dire",
    "qqch": "quelque chose", "qqn": "quelqu'un", "rdv": "rendez-vous", "env.": "environ",
    "min.": "minimum", "max.": "maximum", "art.": "article", "Cie": "compagnie", "cf.": "confer",
}
GERMAN_ABBREVIATIONS: Dict[str, str] = {
    "z.B.": "zum Beispiel", "z. B.": "zum Beispiel", "usw.": "und so weiter", "bzw.": "beziehungsweise",
    "d.h.": "das heißt", "d. h.": "das heißt", "u.a.": "unter anderem", "ca.": "circa",
    "Nr.": "Nummer", "Dr.": "Doktor", "Prof.": "Professor", "Hr.": "Herr", "Fr.": "Frau",
    "Str.": "Straße", "evtl.": "eventuell", "ggf.": "gegebenenfalls", "inkl.": "inklusive",
    "vgl.": "vergleiche", "bzgl.": "bezüglich", "Jh.": "Jahrhundert", "St.": "Sankt",
}
_PERCENT = {"fr": " pour cent", "de": " Prozent"}
_DECIMAL_COMMA = {"fr": " virgule ", "de": " Komma "}
_AND = {"fr": " et ", "de": " und "}

_TYPOGRAPHIC = (
    ("：", ","), ("；", ","), ("，", ","), ("。", "."), ("！", "!"), ("？", "?"), ("·", ","), ("、", ","),
    ("...", "…"), ("“", ""), ("”", ""), ("„", ""), ("‚", ""), ("«", ""), ("»", ""), ("‹", ""), ("›", ""),
    ("（", ""), ("）", ""), ("《", ""), ("》", ""), ("【", ""), ("】", ""), ("「", ""), ("」", ""),
    ("—", ", "), ("–", " "), ("～", " "), ("~", " "), ("¿", ""), ("¡", ""), ("‘", "'"), ("’", "'"),
)


def _abbreviations(text: str, table: Dict[str, str]) -> str:
    for short in sorted(table, key=len, reverse=True):
        pattern = r"(?<![\w.])" + re.escape(short) + (r"(?!\w)" if short[-1].isalnum() else "")
        text = re.sub(pattern, table[short] + " ", text)
    return text


def normalize(text: str, language: str) -> str:
    """Normalise French (``"fr"``) or German (``"de"``) text for espeak-ng."""
    table = FRENCH_ABBREVIATIONS if language == "fr" else GERMAN_ABBREVIATIONS
    text = _abbreviations(text, table)
    for a, b in _TYPOGRAPHIC:
        text = text.replace(a, b)
    text = text.replace("%", _PERCENT[language]).replace("&", _AND[language])
    text = re.sub(r"(?<=\d),(?=\d)", _DECIMAL_COMMA[language], text)  # 3,5 -> drei Komma fünf
    text = re.sub(r"[<>()\[\]{}\"]+", "", text)
    text = text.replace(";", ",").replace(":", ",")
    text = re.sub(r"(?<=\w)-(?=\w)|(?<=\s)-|-(?=\s)", " ", text)
    text = re.sub(r"^[\s,.!?…]+", "", text)
    return re.sub(r"\s+", " ", text).strip()


def phones(text: str, language: str, keep_contractions: bool = True) -> List[str]:
    """French or German text -> phone symbols (``"_"`` between words, punctuation kept)."""
    return espeak.phonemize(normalize(text, language), language, keep_contractions=keep_contractions)
