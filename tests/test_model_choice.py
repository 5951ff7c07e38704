"""Which model a task uses (``auto``), without the network, and fetching when the Hub is away.

A fake Hugging Face cache (the real on-disk layout: ``models--OWNER--NAME/refs/main`` and
``snapshots/<commit>/<path>``) stands in for downloaded official weights, and a fake shipped
model (a bundle manifest naming its tasks) for the one in the package, so the table holds
whatever tasks the real shipped model is trained for.
"""

import socket
import time

import pytest

from metis_speech import hub, shipped
from metis_speech.bundle import write_manifest
from metis_speech.cli import main
from metis_speech.errors import HubError, MetisError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_file(cache, repo, path, data=b"x"):
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    f = root / "snapshots" / COMMIT / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data)
    return f


def fill_cache(cache, task, skip=()):
    """Put every official file ``task`` needs into the fake cache, except those named in ``skip``."""
    for key in hub.files_for_task(task):
        f = hub.FILES[key]
        if key not in skip:
            _cache_file(cache, f.repo, f.path)
    for name in hub.W2V_BERT_FILES:
        _cache_file(cache, hub.W2V_BERT_REPO, name)
    stats = hub.official_stats_file()
    stats.parent.mkdir(parents=True, exist_ok=True)
    stats.write_bytes(b"stats")
    if task in hub.PHONE_TASKS:
        from metis_speech.text.vocab import official_cache_file

        official_cache_file().parent.mkdir(parents=True, exist_ok=True)
        official_cache_file().write_text("{}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Hub cache, no network (any attempt fails the test), HF_HUB_OFFLINE unset."""
    d = tmp_path / "hf-cache"
    d.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(d))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("METIS_PHONE_VOCAB", raising=False)

    def no_network(*a, **k):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_network)
    return d


@pytest.fixture
def small(tmp_path, monkeypatch):
    """A fake shipped model doing TTS and SE (only its manifest matters for the choice)."""
    d = tmp_path / "small"
    d.mkdir()
    write_manifest(d, {}, {"base": "stage1_base", "tts": "stage1_tts", "se": "stage1_se"}, None, {"preset": "tiny"})
    monkeypatch.setattr(shipped, "SMALL_MODEL_DIR", d)
    return d


def test_auto_prefers_official_weights_in_the_cache(cache, small):
    fill_cache(cache, "tts")
    c = shipped.choose_source("tts", "auto")
    assert c.source == "hub"
    assert "official weights" in c.line and "Hugging Face cache" in c.line and "\n" not in c.line
    # and loading them then needs no network: every file resolves from the cache
    for key in hub.files_for_task("tts"):
        assert str(hub.resolve(key, "hub")).startswith(str(cache))
    assert hub.cached_ssl_dir().parent.name == "snapshots"


@pytest.mark.parametrize("missing", ["t2s", "acoustic_decoder"])
def test_auto_takes_the_shipped_model_when_official_files_are_missing(cache, small, missing):
    fill_cache(cache, "tts", skip=(missing,))
    c = shipped.choose_source("tts", "auto")
    assert c.source == small
    assert "small model shipped" in c.line and "1 of 11 files missing" in c.line and "metis download tts" in c.line


def test_auto_with_neither_is_one_line_naming_the_options(cache, small):
    with pytest.raises(MetisError) as e:
        shipped.choose_source("vc", "auto")
    msg = str(e.value)
    assert "\n" not in msg
    for option in ("--model hub", "metis download vc --to DIR", "--model DIR", "it does: se, tts"):
        assert option in msg, option


def test_auto_official_cache_counts_ssl_stats_and_vocab(cache, small):
    fill_cache(cache, "tts")
    hub.official_stats_file().unlink()
    assert shipped.choose_source("tts", "auto").source == small
    assert "statistics" in hub.official_cache("tts").missing[0]
    fill_cache(cache, "vc")  # complete for VC (no phone vocabulary needed): official even though small lacks vc
    assert shipped.choose_source("vc", "auto").source == "hub"


def test_shipped_tasks_come_from_its_manifest(cache, small):
    write_manifest(small, {}, {"base": "b", "tts": "t", "se": "s", "vc": "v"}, None)
    assert shipped.small_model_tasks() == ["se", "tts", "vc"]
    assert shipped.choose_source("vc", "auto").source == small
    with pytest.raises(MetisError, match="does not do 'tse'"):
        shipped.choose_source("tse", "small")


