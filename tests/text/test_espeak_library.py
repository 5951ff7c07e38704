"""Which espeak-ng library the text front end uses: the system's when there is one, else the
one the espeakng-loader pip package ships, else a one-line error saying how to get one.

Each case runs in a fresh interpreter: a process keeps the first espeak-ng library it loads.
"""

import ctypes.util
import json
import subprocess
import sys

import pytest

PROBE = """
import builtins, ctypes.util, json, os, sys
hide_system, hide_pip = sys.argv[1] == "1", sys.argv[2] == "1"
os.environ.pop("PHONEMIZER_ESPEAK_LIBRARY", None)
real = ctypes.util.find_library
if hide_system:
    ctypes.util.find_library = lambda name: None if "espeak" in name else real(name)
if hide_pip:
    real_import = builtins.__import__
    def no_loader(name, *a, **k):
        if name == "espeakng_loader":
            raise ImportError("hidden")
        return real_import(name, *a, **k)
    builtins.__import__ = no_loader
from metis_speech.text import BackendUnavailableError, espeak, text_to_phones
out = {"kind": espeak.library().kind, "path": espeak.library().path}
try:
    out["phones"] = text_to_phones("Hello world.", "en")
except BackendUnavailableError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def probe(hide_system: bool, hide_pip: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, str(int(hide_system)), str(int(hide_pip))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _have_pip_espeak() -> bool:
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_pip_espeak(), reason="espeakng-loader (a dependency) is not installed")
def test_pip_library_when_no_system_one():
    got = probe(hide_system=True, hide_pip=False)
    assert got["kind"] == "pip" and "espeakng_loader" in got["path"]
    assert got["phones"] == ["h", "ə", "l", "oʊ", "_", "w", "ɜː", "l", "d", "."]


@pytest.mark.skipif(ctypes.util.find_library("espeak-ng") is None, reason="no system espeak-ng library here")
def test_system_library_is_kept_when_present():
    got = probe(hide_system=False, hide_pip=False)
    assert got["kind"] == "system"
    assert got["phones"][:4] == ["h", "ə", "l", "oʊ"]


def test_neither_is_one_line_with_the_pip_fix():
    got = probe(hide_system=True, hide_pip=True)
    assert got["kind"] == "missing"
    assert "\n" not in got["error"] and "pip install espeakng-loader" in got["error"]
