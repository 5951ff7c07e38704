"""Sentences: distinct, local, and split by hash so train and test never share one."""

from metis_speech.corpus.text import SentenceStream, available_sources, normalize_text, resolve_sources, text_split


def _take(split, n, seed="s"):
    stream = SentenceStream(split, f"{seed}/{split}", available_sources())
    return [next(stream) for _ in range(n)]


def test_streams_are_disjoint_across_splits_and_distinct():
    train, dev, test = _take("train", 2000), _take("dev", 300), _take("test", 600)
    for split, sents in (("train", train), ("dev", dev), ("test", test)):
        keys = [normalize_text(s) for s in sents]
        assert len(set(keys)) == len(keys), f"{split} repeats a sentence"
        assert all(text_split(s) == split for s in sents)
    tr = {normalize_text(s) for s in train}
    assert not tr & {normalize_text(s) for s in test}
    assert not tr & {normalize_text(s) for s in dev}


def test_streams_are_deterministic_and_seeded():
    assert _take("test", 50, "a") == _take("test", 50, "a")
    assert _take("test", 50, "a") != _take("test", 50, "b")


def test_generated_source_alone_has_thousands_of_sentences():
    stream = SentenceStream("train", "x", ["generated"])
    sents = [next(stream) for _ in range(5000)]
    assert len({normalize_text(s) for s in sents}) == 5000
    assert all(s[0].isupper() and s[-1] in ".?!" and s.isascii() for s in sents)


def test_split_ignores_case_and_punctuation():
    assert text_split("Hello, World!") == text_split("hello world")


def test_resolve_sources():
    assert resolve_sources("generated") == ["generated"]
    assert resolve_sources("auto")[0] == "generated"
