"""The official phone vocabulary: local copy, cache, checksum, offline error; project-own tables."""

import json
import shutil
import urllib.request

import pytest

from metis_speech.errors import HubError, MetisError
from metis_speech.text import vocab as V
from metis_speech.text.vocab import PhoneVocab, VocabError, load_vocab, official_vocab


def test_shared_copy_is_the_official_table(vocab_path):
    assert V.sha256_of(vocab_path) == V.OFFICIAL_SHA256
    voc = official_vocab(vocab_path)
    assert len(voc) == 363 and voc.name == "official"
    assert sorted(voc.id_to_symbol) == list(range(363))
    # ids named in the vocabulary's documentation
    assert [voc.symbol_to_id[s] for s in (",", ".", "?", "!", "_")] == [0, 1, 2, 3, 4]
    assert voc.symbol_to_id["…"] == 362


def test_env_var_and_load_vocab(vocab_path, monkeypatch):
    monkeypatch.setenv(V.ENV_VAR, str(vocab_path))
    assert len(official_vocab()) == 363
    assert load_vocab(str(vocab_path)).name == "official"
    assert load_vocab("official").name == "official"


def test_cached_copy_is_used_without_network(vocab_path, tmp_path, monkeypatch):
    monkeypatch.delenv(V.ENV_VAR, raising=False)
    cached = tmp_path / f"amphion-g2p-{V.OFFICIAL_COMMIT[:12]}" / "vocab.json"
    cached.parent.mkdir(parents=True)
    shutil.copy(vocab_path, cached)

    def no_network(*a, **k):
        raise AssertionError("must not download when the cache holds the file")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert len(official_vocab(cache_dir=tmp_path)) == 363


def test_offline_raises_one_line_hub_error(tmp_path, monkeypatch):
    monkeypatch.delenv(V.ENV_VAR, raising=False)

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(HubError) as e:
        official_vocab(cache_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and V.OFFICIAL_URL in msg and V.ENV_VAR in msg


def test_download_is_checked_and_cached(vocab_path, tmp_path, monkeypatch):
    monkeypatch.delenv(V.ENV_VAR, raising=False)
    payload = vocab_path.read_bytes()

    class Response:
        def __init__(self, data):
            self.data = data

        def read(self):
            return self.data

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"{}"))
    with pytest.raises(HubError, match="sha256"):
        official_vocab(cache_dir=tmp_path)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(payload))
    assert len(official_vocab(cache_dir=tmp_path)) == 363
    assert len(list(tmp_path.rglob("vocab.json"))) == 1


def test_wrong_local_copy_is_refused(tmp_path):
    fake = tmp_path / "vocab.json"
    fake.write_text(json.dumps({"vocab": {"a": 0}}))
    with pytest.raises(VocabError, match="not the official"):
        official_vocab(fake)
    with pytest.raises(VocabError, match="does not exist"):
        official_vocab(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(MetisError, match="not valid JSON"):
        load_vocab(bad)


def test_project_own_vocabulary_round_trip(tmp_path):
    own = PhoneVocab.from_symbols([",", ".", "_", "a", "b", "a"], name="tiny")
    assert own.symbol_to_id == {",": 0, ".": 1, "_": 2, "a": 3, "b": 4}
    path = own.save(tmp_path / "ckpt" / "phones.json")
    again = load_vocab(path)
    assert again.symbol_to_id == own.symbol_to_id
    assert again.encode(["a", "zz", "b"]) == [3, 4] and again.last_unknown == ["zz"]
    assert again.decode([3, 4, 99]) == ["a", "b", "<unk>"]
    with pytest.raises(VocabError):
        PhoneVocab({"a": 0, "b": 0})


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_project_vocab_from_texts_covers_their_phones_in_a_fixed_order():
    from metis_speech.text import PhoneTokenizer, vocab_from_texts

    texts = ["The quick brown fox jumps over the lazy dog.", "   ", "Is it 5 o'clock yet?"]
    vocab, report = vocab_from_texts(texts, "en")
    assert report == {"texts": 2, "skipped": 1, "symbols": len(vocab)}
    # marks first, then phones sorted: the same texts in another order give the same table
    assert [vocab.id_to_symbol[i] for i in range(9)] == sorted(",.?!;:'…") + ["_"]
    again, _ = vocab_from_texts(list(reversed(texts)), "en")
    assert again.symbol_to_id == vocab.symbol_to_id
    ids = PhoneTokenizer(vocab)("The lazy fox.", "en")
    assert not ids.unknown and len(ids.ids) > 5
    with pytest.raises(MetisError, match="no text gave any phones"):
        vocab_from_texts(["", "  "], "en")
