"""Fixtures of the text front end tests: the shared official vocabulary and back-end checks."""

import shutil

import pytest

from metis_speech.text import PhoneTokenizer, espeak


@pytest.fixture(scope="session")
def vocab_path(shared_dir):
    path = shared_dir / "g2p" / "vocab.json"
    if not path.is_file():
        pytest.skip(f"official phone vocabulary not found at {path}")
    return path


@pytest.fixture(scope="session")
def tok(vocab_path):
    return PhoneTokenizer(vocab_path)


def _espeak_ok(language):
    try:
        espeak.backend(language)
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.fixture(scope="session")
def need_espeak():
    """Skip unless phonemizer and espeak-ng (with the en-us voice) are usable."""
    if not _espeak_ok("en"):
        pytest.skip("phonemizer or espeak-ng (en-us voice) is not installed")


@pytest.fixture(scope="session")
def espeak_cli():
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("the espeak-ng command is not installed")
    return exe


@pytest.fixture(scope="session")
def need_voice():
    """``need_voice("fr")`` skips the test unless espeak-ng can speak that language."""

    def check(language):
        if not _espeak_ok(language):
            pytest.skip(f"espeak-ng voice for {language!r} is not available")

    return check
