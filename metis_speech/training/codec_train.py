"""Trainers for the two codecs: the semantic codec (VQ over SSL features) and the acoustic
codec (DAC-style encoder + residual FVQ + Vocos decoder, trained as a GAN).

Both share :class:`LoopTrainer`, a small loop with the same run-directory layout,
checkpoint format and resume guarantees as :class:`~metis_speech.training.trainer.Trainer`
(``<out>/checkpoints/step_XXXXXXXX`` written as ``.tmp-...`` and renamed, ``latest``
replaced atomically; ``model.safetensors`` holds every network of the run, ``trainer.pt``
every optimiser and scheduler by name, ``rng_<rank>.pt`` all RNG states, ``meta.json``
the step and data position), so ``metis train RECIPE --resume`` reproduces an
uninterrupted run exactly. Subclasses define the networks, the data and ``train_step``.

Recipes (``metis_speech/recipes``): ``model.component`` picks the trainer
(``semantic_codec``, ``acoustic_codec``, ``visual_encoder``); ``objective`` holds its
settings (loss weights, segment length, discriminator sizes); ``optim`` is the (generator)
optimiser, ``objective.disc_*`` the discriminator's.

Semantic codec data: ``data.synthetic`` (clustered random features, see
:func:`synthetic_features`) or ``data.path``: a directory of ``*.safetensors`` files whose
2-D float tensors named ``<id>/ssl`` are normalised SSL features (T, H) at 50 Hz
(:func:`write_feature_shard`), or audio (a directory of audio files without shards, or a
JSONL manifest) whose features the preset's ``ssl`` front end computes once at start-up.
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
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from ..config import config_from_dict, config_to_dict, load_preset
from ..errors import MetisError
from .trainer import (
    TrainConfig,
    Trainer,
    begin_checkpoint,
    publish_checkpoint,
    read_checkpoint_meta,
    _Logger,
    _peak_rss_mb,
    _set_rng_state,
    lr_lambda,
    plot_loss,
)

__all__ = [
    "LoopTrainer",
    "SemanticCodecTrainer",
    "AcousticCodecTrainer",
    "synthetic_features",
    "synthetic_audio",
    "codebook_stats",
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
class LoopTrainer:
    """Shared loop: device/processes (Accelerate), seeding, dynamic batching with a resumable
    data position, logging, atomic checkpoints of several networks and optimisers, resume.

    Subclasses set ``self.nets`` (``nn.ModuleDict``: everything checkpointed),
    ``self.optimizers`` / ``self.schedulers`` (dicts by name), ``self.items`` and
    ``self.lengths`` (batching units per item) in :meth:`build`, and implement
    :meth:`collate` and :meth:`train_step` (returns a dict of floats with at least ``loss``
    and ``frames``), plus :meth:`save_final`.
    """

    frames_unit = "frames"
    latest_checkpoint = staticmethod(Trainer.latest_checkpoint)
    idle_schedulers: tuple = ()  # names of schedulers whose optimiser did not step this step

    def __init__(self, cfg: TrainConfig, out: Optional[Union[str, os.PathLike]] = None, resume: bool = False):
        from accelerate import Accelerator

        self.cfg = cfg
        self.out = Path(out or cfg.train.out)
        self.ckpt_dir = self.out / "checkpoints"
        if cfg.train.grad_accum != 1:
            raise MetisError(f"{type(self).__name__}: train.grad_accum must be 1 (gradient accumulation is not implemented here)")
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = acc = Accelerator(cpu=multi_cpu, mixed_precision=cfg.train.mixed_precision)
        self.rank, self.world, self.is_main = acc.process_index, acc.num_processes, acc.is_main_process
        latest = Trainer.latest_checkpoint(self.out)
        if latest is not None and not resume:
            raise MetisError(f"{self.out} already holds checkpoints ({latest.name}); pass --resume or choose another --out")
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        seed = cfg.train.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed * 7919 + self.rank + 1)
        self.skipped: Dict[str, int] = {}
        self.build()
        from .data import FrameBatchSampler

        self.sampler = FrameBatchSampler(
            self.lengths, cfg.data.max_frames, seed=seed, shuffle=cfg.data.shuffle,
            rank=self.rank, world_size=self.world, max_batch_size=cfg.data.max_batch_size,
        )
        self.step, self.epoch, self.pos = 0, 0, 0
        self._epoch_batches: Optional[list] = None
        if resume and latest is not None:
            self.load_state(latest)

    # ------------------------------------------------------------- to override
    def build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def collate(self, items: list) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_step(self, batch: dict) -> Dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_final(self) -> Optional[Path]:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_state(self) -> dict:
        """Trainer state beyond networks/optimisers that a checkpoint must carry (main process)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------- helpers
    def preset_config(self, component: str, overrides: Optional[dict] = None):
        d = config_to_dict(load_preset(self.cfg.model.preset, component))
        d.update(overrides or {})
        return config_from_dict(d)

    def make_optimizer(self, params, o=None, lr=None, betas=None):
        """AdamW + warm-up/decay LambdaLR from an OptimSection (or its fields overridden)."""
        o = o or self.cfg.optim
        opt = torch.optim.AdamW(
            [p for p in params if p.requires_grad], lr=lr or o.lr, betas=tuple(betas or o.betas),
            eps=o.eps, weight_decay=o.weight_decay,
        )
        total = self.cfg.train.max_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, o.warmup_steps, total, o.decay, o.min_lr_ratio))
        return opt, sched

    def clip(self, module: nn.Module) -> Optional[float]:
        c = self.cfg.optim.grad_clip
        if not c:
            return None
        return float(self.accelerator.clip_grad_norm_(module.parameters(), c))

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def unwrap(self, module: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(module)

    def _next_batch(self) -> dict:
        while True:
            if self._epoch_batches is None:
                self._epoch_batches = self.sampler.epoch_batches(self.epoch)
            if self.pos >= len(self._epoch_batches):
                self.epoch, self.pos, self._epoch_batches = self.epoch + 1, 0, None
                continue
            idx = self._epoch_batches[self.pos]
            self.pos += 1
            return self.collate([self.items[i] for i in idx])

    # ------------------------------------------------------------------ loop
    def train(self, until: Optional[int] = None) -> dict:
        """Run to ``until`` (default ``train.max_steps``) steps; returns a summary like Trainer's."""
        acc, c = self.accelerator, self.cfg.train
        target = min(until or c.max_steps, c.max_steps)
        logger = _Logger(self.out, self.is_main)
        bar = None
        if self.is_main and c.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=target, initial=self.step, desc="train", dynamic_ncols=True)
        for m in self.nets.values():
            m.train()
        frames_total, t_start, last = 0, time.perf_counter(), {}
        while self.step < target:
            t0 = time.perf_counter()
            batch = {k: (v.to(acc.device) if torch.is_tensor(v) else v) for k, v in self._next_batch().items()}
            stats = self.train_step(batch)
            for k, s in self.schedulers.items():
                if k not in self.idle_schedulers:
                    s.step()
            self.step += 1
            keys = sorted(stats)
            vec = torch.tensor([float(stats[k]) for k in keys], device=acc.device)
            if self.world > 1:
                vec = acc.reduce(vec, reduction="mean")
            stats = dict(zip(keys, vec.tolist()))
            stats["frames"] = stats["frames"] * self.world
            dt = time.perf_counter() - t0
            frames_total += stats["frames"]
            last = {"step": self.step, **stats, "lr": next(iter(self.schedulers.values())).get_last_lr()[0],
                    "frames_per_s": stats["frames"] / max(dt, 1e-9), "epoch": self.epoch}
            if self.step % c.log_every == 0 or self.step == target:
                logger.log(last)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.3f}")
            if self.step % c.checkpoint_every == 0 or self.step == target:
                self.save_state()
        if bar is not None:
            bar.close()
        logger.close()
        elapsed = time.perf_counter() - t_start
        summary = {
            "step": self.step,
            "last": last,
            "frames_per_s": frames_total / elapsed if elapsed > 0 and frames_total else 0.0,
            "frames_unit": self.frames_unit,
            "skipped": dict(self.skipped),
            "peak_rss_mb": _peak_rss_mb(),
        }
        if self.step >= c.max_steps:
            acc.wait_for_everyone()
            if self.is_main:
                self.save_final()
                plot_loss(self.out, ylabel="training loss")
        return summary

    # ----------------------------------------------------------- checkpoints
    def save_state(self) -> Path:
        """Write a resumable checkpoint atomically (all processes take part)."""
        from ..checkpoint import save_weights

        acc = self.accelerator
        name, tmp, final = begin_checkpoint(acc, self.ckpt_dir, self.step, self.is_main, self.rank, self.generator)
        if self.is_main:
            nets = {k: self.unwrap(m) for k, m in self.nets.items()}
            save_weights({f"{k}.{n}": t for k, m in nets.items() for n, t in m.state_dict().items()}, tmp / "model.safetensors")
            torch.save(
                {
                    "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                    "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                    "extra": self.extra_state(),
                },
                tmp / "trainer.pt",
            )
            meta = {"step": self.step, "epoch": self.epoch, "pos": self.pos, "world_size": self.world,
                    "skipped": self.skipped, "config": self.cfg.to_dict()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        return publish_checkpoint(acc, self.ckpt_dir, name, tmp, final, self.cfg.train.keep_checkpoints, self.is_main)

    def load_state(self, directory: Union[str, Path]) -> None:
        """Restore every network, optimiser and scheduler, the RNG states and the data position."""
        from ..checkpoint import load_state_dict_strict, read_weights

        directory = Path(directory)
        meta = read_checkpoint_meta(directory, self.world)
        state = read_weights(directory / "model.safetensors")
        for k, m in self.nets.items():
            sub = {n[len(k) + 1 :]: t for n, t in state.items() if n.startswith(k + ".")}
            load_state_dict_strict(self.unwrap(m), sub, f"{directory} ({k})")
        st = torch.load(directory / "trainer.pt", map_location="cpu", weights_only=False)
        missing = sorted(set(self.optimizers) - set(st["optimizers"])) + sorted(set(self.schedulers) - set(st["schedulers"]))
        if missing:
            raise MetisError(f"{directory}: checkpoint lacks optimiser/scheduler state for {missing}")
        for k, o in self.optimizers.items():
            o.load_state_dict(st["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(st["schedulers"][k])
        self.load_extra_state(st.get("extra") or {})
        _set_rng_state(torch.load(directory / f"rng_{self.rank}.pt", weights_only=False), self.generator)
        self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["pos"]
        self.skipped = dict(meta.get("skipped", {}))
        self._epoch_batches = None

    def init_from(self, module: nn.Module, src: Optional[str]) -> None:
        """Fill ``module`` from a save_checkpoint directory or a .safetensors file (strict)."""
        if not src:
            return
        from ..checkpoint import load_weights

        path = Path(src)
        load_weights(module, path / "model.safetensors" if path.is_dir() else path)


# ------------------------------------------------------------ semantic codec
class SemanticCodecTrainer(LoopTrainer):
    """RepCodec training: features (B, T, H) -> encoder -> VQ -> decoder; loss = masked MSE
    reconstruction + commitment + codebook (weights from the codec config). Logs codebook
    usage and perplexity of the batch's ids. ``objective``: none needed."""

    def build(self) -> None:
        from ..models.semantic_codec import SemanticCodec

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

    def _features_from_audio(self, path: Path) -> List[torch.Tensor]:
        """SSL features computed once at start-up with the preset's ``ssl`` front end
        (``objective.ssl_batch`` clips per forward); unreadable/too-short clips are skipped."""
        from ..errors import AudioError
        from ..models.ssl import SSLFeatureExtractor

        ssl = SSLFeatureExtractor.from_config(self.preset_config("ssl")).to(self.accelerator.device)
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

    def train_step(self, batch: dict) -> Dict[str, float]:
        acc, codec, opt = self.accelerator, self.nets["codec"], self.optimizers["codec"]
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

        return save_checkpoint(self.unwrap(self.nets["codec"]).float().eval(), self.out / "final")


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
    "disc_start": 0,  # steps of reconstruction-only training before the adversarial losses
    "disc_lr": None,  # default optim.lr
    "disc_betas": None,  # default optim.betas
    "dead_code_restart_every": 0,  # >0: every N steps, codes unused in those N steps are
    # re-drawn from the current batch's quantizer inputs (Jukebox/Encodec-style; 0 = off)
    "mpd_width": 1.0,
    "mrd_width": 1.0,
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
            src = Path(self.cfg.model.init_from)
            self.init_from(gen.encoder, str(src / "encoder"))
            self.init_from(gen.decoder, str(src / "decoder"))
        disc = CodecDiscriminator(o["periods"], o["stft_resolutions"], o["mpd_width"], o["mrd_width"])
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
        adversarial = self.step >= int(o["disc_start"])
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
