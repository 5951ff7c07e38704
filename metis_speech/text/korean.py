"""Korean: normalisation before espeak-ng (ko).

As the reference does: Hanja are dropped, Latin words written in capitals are read as
their Korean letter names (``"AI"`` -> 에이아이) or a known Korean reading, other Latin text
is lower-cased and left to espeak-ng, which also reads the digits.
"""

from __future__ import annotations

import re
from typing import List

from . import espeak

LETTER_NAMES = dict(zip(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "에이 비 씨 디 이 에프 지 에이치 아이 제이 케이 엘 엠 엔 오 피 큐 알 에스 티 유 브이 더블유 엑스 와이 제트".split(),
))
WORD_READINGS = {
    "KOREA": "코리아", "IDOL": "아이돌", "UP": "업", "DOWN": "다운", "CCTV": "씨씨티비",
}
_HANJA = re.compile(r"[\u2e80-\u2fdf\u3005\u3007\u3021-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _latin(m: "re.Match[str]") -> str:
    word = m.group(0)
    if word in WORD_READINGS:
        return WORD_READINGS[word]
    if word.isupper():
        return "".join(LETTER_NAMES[c] for c in word)
    return word


def normalize(text: str) -> str:
    text = _HANJA.sub("", text.strip())
    text = re.sub(r"[A-Za-z]+", _latin, text)
    text = text.replace("%", " 퍼센트").replace("&", " 앤드 ")
    return text.lower()


def phones(text: str, keep_contractions: bool = True) -> List[str]:
    """Korean text -> phone symbols (``"_"`` between words, punctuation kept)."""
    return espeak.phonemize(normalize(text), "ko", keep_contractions=keep_contractions)
