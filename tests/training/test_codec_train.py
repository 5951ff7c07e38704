"""Codec trainers: losses and discriminators, tiny semantic/acoustic codec runs on synthetic
data (the loss falls), GAN kill-and-resume equivalence (both optimisers), final checkpoints
load through load_checkpoint, and the ``metis train`` entry point."""

import json

import pytest
import torch

from metis_speech.loading import load_checkpoint
from metis_speech.training.codec_train import (
    AcousticCodecTrainer,
    SemanticCodecTrainer,
    codebook_stats,
    kmeans,
    synthetic_audio,
)
from metis_speech.training.discriminators import (
    CodecDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
)
from metis_speech.training.losses import (
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    mel_filterbank,
)
from metis_speech.training.trainer import load_train_config, make_trainer, read_log

SR = 24000
RESUME_TOL = 1e-5


# ------------------------------------------------------------------ losses
def test_reconstruction_losses_zero_on_identical_and_positive_otherwise():
    x = synthetic_audio(2, 0.2)[0][None].repeat(2, 1)
    stft, mel = MultiResolutionSTFTLoss(), MultiScaleMelLoss(SR)
    assert float(stft(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(mel(x, x[:, None])) == pytest.approx(0.0, abs=1e-6)  # (B, S) vs (B, 1, S)
    y = x + 0.05 * torch.randn_like(x)
    assert float(stft(y, x)) > 0.05 and float(mel(y, x)) > 0.05


def test_mel_filterbank_matches_librosa():
    # values of librosa.filters.mel(sr=24000, n_fft=64, n_mels=5) (librosa 0.11; importing it costs ~7 s)
    fb = mel_filterbank(SR, 64, 5)
    assert fb.shape == (5, 33)
    assert fb.argmax(1).tolist() == [2, 3, 6, 10, 18]
    ref_sums = [0.0024201989, 0.0027962865, 0.0026222391, 0.0026770262, 0.0026642261]
    assert torch.allclose(fb.sum(1), torch.tensor(ref_sums), rtol=1e-5)
    assert float(fb[2, 4]) == pytest.approx(0.0002964421, rel=1e-5)


def test_gan_losses():
    ones, neg = [torch.ones(2, 5)], [-torch.ones(2, 5)]
    assert float(discriminator_loss(ones, neg, "hinge")) == 0.0  # confident and correct
    assert float(discriminator_loss(neg, ones, "hinge")) == pytest.approx(4.0)
    assert float(discriminator_loss(ones, [torch.zeros(2, 5)], "lsgan")) == 0.0
    assert float(generator_adv_loss(ones, "hinge")) == 0.0
    assert float(generator_adv_loss([torch.zeros(2, 5)], "lsgan")) == pytest.approx(1.0)
    f = [[torch.randn(2, 3, 4), torch.randn(2, 5)]]
    assert float(feature_matching_loss(f, f)) == 0.0
    with pytest.raises(ValueError):
        discriminator_loss(ones, neg, "wgan")


def test_discriminator_shapes():
    wav = torch.randn(2, 1, 4801)  # not a multiple of any period
    logits, fmaps = MultiPeriodDiscriminator(width=1 / 16)(wav)
    assert len(logits) == len(fmaps) == 5
    for p, (y, f) in zip((2, 3, 5, 7, 11), zip(logits, fmaps)):
        assert y.shape[0] == 2 and y.dim() == 2 and len(f) == 6
        assert f[0].shape[-1] == p
    logits, fmaps = MultiResolutionDiscriminator(width=1 / 8)(wav[:, 0])  # (B, S) accepted
    assert len(logits) == 3 and all(y.shape[0] == 2 for y in logits) and all(len(f) == 6 for f in fmaps)
    d = CodecDiscriminator(periods=(2, 3), resolutions=((512, 128, 512),), mpd_width=1 / 16, mrd_width=1 / 8)
    logits, fmaps = d(wav)
    assert len(logits) == len(fmaps) == 3
    sum(y.mean() for y in logits).backward()
    assert all(p.grad is not None for p in d.parameters())
    with pytest.raises(ValueError):
        d(torch.randn(2, 2, 100))


def test_codec_discriminator_width_zero_leaves_that_part_out():
    wav = torch.randn(2, 1, 4800)
    mpd_only = CodecDiscriminator(periods=(2, 3), resolutions=((512, 128, 512),), mpd_width=1 / 16, mrd_width=0)
    assert mpd_only.mrd is None
    logits, fmaps = mpd_only(wav)
    assert len(logits) == len(fmaps) == 2 and all(f[0].shape[-1] in (2, 3) for f in fmaps)
    mrd_only = CodecDiscriminator(periods=(2, 3), resolutions=((512, 128, 512),), mpd_width=0, mrd_width=1 / 8)
    assert mrd_only.mpd is None and len(mrd_only(wav)[0]) == 1
    for bad in ((0, 0), (-1, 1 / 8)):
        with pytest.raises(ValueError, match="discriminator widths"):
            CodecDiscriminator(mpd_width=bad[0], mrd_width=bad[1])


def test_codebook_stats():
    s = codebook_stats(torch.tensor([0, 1, 2, 3]), 8)
    assert s["codebook_usage"] == 0.5 and s["perplexity"] == pytest.approx(4.0)


# ------------------------------------------------------------ semantic codec
def semantic_config(out, steps=60, **extra):
    d = {
        "model": {"preset": "tiny", "component": "semantic_codec"},
        "data": {"synthetic": {"n": 48, "min_frames": 16, "max_frames": 40, "clusters": 8, "seed": 0}, "max_frames": 400},
        "optim": {"lr": 3e-3, "betas": [0.9, 0.99], "warmup_steps": 5, "decay": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.0},
        "train": {"max_steps": steps, "seed": 0, "log_every": 1, "checkpoint_every": 1000, "out": str(out), "progress": False},
    }
    for k, v in extra.items():
        d.setdefault(k, {}).update(v)
    return load_train_config(d)


def test_semantic_codec_trains_and_checkpoint_loads(tmp_path):
    out = tmp_path / "sem"
    tr = make_trainer(semantic_config(out))
    assert isinstance(tr, SemanticCodecTrainer)
    summary = tr.train()
    recs = read_log(out)
    first = sum(r["recon_loss"] for r in recs[:3]) / 3
    last = sum(r["recon_loss"] for r in recs[-3:]) / 3
    # threshold: the reconstruction MSE at least halves within 60 steps (seen: ~1.0 -> ~0.3)
    assert last < 0.5 * first, (first, last)
    assert {"commit_loss", "codebook_loss", "codebook_usage", "perplexity"} <= set(recs[-1])
    assert recs[-1]["perplexity"] > 1.0
    assert summary["frames_per_s"] > 0
    codec = load_checkpoint(out / "final")
    feats = torch.randn(2, 20, codec.cfg.hidden_size)
    ids, quantized = codec.quantize(feats)
    assert ids.shape == (2, 20) and quantized.shape == (2, 20, codec.cfg.hidden_size)
    assert codec.decode(quantized).shape == feats.shape
    assert (out / "loss.png").is_file()


def test_semantic_codec_kmeans_init_spreads_codes(tmp_path):
    """objective.kmeans_init: before step 1 the codebook is fitted to the encoded features, so
    the ids of the training data use far more codes than with the random codebook."""
    tr = make_trainer(semantic_config(tmp_path / "km", 1, objective={"kmeans_init": True, "kmeans_frames": 1000}))
    codec = tr.unwrap(tr.nets["codec"])

    def perplexity():
        ids, _ = codec.quantize(torch.cat(tr.items)[None])
        return codebook_stats(ids, codec.cfg.codebook_size)["perplexity"]

    with torch.no_grad():
        before = perplexity()
        tr._kmeans_init()
        after = perplexity()
    print(f"semantic codec perplexity over the training features: {before:.0f} -> {after:.0f} (k-means init)")
    assert after > 1.5 * before, (before, after)
    tr.train()  # and the run trains from there (the init is step 0's; a resumed run skips it)


def test_semantic_codec_resume_matches(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_trainer(semantic_config(a, 6)).train()
    make_trainer(semantic_config(b, 6)).train(until=3)
    make_trainer(semantic_config(b, 6), resume=True).train()
    la, lb = {r["step"]: r["loss"] for r in read_log(a)}, {r["step"]: r["loss"] for r in read_log(b)}
    assert abs(la[6] - lb[6]) < RESUME_TOL


# ------------------------------------------------------------ acoustic codec
# Test size: the tiny preset with an 8-channel encoder, 0.2 s segments, batch 2, narrow D.
ACOUSTIC_TEST = {
    "segment_frames": 10,
    "mpd_width": 1 / 16,
    "mrd_width": 1 / 8,
    "periods": [2, 3, 5],
    "stft_resolutions": [[512, 128, 512], [1024, 256, 1024]],
    "mel_windows": [64, 256, 1024],
    "mel_bins": [10, 40, 80],
    "dead_code_restart_every": 2,
}


def acoustic_config(out, steps, disc_start, **objective):
    return load_train_config(
        {
            "model": {"preset": "tiny", "component": "acoustic_codec", "overrides": {"encoder": {"d_model": 8}}},
            "data": {"synthetic": {"n": 8, "seconds": 0.5, "seed": 0}, "max_frames": 20},
            "optim": {"lr": 3e-3, "betas": [0.8, 0.99], "warmup_steps": 3, "decay": "cosine", "min_lr_ratio": 0.1, "weight_decay": 0.0, "grad_clip": 10.0},
            "objective": {**ACOUSTIC_TEST, "disc_start": disc_start, **objective},
            "train": {"max_steps": steps, "seed": 0, "log_every": 1, "checkpoint_every": 1000, "out": str(out), "progress": False},
        }
    )


def test_acoustic_codec_gan_trains_and_checkpoint_loads(tmp_path):
    out = tmp_path / "ac"
    steps, disc_start = 40, 25
    tr = make_trainer(acoustic_config(out, steps, disc_start))
    assert isinstance(tr, AcousticCodecTrainer)
    summary = tr.train()
    recs = read_log(out)
    mel0 = sum(r["mel_loss"] for r in recs[:3]) / 3
    mel1 = sum(r["mel_loss"] for r in recs[-3:]) / 3
    # threshold: the multi-scale mel L1 falls by at least 25% in 40 steps
    assert mel1 < 0.75 * mel0, (mel0, mel1)
    # dead-code restarts keep the first RVQ stage in use (without them it collapses to one
    # code within ~30 steps on these tones: perplexity 1.0)
    assert sum(r["perplexity"] for r in recs[-5:]) / 5 > 2.0
    assert sum(r["codes_restarted"] for r in recs) > 0
    # warm-up: no adversarial terms before disc_start, both after
    assert all(r["disc_loss"] == 0.0 and r["adv_loss"] == 0.0 for r in recs[:disc_start])
    assert all(r["disc_loss"] > 0.0 and r["fm_loss"] > 0.0 for r in recs[disc_start:])
    assert summary["frames_per_s"] > 0
    final = out / "final"
    enc, dec = load_checkpoint(final / "encoder"), load_checkpoint(final / "decoder")
    assert (final / "discriminator.safetensors").is_file()
    assert (out / "samples" / f"step_{steps:08d}_codec.wav").is_file()  # audio sample at the checkpoint
    wav = synthetic_audio(1, 0.2, seed=5)[0][None]
    with torch.no_grad():
        codes = dec.quantize(enc(wav))
        assert codes.shape == (1, wav.shape[-1] // enc.hop_length, dec.cfg.num_quantizers)
        assert dec.decode(codes).shape == (1, 1, wav.shape[-1])


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    true = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    x = torch.cat([c + 0.1 * torch.randn(200, 2, generator=g) for c in true])
    c = kmeans(x, 3, 10, torch.Generator().manual_seed(1))
    # every true centre has a found centre within 0.1
    assert torch.cdist(true, c).min(1).values.max() < 0.1
    # cosine assignment keeps plain means (the inputs' scale): here 2 directions, 3 scales
    d = torch.cat([torch.tensor([[1.0, 0.0]]) * torch.linspace(1, 3, 50)[:, None],
                   torch.tensor([[0.0, 1.0]]) * torch.linspace(1, 3, 50)[:, None]])
    c = kmeans(d, 2, 10, torch.Generator().manual_seed(0), cosine=True)
    assert sorted(c.norm(dim=1).round().tolist()) == [2.0, 2.0]
    # fewer points than centres: with replacement, still k rows
    assert kmeans(x[:2], 5, 3, torch.Generator().manual_seed(0)).shape == (5, 2)


def test_acoustic_codec_kmeans_init_spreads_codes(tmp_path):
    """k-means init before step 1: every RVQ stage uses most of its codebook on the data it
    was fitted on (random init: perplexity ~7-12 of 256 on these tones)."""
    tr = make_trainer(acoustic_config(tmp_path / "km", 1, 10, kmeans_init=True, kmeans_frames=2000))
    gen = tr.unwrap(tr.nets["generator"])

    def perplexities():
        with torch.no_grad():
            z = torch.cat([gen.encoder(w[None, None]) for w in tr.items], -1)
            ids = gen.decoder.quantizer.encode(z)
        return [codebook_stats(ids[..., i], tr.dec_cfg.codebook_size)["perplexity"] for i in range(ids.shape[-1])]

    before = perplexities()
    tr._kmeans_init()
    after = perplexities()
    assert min(after) > 2 * max(before) and min(after) > 50, (before, after)


def test_acoustic_codec_kill_and_resume_matches_both_optimisers(tmp_path):
    """Stop at step 3 (inside the adversarial phase), resume: step-6 losses equal."""
    n, k, disc_start = 6, 3, 2
    a, b = tmp_path / "a", tmp_path / "b"
    make_trainer(acoustic_config(a, n, disc_start)).train()
    tr = make_trainer(acoustic_config(b, n, disc_start))
    tr.train(until=k)
    st = torch.load(tr.latest_checkpoint(b) / "trainer.pt", weights_only=False)
    assert set(st["optimizers"]) == set(st["schedulers"]) == {"generator", "discriminator"}
    assert st["extra"]["code_usage"].sum() > 0  # dead-code counters travel with the checkpoint
    assert st["optimizers"]["discriminator"]["state"], "discriminator optimiser state not saved"
    resumed = make_trainer(acoustic_config(b, n, disc_start), resume=True)
    assert resumed.step == k
    sd = resumed.optimizers["discriminator"].state_dict()
    assert torch.equal(
        next(iter(sd["state"].values()))["exp_avg"], next(iter(st["optimizers"]["discriminator"]["state"].values()))["exp_avg"]
    )
    resumed.train()
    ra, rb = {r["step"]: r for r in read_log(a)}, {r["step"]: r for r in read_log(b)}
    for key in ("loss", "disc_loss", "mel_loss", "adv_loss"):
        assert abs(ra[n][key] - rb[n][key]) < RESUME_TOL, (key, ra[n][key], rb[n][key])


def test_acoustic_codec_rejects_unknown_objective_setting(tmp_path):
    from metis_speech.errors import MetisError

    with pytest.raises(MetisError, match="unknown setting"):
        make_trainer(acoustic_config(tmp_path / "x", 2, 0, mel_wieght=3.0))


def test_acoustic_codec_mpd_only_gan_trains_and_both_widths_zero_is_refused(tmp_path):
    from metis_speech.errors import MetisError

    out = tmp_path / "mpd"
    make_trainer(acoustic_config(out, 3, 1, mrd_width=0)).train()
    recs = read_log(out)
    assert recs[0]["disc_loss"] == 0.0 and all(r["disc_loss"] > 0.0 and r["fm_loss"] > 0.0 for r in recs[1:])
    with pytest.raises(MetisError, match="discriminator widths"):
        make_trainer(acoustic_config(tmp_path / "none", 2, 0, mpd_width=0, mrd_width=0))


def test_metis_train_cli_acoustic_codec_tiny(tmp_path, capsys):
    from metis_speech.training.cli import main

    out = tmp_path / "cli"
    rc = main(["acoustic_codec_tiny", "--out", str(out), "--max-steps", "2", "--no-progress"])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["step"] == 2 and line["loss"] > 0
    assert (out / "final" / "encoder" / "config.json").is_file()


def test_semantic_codec_data_from_feature_shards_and_from_audio(tmp_path):
    import soundfile as sf

    from metis_speech.training.codec_train import synthetic_features, write_feature_shard

    feats = synthetic_features(n=6, dim=128, min_frames=16, max_frames=24)
    write_feature_shard(tmp_path / "feats" / "a.safetensors", [(f"u{i}", x) for i, x in enumerate(feats)] + [("bad", torch.zeros(20, 7))])
    tr = make_trainer(semantic_config(tmp_path / "s1", 2, data={"path": str(tmp_path / "feats"), "synthetic": None, "max_frames": 100}))
    assert len(tr.items) == 6 and tr.skipped == {"features not (T, 128)": 1}
    tr.train()
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i, w in enumerate(synthetic_audio(4, 0.6, sample_rate=16000, seed=2)):
        sf.write(str(wavs / f"{i}.wav"), w.numpy(), 16000)
    (wavs / "broken.wav").write_bytes(b"RIFF....")
    tr = make_trainer(semantic_config(tmp_path / "s2", 2, data={"path": str(wavs), "synthetic": None, "max_frames": 100}))
    assert len(tr.items) == 4 and tr.skipped == {"unreadable audio": 1}
    assert all(x.shape[1] == 128 and 28 <= x.shape[0] <= 31 for x in tr.items)  # 0.6 s at 50 Hz
    tr.train()
    assert (tmp_path / "s2" / "final" / "model.safetensors").is_file()


SYNC_SCRIPT = """
import hashlib, sys, torch
torch.set_num_threads(1)
from metis_speech.training.trainer import load_train_config, make_trainer
tr = make_trainer(load_train_config(sys.argv[1]))
tr.train()
for k, m in tr.nets.items():
    h = hashlib.sha1(b"".join(p.detach().cpu().numpy().tobytes() for p in tr.unwrap(m).parameters())).hexdigest()
    print(f"SYNC rank{tr.rank} {k} {h}", flush=True)
"""


def test_two_process_gan_keeps_ranks_in_sync(tmp_path):
    """accelerate launch, 2 CPU processes (gloo): GAN steps + dead-code restarts leave the
    generator and discriminator identical on both ranks; one checkpoint is written."""
    import os
    import shutil
    import subprocess

    import yaml

    if torch.cuda.is_available():
        pytest.skip("this test checks the CPU (gloo) path")
    launcher = shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not on PATH")
    cfg = acoustic_config(tmp_path / "run", 3, 0).to_dict()
    cfg["objective"]["dead_code_restart_every"] = 2
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "sync.py").write_text(SYNC_SCRIPT)
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(tmp_path / "sync.py"), str(tmp_path / "cfg.yaml")]
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = sorted(l.split()[1:] for l in r.stdout.splitlines() if l.startswith("SYNC"))
    by_net = {}
    for rank, net, h in lines:
        by_net.setdefault(net, set()).add(h)
    assert set(by_net) == {"generator", "discriminator"} and len(lines) == 4
    assert all(len(hs) == 1 for hs in by_net.values()), lines
    meta = json.loads((tmp_path / "run" / "checkpoints" / "step_00000003" / "meta.json").read_text())
    assert meta["world_size"] == 2


def test_acoustic_decoder_finetune_from_a_bundle_keeps_the_ids(tmp_path):
    """model.init_from a bundle (its acoustic_encoder / acoustic_decoder) with train_parts
    'decoder': the encoder and the codebooks stay as the bundle has them (its ids stay valid),
    the vocoder after the quantizer learns."""
    from metis_speech.bundle import random_bundle
    from metis_speech.errors import MetisError

    bundle = random_bundle(tmp_path / "b", "tiny", tasks=("tts",), with_s2a_1layer=False)
    cfg = acoustic_config(tmp_path / "ft", 3, 1, train_parts="decoder", dead_code_restart_every=0).to_dict()
    cfg["model"] = {"preset": "tiny", "component": "acoustic_codec", "init_from": str(bundle)}
    make_trainer(load_train_config(cfg)).train()
    enc0, dec0 = load_checkpoint(bundle / "acoustic_encoder"), load_checkpoint(bundle / "acoustic_decoder")
    enc1, dec1 = load_checkpoint(tmp_path / "ft" / "final" / "encoder"), load_checkpoint(tmp_path / "ft" / "final" / "decoder")
    assert all(torch.equal(a, b) for a, b in zip(enc0.state_dict().values(), enc1.state_dict().values()))
    q0, q1 = dec0.quantizer.state_dict(), dec1.quantizer.state_dict()
    assert all(torch.equal(q0[k], q1[k]) for k in q0)
    s0, s1 = dec0.state_dict(), dec1.state_dict()
    assert any(not torch.equal(s0[k], s1[k]) for k in s0 if not k.startswith("quantizer."))
    cfg["model"]["init_from"] = str(tmp_path / "nothing")
    cfg["train"]["out"] = str(tmp_path / "ft2")
    with pytest.raises(MetisError, match="model.init_from .*neither a bundle"):
        make_trainer(load_train_config(cfg))
