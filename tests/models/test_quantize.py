"""Factorized and residual VQ: reference ids/values in both vector sets, straight-through, dropout."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from metis_speech.models.quantize import FactorizedVQ, ResidualVQ


def _case(root, name):
    case = json.loads((root / "manifest.json").read_text())["cases"][name]
    return case, load_file(str(root / case["vectors"]))


def _quantizer_from(root, weight_file, cfg_kwargs):
    state = load_file(str(root / weight_file))
    rvq = ResidualVQ(**cfg_kwargs)
    rvq.load_state_dict({k[len("quantizer."):]: v for k, v in state.items() if k.startswith("quantizer.")}, strict=True)
    return rvq.eval()


def _close(got, want, tol):
    return torch.allclose(got, want, atol=tol["atol"], rtol=tol["rtol"])


def test_semantic_quantizer_matches_reference(vector_dir):
    case, data = _case(vector_dir, "semantic_codec")
    c = case["constructor"]["cfg"]
    rvq = _quantizer_from(vector_dir, case["weights"][0], dict(
        input_dim=c["hidden_size"], num_quantizers=1, codebook_size=c["codebook_size"], codebook_dim=c["codebook_dim"]))
    with torch.no_grad():
        out = rvq(data["dbg_encoder_out"].transpose(1, 2))
        z_e = rvq.quantizers[0].in_project(data["dbg_encoder_out"].transpose(1, 2))
    assert torch.equal(out.ids[..., 0], data["indices"])
    assert _close(out.quantized.transpose(1, 2), data["quantized"], case["tolerance"]["quantized"])
    assert _close(z_e, data["dbg_z_e"], case["tolerance"]["dbg_z_e"])


def test_acoustic_rvq_matches_reference(vector_dir):
    case, data = _case(vector_dir, "acoustic_codec")
    d = case["constructor"]["cfg"]["decoder"]
    rvq = _quantizer_from(vector_dir, case["weights"][1], dict(
        input_dim=d["in_channels"], num_quantizers=d["num_quantizers"], codebook_size=d["codebook_size"],
        codebook_dim=d["codebook_dim"], quantizer_dropout=d["quantizer_dropout"]))
    with torch.no_grad():
        out = rvq(data["latent"])
        emb = rvq.decode(data["codes"])
    assert torch.equal(out.ids, data["codes"])
    assert torch.equal(rvq.encode(data["latent"]), data["codes"])
    assert _close(out.quantized, data["quantized_latent"], case["tolerance"]["quantized_latent"])
    assert _close(emb, data["vq_emb"], case["tolerance"]["vq_emb"])


def test_lookup_is_cosine_argmax_and_returns_raw_rows():
    torch.manual_seed(0)
    vq = FactorizedVQ(input_dim=12, codebook_size=32, codebook_dim=4)
    with torch.no_grad():
        vq.codebook.weight.mul_(torch.rand(32, 1) * 5 + 0.1)  # rows of very different norms
    z_e = torch.randn(2, 4, 7)
    ids = vq.lookup(z_e)
    cos = F.normalize(z_e.transpose(1, 2), dim=-1) @ F.normalize(vq.codebook.weight, dim=-1).t()
    assert torch.equal(ids, cos.argmax(-1))
    assert torch.equal(vq.codes(ids), vq.codebook.weight[ids].transpose(1, 2))  # raw, not normalised


def test_weight_norm_keys_and_identity_projection():
    keys = set(FactorizedVQ(16, 8, 4).state_dict())
    assert keys == {
        "in_project.bias", "in_project.weight_g", "in_project.weight_v",
        "out_project.bias", "out_project.weight_g", "out_project.weight_v", "codebook.weight",
    }
    assert set(FactorizedVQ(4, 8, 4).state_dict()) == {"codebook.weight"}


def test_straight_through_gradients_and_losses():
    torch.manual_seed(0)
    rvq = ResidualVQ(input_dim=10, num_quantizers=3, codebook_size=16, codebook_dim=4).train()
    z = torch.randn(2, 10, 5, requires_grad=True)
    out = rvq(z)
    assert out.commit_loss.shape == (3,) and out.codebook_loss.shape == (3,)
    (out.quantized.pow(2).mean() + out.commit_loss.sum() + out.codebook_loss.sum()).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for q in rvq.quantizers:
        assert q.codebook.weight.grad.abs().sum() > 0
        assert q.in_project.weight_v.grad.abs().sum() > 0 and q.out_project.weight_g.grad.abs().sum() > 0


def test_decode_of_encode_equals_forward_in_eval():
    torch.manual_seed(1)
    rvq = ResidualVQ(input_dim=10, num_quantizers=3, codebook_size=16, codebook_dim=4).eval()
    z = torch.randn(2, 10, 6)
    with torch.no_grad():
        out = rvq(z)
        assert torch.allclose(rvq.decode(out.ids), out.quantized, atol=1e-5)
        assert rvq.encode(z, n_quantizers=2).shape == (2, 6, 2)
        assert torch.allclose(rvq.decode(out.ids[..., :2]), rvq(z, n_quantizers=2).quantized, atol=1e-5)
    with pytest.raises(ValueError):
        rvq.decode(torch.zeros(1, 3, 4, dtype=torch.long))


def test_quantizer_dropout_keeps_a_prefix_of_stages():
    torch.manual_seed(2)
    rvq = ResidualVQ(input_dim=10, num_quantizers=4, codebook_size=16, codebook_dim=4, quantizer_dropout=1.0).train()
    z = torch.randn(8, 10, 3)
    with torch.no_grad():
        out = rvq(z, generator=torch.Generator().manual_seed(0))
        assert out.ids.shape == (8, 3, 4)
        assert ((out.n_quantizers >= 1) & (out.n_quantizers <= 4)).all() and (out.n_quantizers < 4).any()
        rvq.eval()
        for b in range(8):
            n = int(out.n_quantizers[b])
            assert torch.allclose(out.quantized[b], rvq(z[b : b + 1], n_quantizers=n).quantized[0], atol=1e-5)
        # eval mode ignores dropout
        assert (rvq(z).n_quantizers == 4).all()
