"""Sentences from local sources only, split by a hash so train and test never share one.

Sources:

* ``generated``: a small grammar of project-written templates and word lists (millions of
  distinct, readable sentences; always available, the same on every machine);
* ``fortunes``: Debian ``fortunes``/``fortunes-min`` (``/usr/share/games/fortunes``), cut into
  plain single sentences;
* ``dict``: word lists (``/usr/share/dict/words``) read in carrier sentences
  ("Please say the word harbour again.").

Every sentence is assigned to ``train``/``dev``/``test`` by a hash of its normalised text
(:func:`text_split`), whatever source, seed or corpus size produced it, so a sentence can
never occur in two splits. :class:`SentenceStream` yields distinct sentences of one split.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set

__all__ = ["normalize_text", "text_split", "SentenceStream", "available_sources", "resolve_sources", "ALL_SOURCES"]

ALL_SOURCES = ("generated", "fortunes", "dict")
FORTUNE_DIR = Path("/usr/share/games/fortunes")
DICT_FILES = (Path("/usr/share/dict/words"), Path("/usr/share/dict/american-english"))

_SPLIT_THRESHOLDS = (("train", 880), ("dev", 920), ("test", 1000))  # per mille of sentence space


def normalize_text(text: str) -> str:
    """Lower case, letters/digits/apostrophes only, single spaces (for comparing sentences)."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def text_split(text: str) -> str:
    """The split a sentence belongs to, from a hash of its normalised text."""
    h = int.from_bytes(hashlib.sha1(normalize_text(text).encode()).digest()[:4], "big") % 1000
    for split, upper in _SPLIT_THRESHOLDS:
        if h < upper:
            return split
    raise AssertionError


# --------------------------------------------------------------------------- grammar
_PEOPLE = (
    "the farmer", "my neighbour", "the old sailor", "a young teacher", "the baker", "her brother",
    "the doctor", "our guide", "the little girl", "a tired driver", "the captain", "his mother",
    "the gardener", "a quiet student", "the mayor", "my grandfather", "the nurse", "a tall stranger",
    "the painter", "the shop keeper", "her cousin", "the pilot", "a friendly waiter", "the judge",
    "the fisherman", "my aunt", "the musician", "a careful engineer", "the twins", "the children",
    "the young poet", "an old friend", "the carpenter", "the librarian", "our teacher", "the singer",
)
_THINGS = (
    "a heavy basket", "the red umbrella", "a warm blanket", "the broken clock", "an old map",
    "the silver key", "a bag of apples", "the wooden chair", "a long letter", "the blue kettle",
    "a loaf of bread", "the small boat", "a box of candles", "the green bottle", "a pair of boots",
    "the yellow kite", "a bunch of flowers", "the iron gate", "a jar of honey", "the paper lantern",
    "a bowl of soup", "the leather bag", "a cup of tea", "the garden hose", "a stack of books",
    "the glass vase", "a new bicycle", "the fishing net", "a bright lamp", "the wicker chair",
    "a sack of flour", "the copper pan", "a painted sign", "the winter coat", "a piece of chalk",
)
_PLACES = (
    "the market", "the station", "the harbour", "the old church", "the village square", "the library",
    "the bakery", "the river bank", "the top of the hill", "the school yard", "the post office",
    "the kitchen", "the barn", "the museum", "the bridge", "the garden", "the beach", "the city hall",
    "the corner shop", "the train platform", "the forest path", "the farm house", "the music hall",
    "the hospital", "the bus stop", "the quiet lake", "the mountain hut", "the castle wall",
)
_TIMES = (
    "before sunrise", "after lunch", "in the evening", "on a rainy morning", "late at night",
    "every Sunday", "at noon", "during the storm", "in early spring", "last winter", "yesterday",
    "at the end of the day", "on Friday", "after the long meeting", "in the middle of summer",
    "before the sun went down", "this afternoon", "at half past seven", "on the first of May",
)
_VERBS_OBJ = (
    "carried", "found", "painted", "repaired", "sold", "borrowed", "hid", "dropped", "cleaned",
    "bought", "forgot", "wrapped", "lifted", "opened", "moved", "returned", "washed", "packed",
    "noticed", "left", "brought", "showed us", "handed me", "lost",
)
_VERBS_PLACE = (
    "walked to", "hurried to", "drove to", "ran back to", "wandered around", "waited near",
    "came home from", "looked for a seat at", "sang a song at", "rested outside", "sailed towards",
)
_ADJ = (
    "quiet", "bright", "cold", "busy", "empty", "crowded", "peaceful", "noisy", "warm", "dark",
    "lovely", "strange", "windy", "small", "cheerful", "gloomy", "clean", "old",
)
_ADV = ("slowly", "quickly", "carefully", "quietly", "happily", "suddenly", "gently", "proudly", "calmly")
_WEATHER = (
    "the sky turned grey", "the wind began to blow", "it started to snow", "the rain stopped",
    "the clouds drifted away", "the sun came out", "a cold fog rolled in", "the air smelled of pine",
)
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty", "forty")
_NOUNS_PLURAL = ("apples", "letters", "chairs", "boats", "books", "candles", "birds", "cups", "coins", "lamps", "shirts", "stones")


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _generated_sentence(rng: random.Random) -> str:
    c = rng.choice
    templates = (
        lambda: f"{_cap(c(_PEOPLE))} {c(_VERBS_OBJ)} {c(_THINGS)} to {c(_PLACES)} {c(_TIMES)}.",
        lambda: f"{_cap(c(_TIMES))}, {c(_PEOPLE)} {c(_ADV)} {c(_VERBS_PLACE)} {c(_PLACES)}.",
        lambda: f"{_cap(c(_PLACES))} was {c(_ADJ)} when {c(_PEOPLE)} arrived with {c(_THINGS)}.",
        lambda: f"Did {c(_PEOPLE)} really leave {c(_THINGS)} at {c(_PLACES)}?",
        lambda: f"Please bring {c(_THINGS)} to {c(_PLACES)} {c(_TIMES)}.",
        lambda: f"{_cap(c(_PEOPLE))} said that {c(_WEATHER)} {c(_TIMES)}.",
        lambda: f"We counted {c(_NUMBERS)} {c(_NOUNS_PLURAL)} near {c(_PLACES)}, and {c(_PEOPLE)} laughed.",
        lambda: f"{_cap(c(_WEATHER))}, so {c(_PEOPLE)} {c(_ADV)} {c(_VERBS_PLACE)} {c(_PLACES)}.",
        lambda: f"Why did {c(_PEOPLE)} take {c(_THINGS)} to {c(_PLACES)}?",
        lambda: f"{_cap(c(_PEOPLE))} {c(_ADV)} {c(_VERBS_OBJ)} {c(_THINGS)}, and then {c(_WEATHER)}.",
        lambda: f"It was a {c(_ADJ)} day at {c(_PLACES)}, and {c(_PEOPLE)} {c(_VERBS_OBJ)} {c(_THINGS)}.",
        lambda: f"Nobody expected {c(_PEOPLE)} to find {c(_THINGS)} behind {c(_PLACES)}.",
        lambda: f"Remember to ask {c(_PEOPLE)} about {c(_THINGS)} {c(_TIMES)}.",
        lambda: f"{_cap(c(_PEOPLE))} and {c(_PEOPLE)} met at {c(_PLACES)} {c(_TIMES)}.",
    )
    return c(templates)()


