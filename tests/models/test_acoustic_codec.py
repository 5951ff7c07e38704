"""Acoustic codec: reference vectors, official layouts, tiny round trips, training step, errors."""

import json

import pytest

from metis_speech.checkpoint import load_weights
import torch
from safetensors.torch import load_model, save_model

from metis_speech.config import AcousticDecoderConfig, AcousticEncoderConfig, load_preset
from metis_speech.conformance import load_manifest, run_case
from metis_speech.errors import AudioError, CheckpointError
from metis_speech.models.acoustic_codec import (
    AcousticCodec,
    AcousticDecoder,
    AcousticEncoder,
    Snake,
)


def test_conformance_case(vector_dir):
    case = load_manifest(vector_dir)["cases"]["acoustic_codec"]
    result = run_case("acoustic_codec", case, vector_dir)
    assert result.error is None, result.error
    assert {o.name for o in result.outputs} == set(case["outputs"])
    assert result.passed, [(o.name, o.max_abs_err, o.detail) for o in result.outputs if not o.passed]


@pytest.mark.parametrize(
    "component,cls,n_params",
    [("acoustic_encoder", AcousticEncoder, 42_540_224), ("acoustic_decoder", AcousticDecoder, 128_198_082)],
)
def test_official_layout_on_meta(parity_dir, component, cls, n_params):
    layouts = json.loads((parity_dir / "layouts.json").read_text())
    with torch.device("meta"):
        module = cls(load_preset("official", component))
    got = {k: list(v.shape) for k, v in module.state_dict().items()}
    want = {k: v["shape"] for k, v in layouts["layouts"][component].items()}
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert got == want
    # the spec's counts are state_dict sizes: the decoder's includes the 1920-sample window buffer
    assert sum(v.numel() for v in module.state_dict().values()) == n_params


