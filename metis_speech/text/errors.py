"""Errors of the text front end: one line each, saying what is wrong and what is accepted."""

from __future__ import annotations

from ..errors import MetisError

SUPPORTED_LANGUAGES = ("en", "zh", "ja", "ko", "fr", "de")
"""Languages of the official phone vocabulary, in the order the paper lists them."""


class TextError(MetisError):
    """Base class of the text front end's input errors."""


class EmptyTextError(TextError):
    """The text is empty or only whitespace."""

    def __init__(self, what: str = "text") -> None:
        super().__init__(f"{what} is empty or only whitespace; give at least one word to speak")


class NoPhonesError(TextError):
    """The text has characters but none of them can be pronounced in the chosen language."""

    def __init__(self, text: str, language: str) -> None:
        shown = text if len(text) <= 40 else text[:37] + "..."
        where = "" if language == "auto" else f" in language {language!r}"
        super().__init__(
            f"text {shown!r} yields no phones{where}; give words written in that language "
            f"(letters and digits count, punctuation and symbols alone do not)"
        )


class UnsupportedLanguageError(TextError):
    """A language code (or a detected language) the phone vocabulary does not cover."""

    def __init__(self, language: str, detail: str = "") -> None:
        supported = f"supported: {', '.join(SUPPORTED_LANGUAGES)} or 'auto'"
        if language == "auto":
            msg = f"could not detect a supported language: {detail}; {supported}"
        else:
            extra = f" ({detail})" if detail else ""
            msg = f"language {language!r} is not supported{extra}; {supported}"
        super().__init__(msg)


class BackendUnavailableError(TextError):
    """A G2P back end (espeak-ng, one of its voices, or a Chinese/Japanese library) is missing.

    Raised lazily, for the one language that needs it, so other languages keep working.
    """
