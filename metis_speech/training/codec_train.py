"""Trainers for the two codecs: the semantic codec (VQ over SSL features) and the acoustic
codec (DAC-style encoder + residual FVQ + Vocos decoder, trained as a GAN).

Both are :class:`~metis_speech.training.loop.LoopTrainer` subclasses (the run layout,
checkpoints and exact resume of :class:`~metis_speech.training.trainer.Trainer`); they define
the networks, the data and ``train_step``.

Recipes (``metis_speech/recipes``): ``model.component`` picks the trainer
(``semantic_codec``, ``acoustic_codec``, ``visual_encoder``); ``objective`` holds its
settings (loss weights, segment length, discriminator sizes); ``optim`` is the (generator)
optimiser, ``objective.disc_*`` the discriminator's.

Semantic codec data: ``data.synthetic`` (clustered random features, see
:func:`synthetic_features`) or ``data.path``: a directory of ``*.safetensors`` files whose
2-D float tensors named ``<id>/ssl`` are normalised SSL features (T, H) at 50 Hz
(:func:`write_feature_shard`), or audio (a directory of audio files without shards, or a
JSONL manifest) whose features an SSL front end computes once at start-up: the one of
``objective.ssl_source`` (a bundle, its ``ssl/`` directory, ``hub``, an official directory or
``random:PRESET``, loaded as :class:`~metis_speech.pipeline.Metis` loads it, so that the codec
learns exactly the features that bundle computes), else a random one built from the preset.
The SSL used is recorded in ``<out>/final/ssl.json`` (source and fingerprint), which
:func:`~metis_speech.bundle.assemble_bundle` checks against the bundle's SSL.
Acoustic codec data: ``data.synthetic`` (harmonic tones, :func:`synthetic_audio`) or
``data.path``: a directory of audio files (wav/flac/mp3/ogg, any rate, resampled to 24 kHz)
or a JSONL manifest with an ``audio`` field; random segments of ``objective.segment_frames``
codec frames are cut each step.

Final outputs in ``<out>/final``: semantic codec -> a :func:`~metis_speech.loading.save_checkpoint`
directory; acoustic codec -> ``encoder/`` and ``decoder/`` checkpoint directories (load each
with :func:`~metis_speech.loading.load_checkpoint`) and ``discriminator.safetensors``; at
every checkpoint the acoustic trainer also writes an audio sample pair to ``<out>/samples``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import MetisError
from .loop import LoopTrainer

__all__ = [
    "LoopTrainer",
    "SemanticCodecTrainer",
    "AcousticCodecTrainer",
    "synthetic_features",
    "synthetic_audio",
    "codebook_stats",
    "kmeans",
    "kmeans_init_rvq",
    "write_feature_shard",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


# ------------------------------------------------------------------ helpers
def codebook_stats(ids: torch.Tensor, codebook_size: int) -> Dict[str, float]:
    """Usage (fraction of codes used) and perplexity (exp entropy) of ids (any shape)."""
    counts = torch.bincount(ids.reshape(-1).long(), minlength=codebook_size).float()
    p = counts / counts.sum().clamp(min=1)
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return {"codebook_usage": float((counts > 0).float().mean()), "perplexity": float(ent.exp())}


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator, cosine: bool = False) -> torch.Tensor:
    """Lloyd's k-means. x: (N, d) -> centres (k, d). Initial centres are distinct random
    points (with replacement when N < k, plus 1% noise); a centre left empty is re-drawn from
    a random point. ``cosine``: points join the centre of highest cosine similarity (as an
    L2-normalising VQ looks codes up); centres stay plain means, so that their scale is the
    inputs' (the VQ outputs the raw codebook row)."""
    x = x.float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    xa = torch.nn.functional.normalize(x, dim=1) if cosine else x
    pick = torch.randperm(n, generator=generator)[:k] if n >= k else torch.randint(0, n, (k,), generator=generator)
    c = x[pick].clone()
    if n < k:
        c += 0.01 * x.std() * torch.randn(c.shape, generator=generator)
    for _ in range(max(0, int(iters))):
        if cosine:
            assign = (xa @ torch.nn.functional.normalize(c, dim=1).t()).argmax(1)
        else:
            assign = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp(min=1)[:, None])
        if bool(empty.any()):
            c[empty] = x[torch.randint(0, n, (int(empty.sum()),), generator=generator)]
    return c