_CARRIERS = (
    "Please say the word {w} again.", "The next word on the list is {w}.", "Now write the word {w} clearly.",
    "I will spell the word {w} for you.", "Can you read the word {w} out loud?", "The word {w} was printed in bold.",
)


@functools.lru_cache(maxsize=None)
def _read_fortunes() -> List[str]:
    out: List[str] = []
    if not FORTUNE_DIR.is_dir():
        return out
    for path in sorted(FORTUNE_DIR.iterdir()):
        if path.suffix or not path.is_file():  # skip .dat/.u8 indexes
            continue
        try:
            raw = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for entry in raw.split("\n%\n"):
            if any(line.startswith((" ", "\t")) for line in entry.splitlines()):
                continue  # verse, code, dialogue layouts
            flat = " ".join(entry.split())
            for sent in re.split(r"(?<=[.!?])\s+", flat):
                if re.fullmatch(r"[A-Z][A-Za-z ,;'\-]*[a-z][.!?]", sent) and 4 <= len(sent.split()) <= 18 and "--" not in sent:
                    out.append(sent)
    return sorted(set(out))


@functools.lru_cache(maxsize=None)
def _read_dict_words() -> List[str]:
    for path in DICT_FILES:
        if path.is_file():
            words = path.read_text(encoding="utf-8", errors="replace").split()
            return sorted({w for w in words if re.fullmatch(r"[a-z]{4,10}", w)})
    return []


def available_sources() -> List[str]:
    """The text sources present on this machine (``generated`` always is)."""
    out = ["generated"]
    if _read_fortunes():
        out.append("fortunes")
    if _read_dict_words():
        out.append("dict")
    return out


def resolve_sources(spec: str) -> List[str]:
    """``auto`` -> every available source; else a comma list checked for availability."""
    from .config import CorpusError

    if spec == "auto":
        return available_sources()
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in names if s not in ALL_SOURCES]
    if unknown or not names:
        raise CorpusError(f"unknown text source(s) {', '.join(unknown) or spec!r}; choose from {', '.join(ALL_SOURCES)} or auto")
    have = available_sources()
    missing = [s for s in names if s not in have]
    if missing:
        hint = {"fortunes": "apt-get install fortunes-min", "dict": "apt-get install wamerican"}
        raise CorpusError(f"text source {missing[0]} is not installed here ({hint[missing[0]]})")
    return names


class SentenceStream:
    """Distinct sentences of one split, drawn deterministically from ``rng_seed``.

    Each draw picks a source by weight (fortunes 10 %, dict carriers 10 %, the grammar
    the rest; a source that runs dry falls back to the grammar), rejects sentences of other
    splits and repeats. ``exclude`` (normalised texts) are never returned either.
    """

    WEIGHTS: Dict[str, float] = {"generated": 0.8, "fortunes": 0.1, "dict": 0.1}

    def __init__(self, split: str, rng_seed: str, sources: Sequence[str], exclude: Optional[Set[str]] = None):
        self.split = split
        self.rng = random.Random(rng_seed)
        self.sources = list(sources)
        self.used: Set[str] = set(exclude or ())
        self._fortunes: List[str] = []
        if "fortunes" in self.sources:
            self._fortunes = [s for s in _read_fortunes() if text_split(s) == split]
            random.Random(rng_seed + "/fortunes").shuffle(self._fortunes)
        self._words = _read_dict_words() if "dict" in self.sources else []

    def _candidate(self) -> str:
        r = self.rng.random()
        if "fortunes" in self.sources and r < self.WEIGHTS["fortunes"] and self._fortunes:
            return self._fortunes.pop()
        if "dict" in self.sources and r >= 1 - self.WEIGHTS["dict"] and self._words:
            return self.rng.choice(_CARRIERS).format(w=self.rng.choice(self._words))
        return _generated_sentence(self.rng)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        for _ in range(100000):
            s = self._candidate()
            key = normalize_text(s)
            if key in self.used or text_split(s) != self.split:
                continue
            self.used.add(key)
            return s
        raise RuntimeError(f"could not draw another distinct {self.split} sentence")
