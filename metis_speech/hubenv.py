"""Where the Hugging Face cache is, and whether the network may be used (HF_HUB_OFFLINE).

The lowest layer of everything that fetches official files (:mod:`.hub`, the w2v-BERT
statistics in :mod:`.models.ssl`, the phone vocabulary in :mod:`.text.vocab`); it imports
nothing of the package.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["hub_cache_dir", "metis_cache_dir", "offline"]

_TRUE = ("1", "true", "yes", "on")


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache, read at call time (HF_HUB_CACHE, else HF_HOME/hub, else
    huggingface_hub's default)."""
    env = os.environ.get("HF_HUB_CACHE")
    if env:
        return Path(env)
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - a declared dependency
        return Path.home() / ".cache" / "huggingface" / "hub"


def metis_cache_dir() -> Path:
    """metis-speech's own folder in the Hub cache (files that are not on the Hub)."""
    return hub_cache_dir() / "metis_speech"


def offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids network access, read from the environment at call time
    (huggingface_hub's own constant is frozen when it is first imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
