"""Offline language detection for the six languages of the phone vocabulary.

Script first: Hangul -> ``ko``; kana -> ``ja``; Han characters without kana -> ``zh`` (mixed
Chinese/English goes through the Chinese path, as in the reference). Latin-script text is
told apart by function words and letters (en/fr/de); when those do not decide, and
``langid`` is installed, its ranking decides, and a confident verdict for another language
(Spanish, Italian, ...) is refused. Text in another script (Cyrillic, Arabic, ...) is refused.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Dict, Optional

from .errors import SUPPORTED_LANGUAGES, NoPhonesError, UnsupportedLanguageError

ALIASES: Dict[str, str] = {
    "en": "en", "eng": "en", "english": "en", "en-us": "en", "en_us": "en", "en-gb": "en",
    "zh": "zh", "cmn": "zh", "zh-cn": "zh", "zh_cn": "zh", "chinese": "zh", "mandarin": "zh", "zh-hans": "zh",
    "ja": "ja", "jp": "ja", "jpn": "ja", "japanese": "ja",
    "ko": "ko", "kr": "ko", "kor": "ko", "korean": "ko",
    "fr": "fr", "fra": "fr", "fre": "fr", "french": "fr", "fr-fr": "fr",
    "de": "de", "deu": "de", "ger": "de", "german": "de",
}

_STOPWORDS = {
    "en": set("the a an and of to in is are was were it that this with for on you i he she we they not be have has "
              "had do does what which who how but or at by from as my your his her our their will would can there".split()),
    "fr": set("le la les un une des et est sont de du au aux en dans pour pas ne je tu il elle nous vous ils elles "
              "que qui avec sur ce cette mais ou où être avoir très bien c'est j'ai suis plus".split()),
    "de": set("der die das ein eine und ist sind nicht ich du er sie wir ihr es zu mit von für auf den dem des "
              "im auch wie was aber oder noch nur sehr schon bin hat haben wird werden dass".split()),
}
_LETTERS = {"de": "äöüßÄÖÜ", "fr": "éèêëàâçœùûîïôÉÈÊÀÇ"}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def normalize_language(language: str) -> str:
    """``"English"``, ``"en-US"``, ``"cmn"`` ... -> one of :data:`SUPPORTED_LANGUAGES` or
    ``"auto"``; anything else raises :class:`UnsupportedLanguageError`."""
    key = str(language).strip().lower()
    if key == "auto":
        return "auto"
    if key in ALIASES:
        return ALIASES[key]
    raise UnsupportedLanguageError(language)


def script_counts(text: str) -> Dict[str, int]:
    """Letters of each script in ``text``: hangul, kana, han, latin, other."""
    counts = {"hangul": 0, "kana": 0, "han": 0, "latin": 0, "other": 0, "digit": 0}
    for ch in text:
        o = ord(ch)
        if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
            counts["hangul"] += 1
        elif 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9D:
            if ch not in "・ー゠":
                counts["kana"] += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
            counts["han"] += 1
        elif ch.isdigit():
            counts["digit"] += 1
        elif ch.isalpha():
            name = unicodedata.name(ch, "")
            counts["latin" if name.startswith("LATIN") else "other"] += 1
    return counts


def _other_script(text: str) -> str:
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if not name.startswith(("LATIN", "HANGUL", "CJK", "HIRAGANA", "KATAKANA")):
                return name.split()[0].capitalize()
    return "unknown"


def _heuristic_scores(text: str) -> Dict[str, float]:
    words = [w.lower() for w in _WORD.findall(text)]
    scores = {lang: float(sum(w in stop for w in words)) for lang, stop in _STOPWORDS.items()}
    for lang, letters in _LETTERS.items():
        scores[lang] += min(2, sum(text.count(c) for c in letters))
    return scores


@lru_cache(maxsize=1)
def _langid():
    try:
        from langid.langid import LanguageIdentifier, model
    except ImportError:
        return None
    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


def detect_latin(text: str, use_langid: Optional[bool] = None) -> str:
    """en / fr / de for Latin-script text (see module docstring)."""
    scores = _heuristic_scores(text)
    ranked = sorted(scores, key=scores.get, reverse=True)
    best, second = ranked[0], ranked[1]
    if scores[best] >= 2 and scores[best] >= 2 * scores[second]:
        return best
    ident = _langid() if use_langid is not False else None
    if ident is None:
        return best if scores[best] > 0 else "en"
    ranking = ident.rank(text)
    top, prob = ranking[0]
    if top in SUPPORTED_LANGUAGES:
        return top if top in ("en", "fr", "de") else best
    if prob >= 0.9 and len(_WORD.findall(text)) >= 3 and scores[best] < 2:
        raise UnsupportedLanguageError(
            "auto", f"the text looks like {top!r} (pass language= to read it as one of ours anyway)"
        )
    for lang, _ in ranking:
        if lang in ("en", "fr", "de"):
            return lang
    return "en"


def detect_language(text: str) -> str:
    """The language of ``text`` among :data:`SUPPORTED_LANGUAGES` (see module docstring)."""
    c = script_counts(text)
    if c["kana"]:
        return "ja"
    if c["hangul"]:
        return "ko"
    if c["han"]:
        return "zh"
    if c["other"] > c["latin"]:
        raise UnsupportedLanguageError("auto", f"the text is written in {_other_script(text)} script")
    if c["latin"]:
        return detect_latin(text)
    if c["digit"]:
        return "en"
    raise NoPhonesError(text, "auto")
