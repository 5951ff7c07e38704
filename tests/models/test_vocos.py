"""Vocos backbone and iSTFT head: reference numerics, exact inversion, window storage."""

import json

import pytest
import torch
from safetensors.torch import load_file, load_model, save_model

from metis_speech.conformance.codecs import acoustic_configs
from metis_speech.models.vocos import ISTFT, ISTFTHead, Vocos, VocosBackbone


def test_decoder_vocos_matches_reference(vector_dir):
    """The acoustic case's Vocos alone: vq_emb -> wav_out (parity README §9 step 4)."""
    case = json.loads((vector_dir / "manifest.json").read_text())["cases"]["acoustic_codec"]
    _, dec, _ = acoustic_configs(case["constructor"]["cfg"])
    vocos = Vocos(dec.in_channels, dec.vocos_dim, dec.vocos_intermediate_dim, dec.vocos_num_layers, dec.n_fft, dec.hop_size)
    state = load_file(str(vector_dir / case["weights"][1]))
    vocos.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}, strict=True)
    data = load_file(str(vector_dir / case["vectors"]))
    with torch.no_grad():
        wav = vocos(data["vq_emb"])
    assert wav.shape == data["wav_out"].shape
    tol = case["tolerance"]["wav_out"]
    assert torch.allclose(wav, data["wav_out"], atol=tol["atol"], rtol=tol["rtol"])


def test_backbone_shapes_and_names():
    bb = VocosBackbone(input_channels=6, dim=8, intermediate_dim=16, num_layers=2)
    assert bb(torch.randn(3, 6, 11)).shape == (3, 11, 8)
    names = set(bb.state_dict())
    assert {"embed.weight", "norm.bias", "convnext.1.gamma", "convnext.0.dwconv.weight",
            "convnext.1.pwconv2.bias", "final_layer_norm.weight"} <= names
    assert torch.allclose(bb.convnext[0].gamma, torch.full((8,), 0.5))  # 1 / num_layers


@pytest.mark.parametrize("n_fft,hop", [(16, 4), (80, 20), (96, 24)])
def test_same_padding_istft_inverts_padded_stft(n_fft, hop):
    """STFT of a signal padded by (n_fft - hop) / 2 on each side is inverted exactly."""
    torch.manual_seed(0)
    frames = 9
    x = torch.randn(2, frames * hop, dtype=torch.float64)
    istft = ISTFT(n_fft, hop).double()
    pad = (n_fft - hop) // 2
    spec = torch.stft(
        torch.nn.functional.pad(x, (pad, pad)), n_fft, hop, window=istft.window, center=False, return_complex=True
    )
    assert spec.shape[-1] == frames
    y = istft(spec)
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-9)


def test_window_is_own_storage_and_roundtrips(tmp_path):
    head = ISTFTHead(dim=8, n_fft=32, hop_length=8)
    w = head.istft.window
    assert w.is_contiguous() and w.untyped_storage().nbytes() == w.numel() * w.element_size()
    assert torch.allclose(w, torch.hann_window(32))
    path = tmp_path / "head.safetensors"
    save_model(head, str(path))  # fails on a view of a larger storage (parity README §14.1)
    other = ISTFTHead(dim=8, n_fft=32, hop_length=8)
    missing, unexpected = load_model(other, str(path))
    assert not missing and not unexpected
    assert "istft.window" in load_file(str(path))


def test_head_clamps_magnitude_and_sets_length():
    head = ISTFTHead(dim=4, n_fft=16, hop_length=4)
    with torch.no_grad():
        head.out.bias.fill_(50.0)  # exp(50) would overflow the overlap-add without the clamp
    wav = head(torch.randn(2, 7, 4))
    assert wav.shape == (2, 7 * 4)
    assert torch.isfinite(wav).all()
    assert wav.abs().max() <= 100.0 * 16  # |irfft| of magnitude-100 bins is bounded by 100 * n_fft


def test_vocos_gradients_flow():
    vocos = Vocos(4, 8, 16, 2, n_fft=16, hop_length=4)
    x = torch.randn(2, 4, 6, requires_grad=True)
    vocos(x).pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert vocos.head.istft.window.grad is None


def test_half_precision_head_runs_fft_in_fp32():
    torch.manual_seed(0)
    vocos = Vocos(4, 8, 16, 2, n_fft=16, hop_length=4).eval()
    x = torch.randn(1, 4, 5)
    with torch.no_grad():
        ref = vocos(x)
        half = vocos.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-3


def test_istft_rejects_hop_without_overlap():
    with pytest.raises(ValueError, match="hop_length"):
        ISTFT(16, 16)
