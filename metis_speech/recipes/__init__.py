"""Training recipes: one YAML per stage/task and size (see ``metis_speech.training.trainer``).

``*_tiny`` recipes train the ``tiny`` preset on synthetic data (tokens, features, audio or
mouth crops: CPU smoke runs, tests); the others use the ``official`` sizes and expect real
data (``data.path``, or ``data.sources``: several weighted shard folders, e.g. the omni task
mixture): token shards from ``metis prepare``, audio for the acoustic codec, feature or
visual shards for the semantic codec and the visual encoder. Run one with
``metis train <name or path>``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..config import ConfigError

__all__ = ["list_recipes", "recipe_path"]


def list_recipes() -> list:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    """Path of the packaged recipe ``name`` (with or without ``.yaml``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = Path(str(resources.files(__name__) / f"{stem}.yaml"))
    if not path.is_file():
        raise ConfigError(f"no config file or recipe named {name!r}; recipes: {list_recipes()}")
    return path
