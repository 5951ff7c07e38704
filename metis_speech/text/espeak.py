"""espeak-ng through phonemizer, with the settings of the MaskGCT / Metis reference G2P.

The reference phonemizes each language with phonemizer's espeak back end: no stress marks,
no tie bars, punctuation ``, . ? ! ; : ' …`` preserved, language-switch flags removed, word
separator ``_`` and one phone per ``|``-separated item. Before that it maps CJK punctuation
to ASCII, deletes every other symbol and glues punctuation to its neighbours (so a comma
replaces the word boundary instead of adding to it). This module reproduces that behaviour
and returns a list of phone symbols, ``"_"`` between words.

Differences from the reference, both on by default and both about pronouncing the same
sounds: an apostrophe inside a word ("don't", "m'appelle") stays inside the word instead of
splitting it into two separately read halves; line breaks act as spaces.

Back ends are created lazily, one per language, so a missing voice only breaks the language
that needs it (the reference builds all six at import time and fails on any missing one).

The espeak-ng library (:func:`library`): one configured for phonemizer
(``PHONEMIZER_ESPEAK_LIBRARY`` or ``EspeakWrapper.set_library``), else the system's
(``apt-get install espeak-ng``, ``brew install espeak-ng``), else the one the
``espeakng-loader`` pip package ships with its voice data (a dependency, so ``pip install``
alone makes every espeak language work).
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

from .errors import BackendUnavailableError

VOICES: Dict[str, str] = {"en": "en-us", "fr": "fr-fr", "de": "de", "ko": "ko"}
"""espeak-ng voice of each language the reference phonemizes with espeak-ng."""

PUNCTUATION = ",.?!;:'…"
"""Punctuation kept as phone symbols (each is in the official vocabulary)."""

_CJK_PUNCT = (
    ("，", ","), ("。", "."), ("！", "!"), ("？", "?"), ("；", ";"), ("：", ":"), ("、", ","),
    ("‘", "'"), ("’", "'"), ("⋯", "…"), ("···", "…"), ("・・・", "…"), ("...", "…"),
)
_INNER_APOSTROPHE = "\u2019"  # espeak-ng reads "don’t" as one word; phonemizer does not split at it
_DROP = re.compile(r"[^\w\s_,.?!;:'…\u2019]")
_GLUE = re.compile(r"\s*([,.?!;:'…])\s*")
_SPACES = re.compile(r"\s+")
_WRAP = re.compile(r"([,.?!;:'…])")
_BARS = re.compile(r"\|+")

_lock = threading.Lock()
_backends: Dict[str, object] = {}
_quiet = logging.getLogger("metis_speech.text.phonemizer")
_quiet.setLevel(logging.ERROR)


@dataclass(frozen=True)
class Library:
    """The espeak-ng library phonemizer uses: ``kind`` is ``configured``, ``system``, ``pip``
    (the espeakng-loader package) or ``missing``; ``path`` the library (and ``data`` its voice
    data folder when it is not the library's built-in one)."""

    kind: str
    path: str = ""
    data: str = ""

    def describe(self) -> str:
        if self.kind == "missing":
            return "espeak-ng: not found (neither a system library nor the espeakng-loader package)"
        where = {"configured": "configured for phonemizer", "system": "system library",
                 "pip": "from the espeakng-loader package"}[self.kind]
        return f"espeak-ng: {where} ({self.path})"


_library: Optional[Library] = None
_SYSTEM_NAMES = ("espeak-ng", "espeak", "libespeak-ng")


def _find_library() -> Library:
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    configured = getattr(EspeakWrapper, "_ESPEAK_LIBRARY", None) or os.environ.get("PHONEMIZER_ESPEAK_LIBRARY")
    if configured:
        return Library("configured", str(configured))
    for name in _SYSTEM_NAMES:
        found = ctypes.util.find_library(name)
        if found:
            return Library("system", found)
    try:
        import espeakng_loader
    except ImportError:
        return Library("missing")
    try:
        lib, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return Library("missing")
    if not os.path.isfile(lib):
        return Library("missing")
    EspeakWrapper.set_library(lib)
    EspeakWrapper.set_data_path(data)
    return Library("pip", lib, data)


def library() -> Library:
    """The espeak-ng library phonemizer will use here, chosen once (see the module docstring).

    Choosing the pip-shipped one points phonemizer at it (``EspeakWrapper.set_library`` and
    ``set_data_path``); a system library is left to phonemizer's own lookup."""
    global _library
    with _lock:
        if _library is None:
            try:
                _library = _find_library()
            except ImportError:  # phonemizer itself is missing; backend() says so
                return Library("missing")
        return _library


def _install_hint() -> str:
    return "pip install espeakng-loader (or apt-get install espeak-ng)"


def clean_for_espeak(text: str, keep_contractions: bool = True) -> str:
    """The reference's pre-phonemizer clean-up of one line (see module docstring)."""
    text = text.strip()
    for a, b in _CJK_PUNCT:
        text = text.replace(a, b)
    if keep_contractions:
        text = re.sub(r"(?<=\w)'(?=\w)", _INNER_APOSTROPHE, text)
    else:
        text = text.replace(_INNER_APOSTROPHE, "'")
    text = _DROP.sub("", text)
    text = _GLUE.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def backend(language: str):
    """The phonemizer back end of ``language`` (created once, then cached)."""
    voice = VOICES.get(language)
    if voice is None:
        raise BackendUnavailableError(f"no espeak-ng voice is used for language {language!r}; espeak languages: {', '.join(VOICES)}")
    with _lock:
        if language in _backends:
            return _backends[language]
    try:
        from phonemizer.backend import EspeakBackend
    except ImportError:
        raise BackendUnavailableError(
            f"language {language!r} needs the phonemizer package; pip install phonemizer espeakng-loader"
        ) from None
    lib = library()
    with _lock:
        if language in _backends:
            return _backends[language]
        try:
            supported = EspeakBackend.is_supported_language(voice)
        except RuntimeError as e:  # the espeak-ng shared library itself is missing
            raise BackendUnavailableError(
                f"language {language!r} needs espeak-ng, which is not usable here "
                f"({str(e).splitlines()[0]}); {_install_hint()}"
            ) from None
        if not supported:
            raise BackendUnavailableError(
                f"espeak-ng ({lib.kind}) has no voice {voice!r} for language {language!r}; install the full "
                f"espeak-ng data ({_install_hint()}) or use another language"
            )
        engine = EspeakBackend(
            voice,
            punctuation_marks=PUNCTUATION,
            preserve_punctuation=True,
            with_stress=False,
            tie=False,
            language_switch="remove-flags",
            words_mismatch="ignore",
            logger=_quiet,
        )
        _backends[language] = engine
        return engine


def phonemize(text: str, language: str, keep_contractions: bool = True) -> List[str]:
    """Phones of ``text`` in ``language`` as the reference's espeak path produces them.

    Returns symbols such as ``["h", "ə", "l", "oʊ", "_", "w", "ɜː", "l", "d", "."]``; ``"_"``
    separates words except where punctuation already does.
    """
    lines = [clean_for_espeak(line, keep_contractions) for line in text.splitlines()]
    line = " ".join(x for x in lines if x)
    if not line:
        return []
    engine = backend(language)
    with _lock:
        out = engine.phonemize([line], separator=_separator(), strip=True, njobs=1)
    joined = _WRAP.sub(r"|\1|", out[0] if out else "")
    joined = _BARS.sub("|", joined).strip("|")
    return [p for p in joined.split("|") if p]


_SEP = None


def _separator():
    global _SEP
    if _SEP is None:
        from phonemizer.separator import Separator

        _SEP = Separator(word="|_|", syllable="-", phone="|")
    return _SEP


def available(language: str) -> bool:
    """Whether espeak-ng can phonemize ``language`` here (creates the back end if it can)."""
    try:
        backend(language)
    except BackendUnavailableError:
        return False
    return True


def reset() -> None:
    """Forget the cached back ends and the library choice (tests, or after installing a voice
    or library)."""
    global _library
    with _lock:
        _backends.clear()
        if _library is not None and _library.kind == "pip":  # undo what library() configured
            from phonemizer.backend.espeak.wrapper import EspeakWrapper

            EspeakWrapper.set_library(None)
            EspeakWrapper.set_data_path(None)
        _library = None
