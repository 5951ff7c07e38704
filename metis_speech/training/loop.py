"""The shared loop of the trainers not driven by a masked-token objective (the two codecs
and the L2S visual encoder): :class:`LoopTrainer`.

It has the same run-directory layout, checkpoint format and resume guarantees as
:class:`~metis_speech.training.trainer.Trainer` (``<out>/checkpoints/step_XXXXXXXX``
written as ``.tmp-...`` and renamed, ``latest`` replaced atomically; ``model.safetensors``
holds every network of the run, ``trainer.pt`` every optimiser and scheduler by name,
``rng_<rank>.pt`` all RNG states, ``meta.json`` the step and data position), so
``metis train RECIPE --resume`` reproduces an uninterrupted run exactly. Subclasses define
the networks, the data and ``train_step``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import nn

from ..config import config_from_dict, config_to_dict, load_preset
from ..errors import MetisError
from .trainer import (
    TimeBudget,
    TrainConfig,
    Trainer,
    begin_checkpoint,
    publish_checkpoint,
    read_checkpoint_meta,
    start_run,
    _Logger,
    _peak_rss_mb,
    _set_rng_state,
    lr_lambda,
    plot_loss,
)

__all__ = ["LoopTrainer"]


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
        if cfg.train.grad_accum != 1:
            raise MetisError(f"{type(self).__name__}: train.grad_accum must be 1 (gradient accumulation is not implemented here)")
        if cfg.data.val_path is not None:
            raise MetisError(f"{type(self).__name__}: data.val_path (held-out validation) is for stage-1 and S2A training; "
                             "remove it from this recipe")
        latest = start_run(self, cfg, out, resume)
        self.budget = TimeBudget(cfg.train)
        seed = cfg.train.seed
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
        loop = self.cfg.train  # max_steps is read at each step: a time budget may shorten it
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, o.warmup_steps, loop.max_steps, o.decay, o.min_lr_ratio))
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
            target = min(target, self.budget.update(self.step))
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