def test_snake_formula():
    snake = Snake(3)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1))
    x = torch.randn(2, 3, 5)
    a = snake.alpha
    assert torch.allclose(snake(x), x + torch.sin(a * x) ** 2 / a, atol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    codec = AcousticCodec(load_preset("tiny", "acoustic_encoder"), load_preset("tiny", "acoustic_decoder"))
    return codec.eval()


def test_tiny_encode_decode_shapes(tiny):
    hop, q = tiny.hop_length, tiny.decoder.cfg.num_quantizers
    wav = 0.1 * torch.randn(2, 5 * hop)
    codes = tiny.encode(wav, sample_rate=tiny.sample_rate)
    assert codes.shape == (2, 5, q) and codes.dtype == torch.long
    assert int(codes.max()) < tiny.decoder.cfg.codebook_size
    out = tiny.decode(codes)
    assert out.shape == (2, 1, 5 * hop) and torch.isfinite(out).all()
    # a length that is not a multiple of the hop is padded up; (B, 1, S) input is accepted
    assert tiny.encode(wav[:, None, : 3 * hop + 7]).shape == (2, 4, q)
    assert tiny.decoder.decode(codes[..., :2]).shape == (2, 1, 5 * hop)  # coarse layers only


def test_tiny_input_errors(tiny):
    with pytest.raises(AudioError, match="Hz"):
        tiny.encode(torch.zeros(1, tiny.hop_length), sample_rate=16000)
    with pytest.raises(AudioError, match="empty"):
        tiny.encode(torch.zeros(1, 0))
    with pytest.raises(AudioError, match="mono"):
        tiny.encoder(torch.zeros(1, 2, tiny.hop_length))
    with pytest.raises(ValueError):
        AcousticCodec(AcousticEncoderConfig(d_model=4, strides=(2, 3), out_channels=8),
                      AcousticDecoderConfig(in_channels=8, n_fft=24, hop_size=12))


def test_tiny_decoder_safetensors_roundtrip(tiny, tmp_path):
    """save_model / load_model work, window buffer included (parity README §14.1)."""
    path = tmp_path / "model_1.safetensors"
    save_model(tiny.decoder, str(path))
    other = AcousticDecoder(load_preset("tiny", "acoustic_decoder")).eval()
    missing, unexpected = load_model(other, str(path), strict=True)
    assert not missing and not unexpected
    codes = torch.randint(0, other.cfg.codebook_size, (1, 3, other.cfg.num_quantizers))
    with torch.no_grad():
        assert torch.equal(other.decode(codes), tiny.decoder.decode(codes))
    enc_path = tmp_path / "model.safetensors"
    save_model(tiny.encoder, str(enc_path))
    fresh = AcousticCodec(load_preset("tiny", "acoustic_encoder"), load_preset("tiny", "acoustic_decoder"))
    fresh.load_weights(enc_path, path)
    wav = 0.1 * torch.randn(1, 2 * tiny.hop_length)
    assert torch.equal(fresh.eval().encode(wav), tiny.encode(wav))


def test_load_state_strict_errors(tiny, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_weights(tiny.encoder, bad)
    wrong = tmp_path / "wrong.safetensors"
    save_model(tiny.encoder, str(wrong))
    with pytest.raises(CheckpointError, match="does not match"):
        load_weights(AcousticDecoder(load_preset("tiny", "acoustic_decoder")), wrong)
    with pytest.raises(CheckpointError, match="no such"):
        load_weights(tiny.encoder, tmp_path / "missing.safetensors")


def test_training_forward_losses_and_gradients():
    torch.manual_seed(0)
    codec = AcousticCodec(load_preset("tiny", "acoustic_encoder"), load_preset("tiny", "acoustic_decoder")).train()
    wav = 0.1 * torch.randn(2, 4 * codec.hop_length)
    out = codec.decoder(codec.encoder(wav), generator=torch.Generator().manual_seed(0))
    assert out.wav.shape == (2, 1, wav.shape[-1]) and out.codes.shape[:2] == (2, 4)
    loss = (out.wav[:, 0] - wav).abs().mean() + out.commit_loss + out.codebook_loss
    assert torch.isfinite(loss)
    loss.backward()
    params = dict(codec.named_parameters())
    for name in ("encoder.block.0.weight_v", "encoder.block.1.block.0.block.0.alpha",
                 "decoder.quantizer.quantizers.0.codebook.weight", "decoder.model.head.out.weight"):
        grad = params[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_mel_frontend_encoder(tmp_path):
    """The small presets' "mel" encoder: log-mel of the STFT every hop / stack samples (equal to
    eval.dsp's mel spectrogram away from the edges), stacked frame-major into one codec frame."""
    import numpy as np

    from metis_speech.config import ConfigError
    from metis_speech.eval.dsp import melspectrogram
    from metis_speech.models.acoustic_codec import LogMel

    cfg = AcousticEncoderConfig(strides=(2, 3, 4), out_channels=16, frontend="mel", n_mels=12, mel_n_fft=32,
                                mel_stack=2, mel_dim=24, mel_intermediate_dim=32, mel_layers=1)
    enc = AcousticEncoder(cfg)
    wav = 0.1 * torch.randn(2, 1, 10 * cfg.hop_length)
    assert enc(wav).shape == (2, 16, 10) and torch.isfinite(enc(wav)).all()
    feats = enc.mel(wav[:, 0])  # (B, stack * M, T)
    assert feats.shape == (2, 24, 10)
    ref = np.log(np.maximum(melspectrogram(wav[0, 0].numpy(), cfg.sample_rate, 32, 12, 12), 1e-5))  # (M, 20+)
    mine = feats[0].reshape(2, 12, 10).permute(1, 2, 0).reshape(12, 20).numpy()  # frames in time order
    assert np.allclose(mine[:, 2:-2], ref[:, 2:18], atol=1e-3)
    # a checkpoint round trip recomputes the (unsaved) window and mel filters
    from metis_speech.loading import load_checkpoint, save_checkpoint

    save_checkpoint(enc, tmp_path / "enc")
    assert torch.equal(load_checkpoint(tmp_path / "enc")(wav), enc(wav))
    # a bf16 encoder (`dtype="bf16"` on a CPU with native bf16, or a GPU) takes a bf16 waveform:
    # the log-mel stays fp32 and is cast to the network's dtype (it once reached the bf16 conv as fp32)
    half = AcousticEncoder(cfg)
    half.load_state_dict(enc.state_dict())
    half = half.to(torch.bfloat16)
    out = half(wav.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.allclose(out.float(), enc(wav), atol=0.1, rtol=0.05)
    lm = LogMel(cfg.sample_rate, 32, cfg.hop_length, 2, 12)
    assert lm(torch.zeros(1, 7)).shape == (1, 24, 0)  # shorter than a hop: no frame
    # the official (conv) encoder is unchanged; bad mel settings are refused
    assert AcousticEncoderConfig().frontend == "conv"
    with pytest.raises(ConfigError, match="frontend"):
        AcousticEncoderConfig(frontend="wave")
    with pytest.raises(ConfigError, match="mel_stack"):
        AcousticEncoderConfig(strides=(3, 5), frontend="mel", mel_stack=2)
