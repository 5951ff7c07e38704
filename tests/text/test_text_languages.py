"""French, German, Korean (espeak-ng), Chinese (jieba + pypinyin), Japanese (pyopenjtalk), mixed text."""

import pytest

from metis_speech.text import mandarin
from metis_speech.text.tokenizer import zh_en_segments


def _check(r, language):
    assert r.language == language
    assert r.ids and all(0 <= i < 363 for i in r.ids)
    assert len(r.ids) == len(r.phones) - len(r.unknown)


@pytest.mark.parametrize("language, text, start", [
    ("fr", "Bonjour, je m'appelle Marie.", ["b", "ɔ̃", "ʒ", "u", "ʁ", ","]),
    ("de", "Guten Tag! Wie geht es Ihnen?", ["ɡ", "uː", "t", "ə", "n", "_", "t", "ɑː", "k", "!"]),
    ("ko", "안녕하세요. 저는 학생입니다.", ["ɐ", "n", "n", "j", "ʌ", "ŋ"]),
])
def test_espeak_languages(tok, need_voice, language, text, start):
    need_voice(language)
    r = tok(text, language)
    _check(r, language)
    assert r.phones[: len(start)] == start
    assert r.phones[-1] in ".?!"
    assert tok(text, "auto").ids == r.ids


def test_french_elision_and_abbreviation(tok, need_voice):
    need_voice("fr")
    r = tok("M. Dupont dit qu'il m'appelle.", "fr")
    assert r.phone_string.startswith("m|ə|s|j|ø|_|d|y|p|ɔ̃")  # "M." read as "monsieur"
    assert "'" not in r.phones  # "m'appelle" is read as one word, not "m" + "appelle"


def test_korean_letters_and_hanja(tok, need_voice):
    need_voice("ko")
    # capitals are read as Korean letter names, Hanja are dropped
    assert tok("AI 연구", "ko").ids == tok("에이아이 연구", "ko").ids
    assert tok("漢字 연구", "ko").ids == tok("연구", "ko").ids


def test_chinese(tok):
    pytest.importorskip("jieba")
    pytest.importorskip("pypinyin")
    r = tok("你好，世界！", "zh")
    _check(r, "zh")
    # 你好: third-tone sandhi on 你; h -> x; tones as arrows on the finals
    assert r.phones == ["n", "i↑", "x", "ɑʊ↓↑", ",", "s`ɹ↓", "tʃ⁼", "iɛ↓", "!"]
    assert tok("你好，世界！", "auto").language == "zh"


@pytest.mark.parametrize("syllable, phones", [
    ("zhong1", ["ts`⁼", "ʊŋ→"]), ("shi4", ["s`ɹ↓"]), ("si1", ["sɹ→"]), ("bo2", ["p⁼wo↑"]),
    ("xue2", ["ʃ", "ɥɛ↑"]), ("lv4", ["l", "ɥ↓"]), ("yuan2", ["ɥæn↑"]), ("gui4", ["k⁼", "ueɪ↓"]),
    ("jiu3", ["tʃ⁼", "ioʊ↓↑"]), ("wen2", ["uən↑"]), ("ma5", ["m", "a"]), ("er2", ["əɹ↑"]),
])
def test_pinyin_to_phones(vocab_path, syllable, phones):
    from metis_speech.text.vocab import load_vocab

    assert mandarin.syllable_phones(syllable) == phones
    assert all(p in load_vocab(vocab_path) for p in phones)


@pytest.mark.parametrize("word, tones, expected", [
    ("你好", ["3", "3"], ["2", "3"]), ("不要", ["4", "4"], ["2", "4"]), ("一个", ["1", "4"], ["2", "4"]),
    ("一起", ["1", "3"], ["4", "3"]), ("看一看", ["4", "1", "4"], ["4", "5", "4"]), ("第一", ["4", "1"], ["4", "1"]),
    ("哪儿", ["3", "2"], ["3", "5"]),
])
def test_tone_sandhi(word, tones, expected):
    assert mandarin.sandhi(word, tones) == expected


def test_mixed_chinese_english(tok, need_espeak):
    pytest.importorskip("jieba")
    assert zh_en_segments("我喜欢Python编程。") == [("我喜欢", "zh"), ("Python", "en"), ("编程。", "zh")]
    r = tok("我喜欢Python编程。", "auto")
    _check(r, "zh")
    assert "_" in r.phones  # the English word closes with a word boundary, as in the reference


def test_japanese(tok):
    pytest.importorskip("pyopenjtalk")
    r = tok("こんにちは、世界。", "ja")
    _check(r, "ja")
    assert r.phones == ["k", "o", "ɴ", "n", "i", "tɕ", "i", "ɰᵝ", "a", ",", "s", "e", "k", "a", "i", "."]
    assert tok("コーヒーを飲みたい", "auto").phones[:6] == ["k", "o", "o", "c\u0327", "i", "i"]
