"""Text front end: text -> phone ids of stage 1 (TTS), and sentence splitting for long text.

>>> from metis_speech.text import PhoneTokenizer
>>> tok = PhoneTokenizer("path/to/vocab.json")          # or None: the official table, fetched
>>> r = tok("Dr. Smith paid $5.", language="en")
>>> r.phone_string, r.ids                               # "d|ɑː|k|t|ɚ|_|s|m|ɪ|θ|...", [30, 12, ...]

Languages: en, zh, ja, ko, fr, de (``language="auto"`` detects them). See
:mod:`.tokenizer` for how each is read and :mod:`.vocab` for the official vocabulary.
"""

from .detect import detect_language, normalize_language
from .errors import (
    SUPPORTED_LANGUAGES,
    BackendUnavailableError,
    EmptyTextError,
    NoPhonesError,
    TextError,
    UnsupportedLanguageError,
)
from .sentences import split_sentences
from .tokenizer import Phonemized, PhoneTokenizer, text_to_phone_ids, text_to_phones, vocab_from_texts
from .vocab import OFFICIAL_SHA256, OFFICIAL_URL, PhoneVocab, VocabError, load_vocab, official_vocab

__all__ = [
    "PhoneTokenizer", "Phonemized", "text_to_phone_ids", "text_to_phones", "vocab_from_texts", "split_sentences",
    "detect_language", "normalize_language", "PhoneVocab", "official_vocab", "load_vocab",
    "OFFICIAL_URL", "OFFICIAL_SHA256", "SUPPORTED_LANGUAGES", "TextError", "EmptyTextError",
    "NoPhonesError", "UnsupportedLanguageError", "BackendUnavailableError", "VocabError",
]
