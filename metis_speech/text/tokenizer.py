"""Text -> phone ids for stage 1 of TTS: the public entry points of the text front end.

``PhoneTokenizer(vocab)("Hello world.", language="en")`` returns a :class:`Phonemized`
with the phone symbols (for debugging) and their ids in the vocabulary. Per language:

- en: :mod:`.english` normalisation, then espeak-ng (en-us); Han characters inside English
  text go through the Chinese path, Latin words inside Chinese text through the English one,
  segment by segment, as the reference does for zh and en;
- fr, de: :mod:`.european`, espeak-ng (fr-fr, de); ko: :mod:`.korean`, espeak-ng (ko);
- zh: :mod:`.mandarin` (jieba + pypinyin, tone-marked phones);
- ja: :mod:`.japanese` (pyopenjtalk readings, mora phones).

Each back end is loaded when a language first needs it, so a missing espeak-ng voice or
library only makes that language fail, with a one-line :class:`BackendUnavailableError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import MetisError
from .detect import detect_language, normalize_language
from .errors import EmptyTextError, NoPhonesError
from .vocab import PhoneVocab, load_vocab

PUNCTUATION = frozenset(",.?!;:'…")
WORD_BOUNDARY = "_"

VocabArg = Union[None, str, "os.PathLike[str]", PhoneVocab, Mapping[str, int]]


@dataclass
class Phonemized:
    """The result of phonemizing one text.

    ``phones``: symbols in order (``"_"`` between words, punctuation kept); ``ids``: their
    ids in the vocabulary (symbols absent from it are dropped, as in the reference, and
    listed in ``unknown``); ``language``: the language used (resolved when ``"auto"``).
    """

    text: str
    language: str
    phones: List[str]
    ids: List[int] = field(default_factory=list)
    unknown: List[str] = field(default_factory=list)

    @property
    def phone_string(self) -> str:
        """``"h|ə|l|oʊ|_|w|ɜː|l|d|."``: the reference's debugging notation."""
        return "|".join(self.phones)

    def __len__(self) -> int:
        return len(self.ids)


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"


def _is_ascii_letter(ch: str) -> bool:
    return ("A" <= ch <= "Z") or ("a" <= ch <= "z")


def zh_en_segments(text: str) -> List[Tuple[str, str]]:
    """Split mixed Chinese/English text into ``(piece, "zh" | "en")`` runs.

    Characters that are neither Han nor ASCII letters (digits, spaces, punctuation) stay
    with the run before them; leading ones join the first run.
    """
    runs: List[Tuple[str, str]] = []
    piece, kind = "", ""
    for ch in text:
        t = "zh" if _is_han(ch) else "en" if _is_ascii_letter(ch) else ""
        if not t or t == kind:
            piece += ch
        elif not kind:
            piece, kind = piece + ch, t
        else:
            runs.append((piece, kind))
            piece, kind = ch, t
    if piece:
        runs.append((piece, kind))
    return runs


class PhoneTokenizer:
    """Text -> phone ids in a phone vocabulary (the official 363-symbol one by default).

    ``vocab``: ``None``/``"official"`` (fetched and checked on first use), a path, a
    :class:`PhoneVocab` or a ``{symbol: id}`` mapping. ``keep_contractions``: keep
    apostrophes inside words ("don't" read as one word); ``False`` reproduces the
    reference, which splits such words at the apostrophe.
    """

    def __init__(self, vocab: VocabArg = None, keep_contractions: bool = True) -> None:
        self._vocab_arg = vocab
        self._vocab: Optional[PhoneVocab] = vocab if isinstance(vocab, PhoneVocab) else None
        self.keep_contractions = keep_contractions

    @property
    def vocab(self) -> PhoneVocab:
        if self._vocab is None:
            self._vocab = load_vocab(self._vocab_arg)
        return self._vocab

    # ---- phones ------------------------------------------------------------------------------

    def phones(self, text: str, language: str = "auto") -> Tuple[List[str], str]:
        """``(phone symbols, resolved language)``; no vocabulary needed."""
        if not isinstance(text, str) or not text.strip():
            raise EmptyTextError()
        lang = normalize_language(language)
        if lang == "auto":
            lang = detect_language(text)
        if lang in ("zh", "en"):
            out = self._zh_en(text, lang)
        elif lang in ("fr", "de"):
            from . import european

            out = european.phones(text, lang, keep_contractions=self.keep_contractions)
        elif lang == "ko":
            from . import korean

            out = korean.phones(text, keep_contractions=self.keep_contractions)
        else:  # ja
            from . import japanese

            out = japanese.phones(text)
        if not any(p not in PUNCTUATION and p != WORD_BOUNDARY for p in out):
            raise NoPhonesError(text.strip(), lang)
        return out, lang

    def _zh_en(self, text: str, lang: str) -> List[str]:
        from . import english

        runs = zh_en_segments(text)
        if not any(kind == "zh" for _, kind in runs):
            return english.phones(text, keep_contractions=self.keep_contractions)
        from . import mandarin

        out: List[str] = []
        for i, (piece, kind) in enumerate(runs):
            if kind == "zh":
                out += mandarin.phones(piece)
            else:  # an English stretch closes with a word boundary unless it ends the text
                out += english.phones(piece, keep_contractions=self.keep_contractions, closing_boundary=i < len(runs) - 1)
        return out

    # ---- ids ---------------------------------------------------------------------------------

    def __call__(self, text: str, language: str = "auto") -> Phonemized:
        phones, lang = self.phones(text, language)
        vocab = self.vocab
        ids = vocab.encode(phones)
        result = Phonemized(text=text, language=lang, phones=phones, ids=ids, unknown=list(vocab.last_unknown))
        if not any(vocab.id_to_symbol[i] not in PUNCTUATION and vocab.id_to_symbol[i] != WORD_BOUNDARY for i in ids):
            raise NoPhonesError(text.strip(), lang)
        return result

    phonemize = __call__

    def text_to_phone_ids(self, text: str, language: str = "auto") -> List[int]:
        return self(text, language).ids


def vocab_from_texts(texts: Iterable[str], language: str = "auto", keep_contractions: bool = True,
                     name: str = "project") -> Tuple[PhoneVocab, dict]:
    """A project-own phone vocabulary: every symbol the front end emits for ``texts``.

    Ids: the punctuation marks, the word boundary, then the phones in sorted order, so the
    same texts always give the same table. Returns ``(vocab, report)``; the report counts
    the texts used and those that gave no phones (skipped)."""
    tok = PhoneTokenizer(vocab={}, keep_contractions=keep_contractions)
    seen, used, skipped = set(), 0, 0
    for text in texts:
        try:
            seen.update(tok.phones(text, language)[0])
            used += 1
        except (EmptyTextError, NoPhonesError):
            skipped += 1
    if not used:
        raise MetisError("no text gave any phones; cannot build a phone vocabulary")
    marks = sorted(PUNCTUATION) + [WORD_BOUNDARY]
    vocab = PhoneVocab.from_symbols(marks + sorted(seen - set(marks)), name=name)
    return vocab, {"texts": used, "skipped": skipped, "symbols": len(vocab)}


def text_to_phone_ids(text: str, language: str = "auto", vocab: VocabArg = None) -> List[int]:
    """Phone ids of ``text`` (see :class:`PhoneTokenizer`)."""
    return PhoneTokenizer(vocab)(text, language).ids


def text_to_phones(text: str, language: str = "auto") -> List[str]:
    """Phone symbols of ``text``, without a vocabulary (for debugging)."""
    return PhoneTokenizer(vocab={}).phones(text, language)[0]
