"""Mandarin: Chinese characters -> tone-marked phones of the official vocabulary.

Pipeline: Arabic numbers to Chinese numerals (cn2an), CJK punctuation to ASCII, words with
jieba, readings with pypinyin (its phrase dictionary settles most polyphones), tone sandhi
inside words (third tone, 不, 一, 儿), then each syllable becomes its initial and its
tone-marked final. Tones are written as arrows on the final: 1 ``→``, 2 ``↑``, 3 ``↓↑``,
4 ``↓``, neutral none; e.g. 你好 -> ``n i↑ x ɑʊ↓↑`` (with third-tone sandhi on 你).

The reference disambiguates polyphones with a BERT classifier and a lexicon that are not
available here; pypinyin's phrase readings stand in for them, so rare polyphones may get a
different tone. Latin letters are not read here: mixed text is split into Chinese and
English runs by :mod:`.tokenizer`.
"""

from __future__ import annotations

import re
import warnings
from functools import lru_cache
from typing import List, Tuple

from .errors import BackendUnavailableError

INITIALS = {
    "b": "p⁼", "p": "pʰ", "m": "m", "f": "f", "d": "t⁼", "t": "tʰ", "n": "n", "l": "l",
    "g": "k⁼", "k": "kʰ", "h": "x", "j": "tʃ⁼", "q": "tʃʰ", "x": "ʃ",
    "zh": "ts`⁼", "ch": "ts`ʰ", "sh": "s`", "r": "ɹ`", "z": "ts⁼", "c": "tsʰ", "s": "s",
}
FINALS = {
    "a": "a", "o": "o", "e": "ə", "ê": "ɛ", "ai": "aɪ", "ei": "eɪ", "ao": "ɑʊ", "ou": "oʊ",
    "an": "an", "en": "ən", "ang": "ɑŋ", "eng": "əŋ", "er": "əɹ", "ong": "ʊŋ",
    "i": "i", "ia": "ia", "ie": "iɛ", "iao": "iɑʊ", "iou": "ioʊ", "ian": "jɛn", "in": "in",
    "iang": "iɑŋ", "ing": "iŋ", "iong": "jʊŋ",
    "u": "u", "ua": "ua", "uo": "uo", "uai": "uaɪ", "uei": "ueɪ", "uan": "uan", "uen": "uən",
    "uang": "uɑŋ", "ueng": "ʊŋ",
    "ü": "ɥ", "üe": "ɥɛ", "üan": "ɥæn", "ün": "ɥn",
    "n": "ən", "ng": "əŋ", "m": "m",  # interjections 嗯, 呣
}
TONE_MARKS = {"1": "→", "2": "↑", "3": "↓↑", "4": "↓", "5": "", "0": ""}
# Syllable-initial y/w spelled out as the medial they stand for.
_YW = {
    "yi": "i", "ya": "ia", "ye": "ie", "yao": "iao", "you": "iou", "yan": "ian", "yin": "in",
    "yang": "iang", "ying": "ing", "yong": "iong", "yo": "io", "yu": "ü", "yue": "üe",
    "yuan": "üan", "yun": "ün", "wu": "u", "wa": "ua", "wo": "uo", "wai": "uai", "wei": "uei",
    "wan": "uan", "wen": "uen", "wang": "uang", "weng": "ueng",
}
_SHORT = {"iu": "iou", "ui": "uei", "un": "uen"}
_RETROFLEX_OR_DENTAL = ("zh", "ch", "sh", "r", "z", "c", "s")
_LABIAL_O = {"b", "p", "m", "f"}
_NOT_ER_WORDS = {"女儿", "老儿", "男儿", "少儿", "小儿"}
_NUMERALS = set("零一二三四五六七八九十")
_PUNCT_MAP = (("，", ","), ("。", "."), ("！", "!"), ("？", "?"), ("；", ";"), ("：", ":"), ("、", ","),
              ("‘", "'"), ("’", "'"), ("⋯", "…"), ("···", "…"), ("・・・", "…"), ("...", "…"))


def syllable_phones(syllable: str) -> List[str]:
    """``"zhong1"`` -> ``["ts`⁼", "ʊŋ→"]``; ``"shi4"`` -> ``["s`ɹ↓"]``; ``"bo2"`` -> ``["p⁼wo↑"]``."""
    m = re.fullmatch(r"([a-zü]+)([0-5]?)", syllable.replace("v", "ü"))
    if not m:
        return []
    body, tone = m.group(1), TONE_MARKS[m.group(2) or "5"]
    if body in _YW:
        initial, final = "", _YW[body]
    else:
        initial = next((i for i in ("zh", "ch", "sh") if body.startswith(i)), body[:1] if body[:1] in INITIALS else "")
        final = body[len(initial):]
        if initial in ("j", "q", "x") and final.startswith("u"):
            final = "ü" + final[1:]
        final = _SHORT.get(final, final)
    if initial in _RETROFLEX_OR_DENTAL and final == "i":
        return [INITIALS[initial] + "ɹ" + tone]
    if initial in _LABIAL_O and final == "o":
        return [INITIALS[initial] + "wo" + tone]
    if final == "io":  # 哟: no single symbol; i then o
        return ([INITIALS[initial]] if initial else []) + ["i", "o" + tone]
    if final not in FINALS:
        return []
    return ([INITIALS[initial]] if initial else []) + [FINALS[final] + tone]