def test_real_shipped_model_table(cache):
    """With nothing cached, the installed small model answers for exactly the tasks in its
    metis.json; the others get the one-line error."""
    have = shipped.small_model_tasks()
    assert have, "the shipped small model is missing"
    for task in ("tts", "vc", "tse", "se", "omni", "l2s"):
        if task in have:
            assert shipped.choose_source(task, "auto").source == shipped.SMALL_MODEL_DIR
        else:
            with pytest.raises(MetisError, match="no model for"):
                shipped.choose_source(task, "auto")


def test_info_prints_the_choice_per_task(cache, small, capsys):
    fill_cache(cache, "se")
    assert main(["info"]) == 0
    out = capsys.readouterr().out.split("presets:")[0]
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    assert sorted(lines) == ["l2s", "omni", "se", "tse", "tts", "vc"]
    assert "official weights" in lines["se"] and "small model shipped" in lines["tts"]
    assert "none: no model for vc" in lines["vc"]


# ------------------------------------------------------------------ when the Hub cannot be used
def test_offline_hub_fails_at_once_with_what_to_do(cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(HubError) as e:
        hub.resolve("s2a_full", "hub", task="se")
    msg = str(e.value)
    assert time.perf_counter() - t0 < 5
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg
    for option in ("metis download se --to DIR", "--model DIR", "--model small"):
        assert option in msg, option


def test_unreachable_hub_fails_in_one_line_without_retries(cache, monkeypatch, capsys):
    calls = []

    def refused(address, timeout=None):
        calls.append((address, timeout))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    t0 = time.perf_counter()
    with pytest.raises(HubError) as e:
        hub.resolve("t2s", "hub", task="tts")
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert "\n" not in msg and "cannot be reached" in msg and "metis download tts --to DIR" in msg
    assert len(calls) == 1 and calls[0][1] <= hub.PROBE_TIMEOUT_S
    assert capsys.readouterr().err == ""


def test_hub_source_through_the_cli_is_one_line(cache, monkeypatch, capsys, tmp_path):
    """`metis se --model hub` offline: the model line, then exactly one error line."""
    import numpy as np
    import soundfile as sf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, 0.1 * np.sin(np.arange(16000) / 5.0).astype(np.float32), 16000)
    rc = main(["se", "--input", str(noisy), "--model", "hub", "--out", str(tmp_path / "o.wav"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[0].startswith("model: the official weights") and len(err) == 2
    assert err[1].startswith("error: cannot fetch") and "--model small" in err[1]
    assert not (tmp_path / "o.wav").exists()


def test_download_to_dir_makes_a_complete_source(cache, monkeypatch, tmp_path):
    """`metis download TASK --to DIR` also brings w2v-BERT, its statistics and the phone
    vocabulary, so that --model DIR needs no network later."""
    got = []

    def fake_fetch(f, local_dir=None, task="TASK"):
        got.append((f.repo, f.path, local_dir))
        p = (local_dir or cache) / f.path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        return p

    monkeypatch.setattr(hub, "_fetch", fake_fetch)
    stats = tmp_path / "stats.pt"
    stats.write_bytes(b"s")
    monkeypatch.setattr("metis_speech.models.ssl.official_stats_path", lambda: stats)
    vocab = tmp_path / "vocab.json"
    vocab.write_text("{}")
    monkeypatch.setattr("metis_speech.text.vocab.official_vocab", lambda *a, **k: None)
    monkeypatch.setattr("metis_speech.text.vocab.official_cache_file", lambda *a, **k: vocab)
    out = tmp_path / "release"
    out.mkdir()
    paths = hub.download("tts", out)
    assert {r for r, _, _ in got} == {"amphion/MaskGCT", hub.W2V_BERT_REPO}
    assert all(p.is_file() for p in paths.values())
    assert (out / "w2v-bert-2.0" / "model.safetensors").is_file()
    assert (out / "wav2vec2bert_stats.pt").is_file() and (out / "phone_vocab.json").is_file()
    for key in hub.files_for_task("tts"):
        assert hub.resolve(key, out).is_file()