@torch.no_grad()
def kmeans_init_rvq(quantizer: nn.Module, z: torch.Tensor, iters: int, generator: torch.Generator) -> None:
    """Set every stage's codebook of a ResidualVQ to k-means centres of that stage's
    in-projected inputs, stage by stage on the previous stages' residual. z: (1, D, N)."""
    residual = z
    for stage in quantizer.quantizers:
        flat = stage.in_project(residual)[0].t().cpu()
        centres = kmeans(flat, stage.codebook_size, iters, generator, cosine=stage.l2_normalize)
        stage.codebook.weight.copy_(centres.to(stage.codebook.weight))
        residual = residual - stage(residual).quantized


def synthetic_features(n: int = 64, dim: int = 128, min_frames: int = 16, max_frames: int = 48,
                       clusters: int = 16, noise: float = 0.1, seed: int = 0) -> List[torch.Tensor]:
    """Learnable stand-ins for normalised SSL features: piecewise-constant runs of ``clusters``
    random unit-variance prototypes plus Gaussian noise. -> n tensors (T, dim)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(clusters, dim, generator=g)
    out = []
    for _ in range(n):
        t = int(torch.randint(min_frames, max_frames + 1, (1,), generator=g))
        runs = torch.randint(2, 8, (t,), generator=g)
        ids, i = [], 0
        while len(ids) < t:
            ids += [int(torch.randint(clusters, (1,), generator=g))] * int(runs[i % t])
            i += 1
        x = protos[torch.tensor(ids[:t])] + noise * torch.randn(t, dim, generator=g)
        out.append(x)
    return out


def synthetic_audio(n: int = 16, seconds: float = 1.0, sample_rate: int = 24000, seed: int = 0) -> List[torch.Tensor]:
    """Harmonic test signals: a gliding f0 in 90-300 Hz with 1-8 decaying harmonics, a slow
    amplitude envelope and a little noise, peak 0.5. -> n tensors (S,)."""
    g = torch.Generator().manual_seed(seed)
    s = int(seconds * sample_rate)
    t = torch.arange(s, dtype=torch.float64) / sample_rate
    out = []
    for _ in range(n):
        r = torch.rand(6, generator=g, dtype=torch.float64)
        f0 = (90 + 210 * r[0]) * (1 + 0.2 * (r[1] - 0.5) * t / max(seconds, 1e-9))
        phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
        n_harm = 1 + int(r[2] * 8)
        x = sum(torch.sin(k * phase) / k ** (1 + r[3]) for k in range(1, n_harm + 1))
        env = 0.6 + 0.4 * torch.sin(2 * math.pi * (1 + 3 * r[4]) * t + 6 * r[5])
        x = x * env + 0.01 * torch.randn(s, generator=g, dtype=torch.float64)
        out.append((0.5 * x / x.abs().max()).float())
    return out


def _read_audio_files(path: Path, sample_rate: int, skip) -> List[torch.Tensor]:
    """Mono waveforms (S,) at ``sample_rate`` from a directory of audio files or a JSONL
    manifest with an ``audio`` field; unreadable files are counted with ``skip(reason)``."""
    from ..audio import load_audio
    from ..errors import AudioError

    if path.is_file() and path.suffix == ".jsonl":
        files = []
        for line in path.read_text().splitlines():
            if line.strip():
                p = Path(json.loads(line)["audio"])
                files.append(p if p.is_absolute() else path.parent / p)
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    else:
        raise MetisError(f"{path}: expected a directory of audio files or a .jsonl manifest")
    out = []
    for f in files:
        try:
            wav, _ = load_audio(f, sample_rate)
        except AudioError:
            skip("unreadable audio")
            continue
        out.append(torch.from_numpy(np.ascontiguousarray(wav)))
    return out


def write_feature_shard(path: Union[str, Path], items) -> Path:
    """Write (id, features (T, H)) pairs as ``<id>/ssl`` tensors to one shard, atomically."""
    from ..checkpoint import save_weights

    tensors = {}
    for uid, feats in items:
        if "/" in uid:
            raise ValueError(f"utterance id {uid!r} must not contain '/'")
        tensors[f"{uid}/ssl"] = torch.as_tensor(feats).float().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    save_weights(tensors, tmp, metadata={"format": "metis-features", "version": "1"})
    tmp.replace(path)
    return path


# ------------------------------------------------------------------ the loop
# ------------------------------------------------------------ semantic codec
SEMANTIC_OBJECTIVE = {
    "ssl_source": None,  # SSL front end for audio data: bundle dir | its ssl/ dir | hub | official dir | random:PRESET;
    # None: a random SSL built from the preset (matches no bundle)
    "kmeans_init": False,  # before the first step, codebooks <- k-means of the encoded features
    "kmeans_frames": 20000,  # at most this many feature frames for k-means
    "kmeans_iters": 10,
}


class SemanticCodecTrainer(LoopTrainer):
    """RepCodec training: features (B, T, H) -> encoder -> VQ -> decoder; loss = masked MSE
    reconstruction + commitment + codebook (weights from the codec config). Logs codebook
    usage and perplexity of the batch's ids. ``objective``: ``ssl_source`` (audio data only);
    ``kmeans_init`` (+ ``kmeans_frames``, ``kmeans_iters``): in a fresh run, the codebooks start
    as k-means centres of the encoded training features (without it the tiny codec's ids
    collapse within ~20 steps on corpus speech)."""

    ssl_info: Optional[dict] = None  # the SSL that computed the features (audio data), saved as final/ssl.json

    def build(self) -> None:
        from ..models.semantic_codec import SemanticCodec

        unknown = sorted(set(self.cfg.objective) - set(SEMANTIC_OBJECTIVE))
        if unknown:
            raise MetisError(f"semantic codec objective: unknown setting(s) {unknown}; known: {sorted(SEMANTIC_OBJECTIVE)}")
        m = self.cfg.model
        self.model_cfg = self.preset_config(m.component if m.component != "semantic_codec" else "semantic_codec", m.overrides)
        codec = SemanticCodec(self.model_cfg)
        self.init_from(codec, m.init_from)
        opt, sched = self.make_optimizer(codec.parameters())
        codec, opt = self.accelerator.prepare(codec, opt)
        self.nets = nn.ModuleDict({"codec": codec})
        self.optimizers, self.schedulers = {"codec": opt}, {"codec": sched}
        self.items, self.lengths = self._load_items()

    def _load_items(self):
        d, h = self.cfg.data, self.model_cfg.hidden_size
        if d.synthetic is not None:
            syn = dict(d.synthetic)
            syn.setdefault("dim", h)
            feats = synthetic_features(**syn)
        else:
            path = Path(d.path)
            if path.suffix == ".jsonl" or (path.is_dir() and not any(path.glob("*.safetensors"))):
                feats = self._features_from_audio(path)
            else:
                feats = self._read_feature_shards(path, h)
        lo, hi = d.min_utt_frames, d.max_utt_frames
        items = []
        for x in feats:
            if x.shape[0] < lo:
                self.skip("too short")
            elif hi is not None and x.shape[0] > hi:
                self.skip("too long")
            elif not torch.isfinite(x).all():
                self.skip("non-finite features")
            else:
                items.append(x.float())
        if not items:
            raise MetisError(f"no usable feature sequences (skipped: {self.skipped})")
        return items, [int(x.shape[0]) for x in items]

    def _ssl(self):
        """The SSL front end of ``objective.ssl_source`` (else a random one from the preset),
        and its record for ``final/ssl.json``."""
        from ..bundle import ssl_fingerprint
        from ..models.ssl import SSLFeatureExtractor
        from ..sources import ssl_from_source

        src = self.cfg.objective.get("ssl_source")
        if src is None:
            ssl = SSLFeatureExtractor.from_config(self.preset_config("ssl")).to(self.accelerator.device)
            label = f"preset:{self.cfg.model.preset} (random)"
        else:
            ssl = ssl_from_source(src, self.accelerator.device)
            label = str(Path(src).resolve()) if Path(str(src)).exists() else str(src)
        info = {"source": label, "fingerprint": ssl_fingerprint(ssl), "hidden_size": ssl.hidden_size,
                "hidden_state_index": ssl.hidden_state_index}
        return ssl.eval(), info

    def _features_from_audio(self, path: Path) -> List[torch.Tensor]:
        """SSL features computed once at start-up (see :meth:`_ssl`), one clip per forward;
        unreadable/too-short clips are skipped."""
        from ..errors import AudioError

        ssl, self.ssl_info = self._ssl()
        if ssl.hidden_size != self.model_cfg.hidden_size:
            raise MetisError(f"SSL features have {ssl.hidden_size} dims, the semantic codec expects {self.model_cfg.hidden_size}")
        wavs = _read_audio_files(path, ssl.sample_rate, self.skip)
        out = []
        with torch.no_grad():
            for w in wavs:
                try:
                    f = ssl([w.numpy()], ssl.sample_rate)
                except AudioError:
                    self.skip("too short for the SSL front end")
                    continue
                out.append(f.features[0][f.mask[0]].float().cpu())
        return out

    def _read_feature_shards(self, path: Path, dim: int) -> List[torch.Tensor]:
        from safetensors.torch import load_file

        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files:
            raise MetisError(f"{path}: no *.safetensors feature shards")
        out = []
        for f in files:
            try:
                tensors = load_file(str(f))
            except Exception:  # noqa: BLE001 - a corrupt shard is skipped, not fatal
                self.skip("unreadable shard")
                continue
            for k in sorted(tensors):
                if not k.endswith("/ssl"):
                    continue
                x = tensors[k]
                if x.dim() != 2 or x.shape[1] != dim:
                    self.skip(f"features not (T, {dim})")
                    continue
                out.append(x)
        return out

    def collate(self, items: list) -> dict:
        t = max(x.shape[0] for x in items)
        feats = torch.zeros(len(items), t, items[0].shape[1])
        mask = torch.zeros(len(items), t, dtype=torch.bool)
        for i, x in enumerate(items):
            feats[i, : x.shape[0]], mask[i, : x.shape[0]] = x, True
        return {"features": feats, "mask": mask}

    @torch.no_grad()
    def _kmeans_init(self) -> None:
        codec = self.unwrap(self.nets["codec"])
        o = {**SEMANTIC_OBJECTIVE, **self.cfg.objective}
        feats, n = [], 0
        for x in self.items:
            if n >= int(o["kmeans_frames"]):
                break
            feats.append(x[: int(o["kmeans_frames"]) - n])
            n += feats[-1].shape[0]
        x = torch.cat(feats)[None].to(self.accelerator.device)  # (1, N, H)
        was = codec.training
        codec.eval()
        g = torch.Generator().manual_seed(int(self.cfg.train.seed) * 7919)  # equal on every rank
        kmeans_init_rvq(codec.quantizer, codec.encode(x).float(), int(o["kmeans_iters"]), g)
        codec.train(was)

    def train_step(self, batch: dict) -> Dict[str, float]:
        acc, codec, opt = self.accelerator, self.nets["codec"], self.optimizers["codec"]
        if self.step == 0 and self.cfg.objective.get("kmeans_init"):
            self._kmeans_init()
        with acc.autocast():
            out = codec(batch["features"], batch["mask"])
        acc.backward(out.loss)
        gn = self.clip(codec)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stats = {
            "loss": float(out.loss.detach()),
            "recon_loss": float(out.recon_loss.detach()),
            "commit_loss": float(out.commit_loss.detach()),
            "codebook_loss": float(out.codebook_loss.detach()),
            "frames": float(batch["mask"].sum()),
            **codebook_stats(out.ids[batch["mask"]], self.model_cfg.codebook_size),
        }
        if gn is not None:
            stats["grad_norm"] = gn
        return stats

    def save_final(self) -> Path:
        from ..loading import save_checkpoint

        final = save_checkpoint(self.unwrap(self.nets["codec"]).float().eval(), self.out / "final")
        if self.ssl_info is not None:
            (final / "ssl.json").write_text(json.dumps(self.ssl_info, indent=1) + "\n")
        return final


# ------------------------------------------------------------ acoustic codec
class _Generator(nn.Module):
    """Encoder + decoder as one module for the generator step (one forward for DDP).

    wav (B, 1, S) -> (wav_hat (B, 1, S), codes (B, T, Q), commit (), codebook ())."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, wav: torch.Tensor, generator: Optional[torch.Generator] = None):
        out = self.decoder(self.encoder(wav), generator=generator)
        return out.wav, out.codes, out.commit_loss, out.codebook_loss