# ---- tone sandhi inside a word ---------------------------------------------------------------


def _set(tones: List[str], i: int, tone: str) -> None:
    if 0 <= i < len(tones):
        tones[i] = tone


def sandhi(word: str, tones: List[str]) -> List[str]:
    """Tone digits of ``word`` after third-tone, 不, 一 and 儿 sandhi."""
    tones = list(tones)
    n = len(word)
    if n == 2 and tones[0] == "3" and tones[1] == "3":
        tones[0] = "2"
    # 不: neutral between repeated words (看不看), second tone before a fourth tone.
    if n == 3 and word[1] == "不" and word[0] == word[2]:
        _set(tones, 1, "5")
    elif set(word) != {"不"}:
        for i, ch in enumerate(word[:-1]):
            if ch == "不" and i + 1 < len(tones) and tones[i + 1] == "4":
                tones[i] = "2"
    # 一: first tone in numbers, ordinals and dates; neutral in X一X; else 2 before 4, 4 before others.
    if "一" in word:
        if any(c.isnumeric() for c in word if c != "一"):  # inside a number: first tone,
            for i, ch in enumerate(word):                    # except a leading 一 before a measure word
                if ch != "一":
                    continue
                if i == 0 and n > 1 and word[1] not in _NUMERALS:
                    tones[0] = "2" if tones[1] in ("4", "5") else "4"
                else:
                    tones[i] = "1"
        elif n == 3 and word[1] == "一" and word[0] == word[2]:
            _set(tones, 1, "5")
        elif word.startswith("第一"):
            _set(tones, 1, "1")
        elif word[:2] in ("一月", "一日", "一号"):
            tones[0] = "1"
        else:
            for i, ch in enumerate(word[:-1]):
                if ch == "一":
                    tones[i] = "2" if tones[i + 1] == "4" else "4"
    if n > 1 and word.endswith("儿") and word not in _NOT_ER_WORDS:
        tones[-1] = "5"
    return tones


def _merge_words(words: List[str]) -> List[str]:
    """Join X一X, 一 + next word, 不 + next word and a trailing 儿 into one word."""
    out: List[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "一" and out and i + 1 < len(words) and words[i + 1] == out[-1]:
            out[-1] = out[-1] + "一" + words[i + 1]
            i += 2
            continue
        if w in ("一", "不") and i + 1 < len(words) and re.match(r"[\u4e00-\u9fff]", words[i + 1]):
            out.append(w + words[i + 1])
            i += 2
            continue
        if w == "儿" and out:
            out[-1] += w
        else:
            out.append(w)
        i += 1
    return out


@lru_cache(maxsize=1)
def _libs() -> Tuple[object, object, object]:
    try:
        with warnings.catch_warnings():  # jieba imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import jieba
        from pypinyin import Style, lazy_pinyin
    except ImportError:
        raise BackendUnavailableError("Chinese needs jieba and pypinyin; pip install jieba pypinyin") from None
    jieba.setLogLevel(60)
    try:
        import cn2an
    except ImportError:
        cn2an = None
    return jieba, (lazy_pinyin, Style), cn2an


def normalize(text: str) -> str:
    """Numbers to Chinese numerals, punctuation to ASCII, everything but Han and punctuation removed."""
    _, _, cn2an = _libs()
    text = text.strip()
    if cn2an is not None:
        try:
            text = cn2an.transform(text, "an2cn")
        except Exception:  # noqa: BLE001 - cn2an fails on odd number formats; read them as they are
            pass
    for a, b in _PUNCT_MAP:
        text = text.replace(a, b)
    text = re.sub(r"\s+", "", text)
    text = re.sub(r"[^\u4e00-\u9fff_,.?!;:'…]", "", text)
    return re.sub(r"\s*([,.?!;:'…])\s*", r"\1", text)


def phones(text: str) -> List[str]:
    """Chinese text -> phone symbols (no word boundaries; punctuation kept).

    Latin letters are dropped here; :mod:`.tokenizer` routes them to English.
    """
    jieba, (lazy_pinyin, Style), _ = _libs()
    out: List[str] = []
    for word in _merge_words(jieba.lcut(normalize(text), cut_all=False)):
        if not re.search(r"[\u4e00-\u9fff]", word):
            out += [c for c in word if c in ",.?!;:'…"]
            continue
        syllables = lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)
        if len(syllables) != len(word):  # a character without reading: read syllables as they are
            for s in syllables:
                out += syllable_phones(s)
            continue
        tones = sandhi(word, [s[-1] if s[-1].isdigit() else "5" for s in syllables])
        for s, t in zip(syllables, tones):
            out += syllable_phones(re.sub(r"\d$", "", s) + t)
    return out
