"""User-facing errors: each carries a one-line message that says what is wrong.

The CLI prints ``error: <message>`` for any :class:`MetisError` and exits with status 2,
never a traceback.
"""


class MetisError(Exception):
    """Base class of every error the package raises on bad input."""


class CheckpointError(MetisError):
    """A weight file is missing, truncated, of the wrong kind, or does not match its config."""


class AudioError(MetisError):
    """An audio file cannot be read, is empty, silent or non-finite."""


class HubError(MetisError):
    """Official files could not be fetched from the Hugging Face Hub."""