ACOUSTIC_OBJECTIVE = {
    "segment_frames": 20,  # codec frames per training segment (x hop samples)
    "mel_weight": 15.0,  # DAC
    "stft_weight": 1.0,
    "adv_weight": 1.0,
    "fm_weight": 2.0,
    "vq_weight": 1.0,  # x (commitment + codebook), each already weighted in the quantizer
    "gan_loss": "hinge",  # hinge (Vocos) | lsgan (HiFi-GAN)
    "disc_start": 0,  # steps of reconstruction-only training before the adversarial losses (a value below 1:
    # that fraction of train.max_steps, which a time budget may shorten)
    "disc_lr": None,  # default optim.lr
    "disc_betas": None,  # default optim.betas
    "dead_code_restart_every": 0,  # >0: every N steps, codes unused in those N steps are
    # re-drawn from the current batch's quantizer inputs (Jukebox/Encodec-style; 0 = off)
    "kmeans_init": False,  # before the first step, set every RVQ stage's codebook to k-means
    # centres of its inputs over the training audio (SoundStream/Encodec-style)
    "kmeans_frames": 20000,  # at most this many codec frames of the data for k-means
    "kmeans_iters": 10,
    "train_parts": "all",  # all | decoder: only the decoder after the quantizer learns (the encoder and the
    # codebooks stay frozen, so the codec's ids, and an S2A trained on them, stay valid)
    "mpd_width": 1.0,  # channel scale of the multi-period discriminator (0 = left out)
    "mrd_width": 1.0,  # and of the multi-resolution one (0 = left out; not both)
    "periods": [2, 3, 5, 7, 11],
    "stft_resolutions": [[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]],
    "mel_windows": [32, 64, 128, 256, 512, 1024, 2048],
    "mel_bins": [5, 10, 20, 40, 80, 160, 320],
}


