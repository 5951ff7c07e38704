"""Lazy imports of optional metric backends, with one-line messages naming the pip package."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..errors import MetisError

__all__ = ["EvalError", "BackendMissingError", "need", "check_local", "load_pretrained"]


class EvalError(MetisError):
    """Bad input to the evaluation harness (manifest, folder, metric name, ...)."""


class BackendMissingError(EvalError):
    """A metric backend is not installed, or its weights are not available offline."""


def need(module: str, pip_name: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`BackendMissingError` saying what to install.

    ``what`` names the metric that needs it, e.g. ``need("pesq", "pesq", "PESQ")``.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == "pkg_resources":  # webrtcvad (resemblyzer) on setuptools >= 81
            raise BackendMissingError(
                f"{what} needs pkg_resources, removed in setuptools 81: pip install 'setuptools<81'"
            ) from None
        missing = e.name or module
        hint = pip_name if missing.split(".")[0] == module.split(".")[0] else missing.split(".")[0]
        raise BackendMissingError(
            f"{what} needs the '{hint}' package: pip install {hint} (or pip install 'metis-speech[eval]')"
        ) from None


def check_local(model: str, what: str) -> bool:
    """True when ``model`` names a local folder; raises when it looks like a path that is missing."""
    path = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise BackendMissingError(f"{what}: {model}: no such folder")
    return looks_local


def load_pretrained(load: Callable[..., Any], model: str, what: str, flag: str) -> Any:
    """``load(model)`` for a Hugging Face-style model: a local folder, the local cache, then the Hub.

    Raises :class:`BackendMissingError` naming ``flag`` (the CLI option that takes a local
    folder) when the weights cannot be found.
    """
    looks_local = check_local(model, what)
    path = Path(model).expanduser()
    try:
        return load(str(path) if looks_local else model, local_files_only=True)
    except (OSError, ValueError) as e:
        if looks_local:
            raise BackendMissingError(f"{what}: {model} is not a usable model folder ({type(e).__name__}: {str(e).splitlines()[0][:100]})") from None
    try:  # not in the local cache: try the Hub (fails after its retries when offline)
        return load(model)
    except (OSError, ValueError) as e:
        raise BackendMissingError(
            f"{what} {model!r} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(e).__name__}); pass {flag} with a local folder"
        ) from None
