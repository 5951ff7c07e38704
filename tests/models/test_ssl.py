"""w2v-BERT front end: reference vectors, batching and odd-frame masking, statistics loading."""

import hashlib
import io

import numpy as np
import pytest
import torch

import metis_speech.models.ssl as ssl_mod
from metis_speech.config import load_preset
from metis_speech.conformance import load_manifest, run_case
from metis_speech.errors import AudioError, CheckpointError, HubError, MetisError
from metis_speech.models.ssl import SSLFeatureExtractor, load_ssl_stats


@pytest.mark.parametrize("name", ["w2vbert_features", "w2vbert_features_odd_frames"])
def test_conformance_case(vector_dir, name):
    case = load_manifest(vector_dir)["cases"][name]
    result = run_case(name, case, vector_dir)
    assert result.error is None, result.error
    assert {o.name for o in result.outputs} == set(case["outputs"])
    assert result.passed, [(o.name, o.max_abs_err, o.detail) for o in result.outputs if not o.passed]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = load_preset("tiny", "ssl")
    ssl = SSLFeatureExtractor.from_config(cfg, stats=(torch.randn(cfg.hidden_size), torch.rand(cfg.hidden_size) + 0.5))
    return ssl


def _wav(n, seed):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_batch_of_different_lengths_matches_single_items(tiny):
    rate = tiny.sample_rate
    # 129 fbank frames (odd: 65 kept frames, the last masked inside the model) and 100 (even)
    wavs = [_wav(20960, 0), _wav(16240, 1)]
    out = tiny(wavs, sample_rate=rate)
    assert out.features.shape == (2, 65, tiny.hidden_size)
    assert out.mask.sum(1).tolist() == [65, 50]
    batch = tiny.prepare(wavs, rate)
    assert batch.attention_mask.sum(1).tolist() == [64, 50]  # the odd item's last frame is masked
    for b, w in enumerate(wavs):
        single = tiny([w], sample_rate=rate)
        t = int(single.mask.sum())
        assert torch.allclose(out.features[b, :t], single.features[0], atol=1e-5)


def test_truncation_changes_nothing():
    """Dropping the layers above the hidden-state index gives the same features."""
    cfg = load_preset("tiny", "ssl")
    torch.manual_seed(3)
    full = SSLFeatureExtractor.from_config(cfg, truncate=False)
    torch.manual_seed(3)
    cut = SSLFeatureExtractor.from_config(cfg)
    assert len(full.model.encoder.layers) == cfg.model_config["num_hidden_layers"] > cfg.hidden_state_index
    assert len(cut.model.encoder.layers) == cfg.hidden_state_index
    wav = torch.from_numpy(_wav(9000, 2))
    assert torch.allclose(cut(wav).features, full(wav).features, atol=1e-6)


def test_bad_audio_errors(tiny):
    with pytest.raises(AudioError, match="16000 Hz"):
        tiny([_wav(8000, 0)], sample_rate=24000)
    with pytest.raises(AudioError, match="empty"):
        tiny([np.zeros(0, np.float32)])
    with pytest.raises(AudioError, match="too short"):
        tiny([_wav(500, 0)])
    bad = _wav(8000, 0)
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        tiny(bad)
    with pytest.raises(CheckpointError, match="sizes"):
        tiny.set_stats(torch.zeros(3), torch.ones(3))


def test_stats_from_shared_npy(parity_dir):
    stats_dir = parity_dir / "stats"
    mean, var = load_ssl_stats(stats_dir, expected_size=1024)
    assert mean.shape == var.shape == (1024,) and mean.dtype == torch.float32
    assert torch.equal(mean, torch.from_numpy(np.load(stats_dir / "w2vbert_layer17_mean.npy")))
    assert float(var.min()) > 0.07 and float(var.max()) < 20.1  # parity README §13 ranges
    m2, v2 = load_ssl_stats(stats_dir / "w2vbert_layer17_mean.npy")
    assert torch.equal(m2, mean) and torch.equal(v2, var)
    with pytest.raises(CheckpointError, match="size 1024"):
        load_ssl_stats(stats_dir, expected_size=32)


