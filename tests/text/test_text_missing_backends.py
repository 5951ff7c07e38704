"""A missing espeak-ng voice (or library, or Japanese/Chinese package) breaks only its language."""

import sys

import pytest

from metis_speech.text import BackendUnavailableError, PhoneTokenizer, espeak, japanese, mandarin


@pytest.fixture
def fresh_backends():
    espeak.reset()
    yield
    espeak.reset()


def test_missing_voice_breaks_only_its_language(vocab_path, need_espeak, fresh_backends, monkeypatch):
    from phonemizer.backend import EspeakBackend

    real = EspeakBackend.is_supported_language.__func__

    def without_french(cls, language):
        return language != "fr-fr" and real(cls, language)

    monkeypatch.setattr(EspeakBackend, "is_supported_language", classmethod(without_french))
    tok = PhoneTokenizer(vocab_path)
    with pytest.raises(BackendUnavailableError) as e:
        tok("Bonjour tout le monde.", "fr")
    msg = str(e.value)
    assert "\n" not in msg and "fr-fr" in msg and "espeak-ng" in msg
    assert tok("Hello world.", "en").ids == [41, 57, 50, 23, 4, 48, 7, 50, 30, 1]
    assert tok("Guten Tag.", "de").ids
    assert not espeak.available("fr") and espeak.available("en")


def test_missing_espeak_library(vocab_path, need_espeak, fresh_backends, monkeypatch):
    from phonemizer.backend import EspeakBackend

    def no_library(cls, language):
        raise RuntimeError("failed to find espeak library")

    monkeypatch.setattr(EspeakBackend, "is_supported_language", classmethod(no_library))
    with pytest.raises(BackendUnavailableError, match="apt-get install espeak-ng"):
        PhoneTokenizer(vocab_path)("Hello", "en")


def test_missing_phonemizer(vocab_path, fresh_backends, monkeypatch):
    monkeypatch.setitem(sys.modules, "phonemizer.backend", None)
    with pytest.raises(BackendUnavailableError, match="pip install phonemizer"):
        PhoneTokenizer(vocab_path)("Hello", "en")


def test_missing_japanese_and_chinese_packages(vocab_path, need_espeak, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)
    monkeypatch.setitem(sys.modules, "jieba", None)
    japanese._openjtalk.cache_clear()
    mandarin._libs.cache_clear()
    try:
        tok = PhoneTokenizer(vocab_path)
        with pytest.raises(BackendUnavailableError, match="pyopenjtalk"):
            tok("こんにちは", "ja")
        with pytest.raises(BackendUnavailableError, match="jieba"):
            tok("你好", "zh")
        assert tok("Hello world.", "en").ids  # English still works
    finally:
        japanese._openjtalk.cache_clear()
        mandarin._libs.cache_clear()
