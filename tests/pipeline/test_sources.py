"""The ``auto`` and ``small`` model sources (metis_speech.shipped), against a stand-in bundle."""

import pytest

from metis_speech import shipped
from metis_speech.bundle import random_bundle
from metis_speech.errors import MetisError


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch):
    """No official weights on disk (the real cache of this machine must not decide)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def stand_in(tmp_path, monkeypatch, shared_dir):
    d = random_bundle(tmp_path / "small", tasks=("tts", "se"), phone_vocab=shared_dir / "g2p" / "vocab.json")
    monkeypatch.setattr(shipped, "SMALL_MODEL_DIR", d)
    return d


def test_auto_takes_the_shipped_model_where_it_does_the_task(stand_in):
    assert shipped.small_model_tasks() == ["se", "tts"]
    assert shipped.resolve_source("tts", "auto") == stand_in
    assert shipped.resolve_source("se", "small") == stand_in
    with pytest.raises(MetisError, match=r"no model for vc here: .* \(it does: se, tts\); use --model hub"):
        shipped.resolve_source("vc", "auto")  # never a download the user did not ask for
    with pytest.raises(MetisError, match=r"does not do 'vc' \(it does: se, tts\); use --model hub"):
        shipped.resolve_source("vc", "small")
    for other in ("hub", "random:tiny", str(stand_in)):
        assert shipped.resolve_source("tts", other) == other


def test_without_a_shipped_model(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "SMALL_MODEL_DIR", tmp_path / "absent")
    assert shipped.small_model_dir() is None and shipped.small_model_tasks() == []
    with pytest.raises(MetisError, match="the shipped small model is not in this installation; use --model hub"):
        shipped.resolve_source("tts", "auto")
    with pytest.raises(MetisError, match="not in this installation"):
        shipped.resolve_source("tts", "small")


def test_api_and_cli_default_to_auto(stand_in, tmp_path, capsys):
    import soundfile as sf

    from metis_speech import Metis
    from metis_speech.cli import main
    from tests.pipeline.conftest import speechlike

    m = Metis.from_pretrained("se", device="cpu", lazy=True)
    assert m._src.source == stand_in
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, speechlike(1.5), 16000)
    out = tmp_path / "clean.wav"
    assert main(["se", "--input", str(noisy), "--out", str(out), "--steps", "2", "--s2a-steps", "2,1"]) == 0
    assert "model: the small model shipped with metis-speech" in capsys.readouterr().err
    assert sf.info(str(out)).samplerate == 24000
    # a task the shipped model lacks: a one-line error naming the options
    assert main(["vc", "--source", str(noisy), "--prompt", str(noisy), "--out", str(tmp_path / "vc.wav"),
                 "--model", "small"]) != 0
    assert "does not do 'vc'" in capsys.readouterr().err
    assert main(["vc", "--source", str(noisy), "--prompt", str(noisy), "--out", str(tmp_path / "vc.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no model for vc here") and "--model hub" in err[0]
    assert not (tmp_path / "vc.wav").exists()


def test_model_source_reads_configs_without_loading_weights(stand_in):
    """``ModelSource.config`` gives the config the loader builds the network from (what the task
    API reads sample rates and RVQ depth from in low-memory mode): the same as the loaded
    network's for a bundle and a random preset; the official preset's for the Hub, with no
    download (the Hub cache is empty here)."""
    import torch

    from metis_speech.config import load_preset
    from metis_speech.sources import ModelSource

    for source in (str(stand_in), "random:tiny"):
        src = ModelSource(source, None, None, None)
        for name in ("acoustic_decoder", "s2a_full"):
            assert src.config(name) == src.component(name, torch.device("cpu"), torch.float32).cfg
        assert src.config("ssl").sample_rate == src.ssl(torch.device("cpu"), torch.float32).sample_rate
    hub_src = ModelSource("hub", None, None, None)
    assert hub_src.config("acoustic_decoder") == load_preset("official", "acoustic_decoder")
    assert (hub_src.config("acoustic_decoder").sample_rate, hub_src.config("ssl").sample_rate) == (24000, 16000)
    assert hub_src.config("s2a_full").num_quantizers == 12
    with pytest.raises(MetisError, match="unknown component"):
        hub_src.config("vocoder")
