"""Bad input gets a one-line MetisError saying what is wrong and what is accepted; detection."""

import pytest

from metis_speech.errors import MetisError
from metis_speech.text import (
    EmptyTextError,
    NoPhonesError,
    UnsupportedLanguageError,
    detect_language,
    normalize_language,
    split_sentences,
    text_to_phone_ids,
)
from metis_speech.text import detect


def _one_line(e):
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text(tok, text):
    with pytest.raises(EmptyTextError) as e:
        tok(text, "en")
    assert "empty" in _one_line(e)
    with pytest.raises(EmptyTextError):
        split_sentences(text)


@pytest.mark.parametrize("text, language", [("!!! ...", "en"), ("?!", "auto"), ("«»—", "fr"), ("* ~ ^", "en")])
def test_text_without_phones(tok, need_espeak, text, language):
    with pytest.raises(NoPhonesError) as e:
        tok(text, language)
    assert "yields no phones" in _one_line(e)


@pytest.mark.parametrize("language", ["es", "klingon", "ru", ""])
def test_unsupported_language_code(tok, language):
    with pytest.raises(UnsupportedLanguageError) as e:
        tok("hello", language)
    msg = _one_line(e)
    assert "en, zh, ja, ko, fr, de" in msg and "auto" in msg


def test_unsupported_script_is_refused():
    with pytest.raises(UnsupportedLanguageError) as e:
        detect_language("Привет, как дела?")
    msg = _one_line(e)
    assert "Cyrillic" in msg and "en, zh, ja, ko, fr, de" in msg
    with pytest.raises(UnsupportedLanguageError):
        detect_language("مرحبا بالعالم")


def test_errors_are_metis_errors():
    for cls in (EmptyTextError, NoPhonesError, UnsupportedLanguageError):
        assert issubclass(cls, MetisError)


@pytest.mark.parametrize("alias, code", [("English", "en"), ("en-US", "en"), ("cmn", "zh"), ("Chinese", "zh"),
                                         ("jp", "ja"), ("Korean", "ko"), ("fr-FR", "fr"), ("German", "de"),
                                         ("AUTO", "auto")])
def test_language_aliases(alias, code):
    assert normalize_language(alias) == code


@pytest.mark.parametrize("text, language", [
    ("The weather is nice today and we are going out.", "en"),
    ("Le chat est sur la table et il dort.", "fr"),
    ("Der Hund ist sehr müde und schläft.", "de"),
    ("오늘 날씨가 좋네요.", "ko"),
    ("今天天气很好。", "zh"),
    ("我喜欢Python编程", "zh"),
    ("今日はいい天気です。", "ja"),
    ("東京タワー", "ja"),
    ("12345", "en"),
])
def test_detection_by_script_and_words(text, language):
    assert detect_language(text) == language


def test_detection_without_langid_falls_back_to_words(monkeypatch):
    monkeypatch.setattr(detect, "_langid", lambda: None)
    assert detect.detect_latin("xyzzy") == "en"
    assert detect.detect_latin("Straße") == "de"


def test_langid_refuses_another_latin_language():
    pytest.importorskip("langid")
    with pytest.raises(UnsupportedLanguageError) as e:
        detect_language("Hola, ¿cómo estás? Me llamo Juan y vivo en Madrid con mi familia.")
    assert "'es'" in _one_line(e)


def test_function_api(vocab_path, need_espeak):
    ids = text_to_phone_ids("Hello world.", language="en", vocab=vocab_path)
    assert ids == [41, 57, 50, 23, 4, 48, 7, 50, 30, 1]
