"""Lazy imports of optional metric backends, with one-line messages naming the pip package."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MetisError

__all__ = ["EvalError", "BackendMissingError", "need"]


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