def test_stats_file_formats_and_errors(tmp_path):
    mean, var = torch.randn(6), torch.rand(6) + 0.1
    torch.save({"mean": mean, "var": var}, tmp_path / "s.pt")
    np.savez(tmp_path / "s.npz", mean=mean.numpy(), var=var.numpy())
    for name in ("s.pt", "s.npz"):
        m, v = load_ssl_stats(tmp_path / name)
        assert torch.equal(m, mean) and torch.equal(v, var)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as err:
        load_ssl_stats(tmp_path / "bad.pt")
    assert "bad.pt" in str(err.value) and "\n" not in str(err.value)
    torch.save({"mu": mean}, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match="'mean' and 'var'"):
        load_ssl_stats(tmp_path / "keys.pt")
    torch.save({"mean": mean, "var": -var}, tmp_path / "neg.pt")
    with pytest.raises(CheckpointError, match="var > 0"):
        load_ssl_stats(tmp_path / "neg.pt")
    with pytest.raises(CheckpointError, match="no statistics files"):
        load_ssl_stats(tmp_path)
    with pytest.raises(CheckpointError, match="no such"):
        load_ssl_stats(tmp_path / "absent.pt")
    assert load_ssl_stats(None) is None


def test_official_stats_offline_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError) as err:
        load_ssl_stats("official")
    msg = str(err.value)
    assert isinstance(err.value, MetisError) and "\n" not in msg
    assert ssl_mod.OFFICIAL_STATS_URL in msg and "stats=" in msg and ".npy" in msg


def test_official_stats_download_is_checked_and_cached(tmp_path, monkeypatch):
    buf = io.BytesIO()
    torch.save({"mean": torch.zeros(4), "var": torch.ones(4)}, buf)
    payload = buf.getvalue()

    class _Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return _Resp(payload)

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(ssl_mod.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(HubError, match="sha256"):
        load_ssl_stats("official")
    monkeypatch.setattr(ssl_mod, "OFFICIAL_STATS_SHA256", hashlib.sha256(payload).hexdigest())
    mean, var = load_ssl_stats("official")
    assert mean.shape == (4,) and torch.equal(var, torch.ones(4))
    load_ssl_stats("official")  # second call is served from the cache
    assert calls == [ssl_mod.OFFICIAL_STATS_URL] * 2
    assert list(tmp_path.rglob("wav2vec2bert_stats.pt"))


def test_vectorised_fbank_equals_the_transformers_loop():
    """The fbank of every SSL call (vectorise_fbank) gives what SeamlessM4TFeatureExtractor's
    frame-by-frame loop gives, on speech-like and noise input of odd and even frame counts."""
    import numpy as np
    from transformers import SeamlessM4TFeatureExtractor

    from metis_speech.models.ssl import vectorise_fbank

    kw = dict(feature_size=80, num_mel_bins=80, sampling_rate=16000, padding_value=1.0, stride=2)
    ref, fast = SeamlessM4TFeatureExtractor(**kw), vectorise_fbank(SeamlessM4TFeatureExtractor(**kw))
    assert isinstance(fast, SeamlessM4TFeatureExtractor) and fast.to_dict()["feature_extractor_type"] == "SeamlessM4TFeatureExtractor"
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    waves = [(0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32),
             (0.05 * rng.standard_normal(16000 + 321)).astype(np.float32)]
    for w in waves:
        a = ref(w, sampling_rate=16000, return_tensors="np")["input_features"]
        b = fast(w, sampling_rate=16000, return_tensors="np")["input_features"]
        assert a.shape == b.shape and np.abs(a - b).max() < 2e-4


def test_weights_stored_in_float16_load_as_float32(tmp_path):
    """A bundle may store its SSL in float16 (half the bytes); it loads in float32, with the
    weights equal to the stored ones and features within rounding of the float32 network's."""
    from safetensors.torch import load_file, save_file

    from metis_speech.bundle import load_ssl, random_bundle

    base = random_bundle(tmp_path / "b", tasks=())
    ref = load_ssl(base / "ssl")
    f = base / "ssl" / "model.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}, str(f),
              metadata={"format": "pt"})
    got = load_ssl(base / "ssl")
    params = dict(got.model.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.float32}
    for name, p in ref.model.named_parameters():
        assert torch.equal(params[name], p.detach().half().float()), name
    w = _wav(16000, 5)
    a, b = ref([w])[0], got([w])[0]
    assert a.shape == b.shape and (a - b).abs().max() < 0.05 * a.abs().max()