class AcousticCodecTrainer(LoopTrainer):
    """Acoustic codec GAN: generator = encoder + residual FVQ (quantizer dropout) + Vocos
    decoder; discriminator = multi-period + multi-resolution (:class:`CodecDiscriminator`).

    Per step, after ``objective.disc_start`` steps: discriminator step (own AdamW and
    schedule) on real vs detached fake, then generator step with
    ``mel_weight·mel + stft_weight·MR-STFT + adv_weight·adv + fm_weight·FM + vq_weight·VQ``.
    Before ``disc_start`` only the reconstruction and VQ terms train the generator.
    With ``kmeans_init``, every stage's codebook starts as k-means centres of that stage's
    inputs over up to ``kmeans_frames`` codec frames of the training audio (stage by stage,
    each on the previous stages' residual; same on every process; only in a fresh run).
    With ``dead_code_restart_every`` = N > 0, codes of any stage unused for N steps are
    re-drawn from that stage's current inputs (without it the tiny codec's RVQ collapses to
    one code per stage within ~30 steps on synthetic tones); the usage counters are
    checkpointed.
    ``model.overrides`` = ``{"encoder": {...}, "decoder": {...}}`` on the preset's
    ``acoustic_encoder`` / ``acoustic_decoder``.
    """

    frames_unit = "codec frames"

    def build(self) -> None:
        from ..models.acoustic_codec import AcousticDecoder, AcousticEncoder
        from .discriminators import CodecDiscriminator
        from .losses import MultiResolutionSTFTLoss, MultiScaleMelLoss

        unknown = sorted(set(self.cfg.objective) - set(ACOUSTIC_OBJECTIVE))
        if unknown:
            raise MetisError(f"acoustic codec objective: unknown setting(s) {unknown}; known: {sorted(ACOUSTIC_OBJECTIVE)}")
        self.obj = o = {**ACOUSTIC_OBJECTIVE, **self.cfg.objective}
        ov = self.cfg.model.overrides or {}
        bad = sorted(set(ov) - {"encoder", "decoder"})
        if bad:
            raise MetisError(f"acoustic codec model.overrides: use 'encoder' and 'decoder' sub-sections, got {bad}")
        self.enc_cfg = self.preset_config("acoustic_encoder", ov.get("encoder"))
        self.dec_cfg = self.preset_config("acoustic_decoder", ov.get("decoder"))
        if self.enc_cfg.hop_length != self.dec_cfg.hop_size or self.enc_cfg.out_channels != self.dec_cfg.in_channels:
            raise MetisError("acoustic codec: encoder hop/out_channels must match decoder hop_size/in_channels")
        self.sample_rate, self.hop = self.enc_cfg.sample_rate, self.enc_cfg.hop_length
        gen = _Generator(AcousticEncoder(self.enc_cfg), AcousticDecoder(self.dec_cfg))
        if self.cfg.model.init_from:
            from ..shipped import acoustic_codec_dirs

            try:
                enc_dir, dec_dir = acoustic_codec_dirs(self.cfg.model.init_from)
            except MetisError as e:
                raise MetisError(f"model.init_from {e}") from None
            self.init_from(gen.encoder, str(enc_dir))
            self.init_from(gen.decoder, str(dec_dir))
        if o["train_parts"] not in ("all", "decoder"):
            raise MetisError(f"acoustic codec objective: train_parts must be 'all' or 'decoder', got {o['train_parts']!r}")
        if o["train_parts"] == "decoder":
            if o["kmeans_init"] or int(o["dead_code_restart_every"]) > 0:
                raise MetisError("acoustic codec: train_parts 'decoder' keeps the codebooks; turn off kmeans_init and "
                                 "dead_code_restart_every")
            if not self.cfg.model.init_from:
                raise MetisError("acoustic codec: train_parts 'decoder' needs model.init_from (a trained codec)")
            for p in list(gen.encoder.parameters()) + list(gen.decoder.quantizer.parameters()):
                p.requires_grad_(False)
        try:
            disc = CodecDiscriminator(o["periods"], o["stft_resolutions"], float(o["mpd_width"]), float(o["mrd_width"]))
        except ValueError as e:
            raise MetisError(f"acoustic codec objective: {e}") from None
        opt_g, sched_g = self.make_optimizer(gen.parameters())
        opt_d, sched_d = self.make_optimizer(disc.parameters(), lr=o["disc_lr"], betas=o["disc_betas"])
        gen, disc, opt_g, opt_d = self.accelerator.prepare(gen, disc, opt_g, opt_d)
        self.nets = nn.ModuleDict({"generator": gen, "discriminator": disc})
        self.optimizers = {"generator": opt_g, "discriminator": opt_d}
        self.schedulers = {"generator": sched_g, "discriminator": sched_d}
        dev = self.accelerator.device
        self.mel_loss = MultiScaleMelLoss(self.sample_rate, o["mel_windows"], o["mel_bins"]).to(dev)
        self.stft_loss = MultiResolutionSTFTLoss(o["stft_resolutions"]).to(dev)
        self.segment = int(o["segment_frames"]) * self.hop
        self.items, self.lengths = self._load_items()
        q = self.unwrap(gen).decoder.quantizer
        self.code_usage = torch.zeros(q.num_quantizers, self.dec_cfg.codebook_size)
        self._stage_inputs: List[Optional[torch.Tensor]] = [None] * q.num_quantizers
        if int(o["dead_code_restart_every"]) > 0:
            for i, stage in enumerate(q.quantizers):
                stage.register_forward_hook(self._capture_stage_input(i))

    def _capture_stage_input(self, i: int):
        def hook(module, args, out):
            self._stage_inputs[i] = out.z_e.detach()
        return hook

    def extra_state(self) -> dict:
        return {"code_usage": self.code_usage.clone()}

    def load_extra_state(self, state: dict) -> None:
        if "code_usage" in state:
            self.code_usage = state["code_usage"].clone()

    @torch.no_grad()
    def _restart_dead_codes(self) -> int:
        """Replace codes unused since the last restart by random in-projected inputs of this
        step's batch (plus 1% noise); returns how many were replaced."""
        q = self.unwrap(self.nets["generator"]).decoder.quantizer
        if self.world > 1:  # usage over all ranks; rank 0 draws, everyone takes its codebooks
            import torch.distributed as dist

            usage = self.code_usage.to(self.accelerator.device)
            dist.all_reduce(usage)
            self.code_usage = usage.cpu()
        n = 0
        for i, stage in enumerate(q.quantizers):
            z = self._stage_inputs[i]
            if z is None:
                continue
            flat = z.transpose(1, 2).reshape(-1, z.shape[1]).float()
            dead = (self.code_usage[i] == 0).nonzero()[:, 0]
            if dead.numel() == 0:
                continue
            pick = torch.randint(0, flat.shape[0], (dead.numel(),), generator=self.generator)
            noise = 0.01 * torch.randn(dead.numel(), flat.shape[1], generator=self.generator)
            w = stage.codebook.weight
            w[dead.to(w.device)] = (flat[pick.to(flat.device)].cpu() + noise).to(w)
            n += dead.numel()
        if self.world > 1:
            for stage in q.quantizers:
                dist.broadcast(stage.codebook.weight.data, src=0)
        self.code_usage.zero_()
        return n

    @torch.no_grad()
    def _kmeans_init(self) -> None:
        """Codebooks <- k-means of each stage's in-projected inputs (see the class docstring)."""
        gen = self.unwrap(self.nets["generator"])
        q = gen.decoder.quantizer
        dev = self.accelerator.device
        budget = int(self.obj["kmeans_frames"]) * self.hop
        g = torch.Generator().manual_seed(int(self.cfg.train.seed) * 7919)  # equal on every rank
        was = gen.training
        gen.eval()
        latents, used = [], 0
        for w in self.items:
            if used >= budget:
                break
            w = w[: budget - used]
            if w.numel() < self.hop:
                continue
            latents.append(gen.encoder(w.to(dev)[None, None]).float())  # (1, D, T)
            used += w.numel()
        if not latents:
            gen.train(was)
            return
        z = torch.cat([z[0].t() for z in latents])[None].transpose(1, 2)  # (1, D, N)
        kmeans_init_rvq(q, z, int(self.obj["kmeans_iters"]), g)
        gen.train(was)

    def _load_items(self):
        d = self.cfg.data
        if d.synthetic is not None:
            syn = dict(d.synthetic)
            syn.setdefault("sample_rate", self.sample_rate)
            wavs = synthetic_audio(**syn)
        else:
            wavs = self._read_audio(Path(d.path))
        items = []
        for w in wavs:
            if w.numel() < self.hop * max(1, self.cfg.data.min_utt_frames):
                self.skip("too short")
            elif float(w.abs().max()) < 1e-4:
                self.skip("silent")
            else:
                items.append(w)
        if not items:
            raise MetisError(f"no usable audio (skipped: {self.skipped})")
        frames = int(self.obj["segment_frames"])
        return items, [frames] * len(items)  # every item yields one fixed-length segment

    def _read_audio(self, path: Path) -> List[torch.Tensor]:
        return _read_audio_files(path, self.sample_rate, self.skip)

    def collate(self, items: list) -> dict:
        """Random ``segment`` samples from each item (zero-padded when shorter), drawn from the
        trainer's generator so that a resumed run cuts the same segments."""
        segs = torch.zeros(len(items), 1, self.segment)
        for i, w in enumerate(items):
            if w.numel() > self.segment:
                start = int(torch.randint(0, w.numel() - self.segment + 1, (1,), generator=self.generator))
                segs[i, 0] = w[start : start + self.segment]
            else:
                segs[i, 0, : w.numel()] = w
        return {"wav": segs}

    def train_step(self, batch: dict) -> Dict[str, float]:
        from .losses import discriminator_loss, feature_matching_loss, generator_adv_loss

        acc, o = self.accelerator, self.obj
        gen, disc = self.nets["generator"], self.nets["discriminator"]
        opt_g, opt_d = self.optimizers["generator"], self.optimizers["discriminator"]
        wav = batch["wav"]
        if self.step == 0 and o["kmeans_init"]:
            self._kmeans_init()
        ds = float(o["disc_start"])
        adversarial = self.step >= (int(ds * self.cfg.train.max_steps) if 0 < ds < 1 else int(ds))
        # the discriminator's warm-up/decay schedule starts with its first step
        self.idle_schedulers = () if adversarial else ("discriminator",)
        with acc.autocast():
            wav_hat, codes, commit, codebook = gen(wav, self.generator)
        wav_hat = wav_hat.float()
        stats: Dict[str, float] = {}
        if adversarial:  # discriminator step on real vs detached fake
            real_logits, _ = disc(wav)
            fake_logits, _ = disc(wav_hat.detach())
            d_loss = discriminator_loss(real_logits, fake_logits, o["gan_loss"])
            acc.backward(d_loss)
            gn = self.clip(disc)
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
            stats["disc_loss"] = float(d_loss.detach())
            if gn is not None:
                stats["disc_grad_norm"] = gn
        mel = self.mel_loss(wav_hat, wav)
        stft = self.stft_loss(wav_hat, wav)
        vq = commit + codebook
        g_loss = o["mel_weight"] * mel + o["stft_weight"] * stft + o["vq_weight"] * vq
        if adversarial:
            fake_logits, fake_fmaps = disc(wav_hat)
            with torch.no_grad():
                _, real_fmaps = disc(wav)
            adv = generator_adv_loss(fake_logits, o["gan_loss"])
            fm = feature_matching_loss(real_fmaps, fake_fmaps)
            g_loss = g_loss + o["adv_weight"] * adv + o["fm_weight"] * fm
            stats.update(adv_loss=float(adv.detach()), fm_loss=float(fm.detach()))
        acc.backward(g_loss)
        gn = self.clip(gen)
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)  # the generator's backward also reached the discriminator
        for i in range(codes.shape[-1]):
            self.code_usage[i] += torch.bincount(codes[..., i].reshape(-1).cpu(), minlength=self.dec_cfg.codebook_size)
        every = int(o["dead_code_restart_every"])
        if every > 0 and (self.step + 1) % every == 0:
            stats["codes_restarted"] = float(self._restart_dead_codes())
        elif every > 0:
            stats["codes_restarted"] = 0.0
        self._last_pair = (wav[0, 0].detach(), wav_hat[0, 0].detach())
        usage = codebook_stats(codes[..., 0], self.dec_cfg.codebook_size)
        stats.update(
            loss=float(g_loss.detach()), mel_loss=float(mel.detach()), stft_loss=float(stft.detach()),
            vq_loss=float(vq.detach()), frames=float(codes.shape[0] * codes.shape[1]),
            audio_seconds=float(wav.shape[0] * wav.shape[-1] / self.sample_rate),
            codebook_usage=usage["codebook_usage"], perplexity=usage["perplexity"],
        )
        stats.setdefault("disc_loss", 0.0)
        stats.setdefault("adv_loss", 0.0)
        stats.setdefault("fm_loss", 0.0)
        if gn is not None:
            stats["grad_norm"] = gn
        return stats

    def save_state(self) -> Path:
        """Checkpoint, plus ``<out>/samples/step_XXXXXXXX_{real,codec}.wav`` (the last batch's
        first segment and its reconstruction) from the main process."""
        path = super().save_state()
        pair = getattr(self, "_last_pair", None)
        if self.is_main and pair is not None:
            from ..audio import save_audio

            for tag, w in zip(("real", "codec"), pair):
                save_audio(self.out / "samples" / f"step_{self.step:08d}_{tag}.wav", w.float().cpu().numpy(), self.sample_rate)
        return path

    def save_final(self) -> Path:
        from ..checkpoint import save_weights
        from ..loading import save_checkpoint

        final = self.out / "final"
        gen = self.unwrap(self.nets["generator"])
        save_checkpoint(gen.encoder.float().eval(), final / "encoder")
        save_checkpoint(gen.decoder.float().eval(), final / "decoder")
        save_weights(self.unwrap(self.nets["discriminator"]).state_dict(), final / "discriminator.safetensors")
        return final
