"""VisualEncoder (tiny config on CPU), 25 -> 50 Hz interpolation, L2S condition, save/load."""

import pytest
import torch
import torch.nn.functional as F

from metis_speech.checkpoint import load_weights, save_weights
from metis_speech.errors import CheckpointError
from metis_speech.models.visual import VisualEncoder, VisualEncoderConfig, l2s_condition, to_50hz
from metis_speech.video import video_to_crops

from .conftest import MOUTH_BOX


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return VisualEncoder(VisualEncoderConfig.tiny()).eval()


def test_output_shape(tiny):
    crops = torch.rand(2, 11, 96, 96)
    with torch.no_grad():
        out = tiny(crops)
    assert out.shape == (2, 11, 768) and torch.isfinite(out).all()


def test_padded_frames_do_not_change_valid_outputs(tiny):
    torch.manual_seed(1)
    a, b = torch.rand(1, 12, 96, 96), torch.rand(1, 7, 96, 96)
    batch = torch.rand(2, 12, 96, 96)  # padding filled with noise, not zeros
    batch[0], batch[1, :7] = a[0], b[0]
    with torch.no_grad():
        alone_a, alone_b = tiny(a), tiny(b)
        by_lengths = tiny(batch, lengths=torch.tensor([12, 7]))
        by_mask = tiny(batch, mask=torch.arange(12)[None] < torch.tensor([[12], [7]]))
    for out in (by_lengths, by_mask):
        assert torch.allclose(out[0], alone_a[0], atol=1e-5)
        assert torch.allclose(out[1, :7], alone_b[0], atol=1e-5)
        assert (out[1, 7:] == 0).all()


def test_frames_interact_over_time(tiny):
    """The encoder is not frame-wise: changing one frame changes its neighbours' features."""
    x = torch.rand(1, 9, 96, 96)
    y = x.clone()
    y[0, 4] = torch.rand(96, 96)
    with torch.no_grad():
        d = (tiny(x) - tiny(y)).abs().mean(dim=-1)[0]
    assert d[3] > 0 and d[5] > 0 and d[0] > 0


def test_rejects_wrong_crop_size(tiny):
    with pytest.raises(ValueError, match=r"\(B, N, 96, 96\)"):
        tiny(torch.rand(1, 4, 64, 64))


def test_official_size_on_meta():
    cfg = VisualEncoderConfig()
    assert (cfg.conformer_dim, cfg.conformer_layers, cfg.conformer_heads, cfg.conformer_ffn, cfg.conv_kernel) == (768, 12, 12, 3072, 31)
    assert cfg.frontend_kernel == (5, 7, 7) and cfg.trunk_widths == (64, 128, 256, 512) and cfg.out_dim == 768
    with torch.device("meta"):  # no memory, no initialisation cost
        model = VisualEncoder(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 170e6 < n < 195e6
    assert isinstance(model.proj_out, torch.nn.Identity)


def test_to_50hz_matches_reference_call():
    x = torch.randn(2, 13, 768)
    ref = F.interpolate(x.transpose(1, 2), scale_factor=2, mode="linear", align_corners=False).transpose(1, 2)
    assert torch.equal(to_50hz(x), ref)
    assert to_50hz(x).shape == (2, 26, 768)
    assert torch.equal(to_50hz(x[0]), ref[0])
    # align_corners=False: output 2i+1 = 0.75 x[i] + 0.25 x[i+1]; the ends repeat
    assert torch.allclose(to_50hz(x)[:, 1:-1:2], 0.75 * x[:, :-1] + 0.25 * x[:, 1:], atol=1e-6)
    assert torch.equal(to_50hz(x)[:, 0], x[:, 0]) and torch.equal(to_50hz(x)[:, -1], x[:, -1])


def test_l2s_condition():
    feats = torch.randn(10, 768)
    cond = l2s_condition(feats, prompt_frames=75)
    assert cond.shape == (75 + 20, 768)
    assert (cond[:75] == 0).all()
    assert torch.equal(cond[75:], to_50hz(feats))
    batched = l2s_condition(feats[None].repeat(3, 1, 1), prompt_frames=0)
    assert batched.shape == (3, 20, 768) and torch.equal(batched[1], to_50hz(feats))
    with pytest.raises(ValueError):
        l2s_condition(feats, -1)


def test_save_and_load(tmp_path, tiny):
    path = save_weights(tiny.state_dict(), tmp_path / "visual.safetensors")
    torch.manual_seed(123)
    other = VisualEncoder(VisualEncoderConfig.tiny()).eval()
    x = torch.rand(1, 6, 96, 96)
    with torch.no_grad():
        assert not torch.allclose(other(x), tiny(x))
        load_weights(other, path)
        assert torch.equal(other(x), tiny(x))
    wrong = VisualEncoder(VisualEncoderConfig(**{**VisualEncoderConfig.tiny().__dict__, "conformer_layers": 3}))
    with pytest.raises(CheckpointError, match="visual.safetensors"):
        load_weights(wrong, path)


def test_video_to_condition_end_to_end(face_video, tiny):
    path, frames, _ = face_video
    crops = torch.from_numpy(video_to_crops(path, method=MOUTH_BOX))
    with torch.no_grad():
        feats = tiny(crops[None])[0]  # (t, 768) at 25 fps
    cond = l2s_condition(feats, prompt_frames=50)
    assert cond.shape == (50 + 2 * len(frames), 768)
    assert torch.isfinite(cond).all()
