"""One training loop for stage 1 (pre-training, full or LoRA fine-tuning) and S2A, on 🤗 Accelerate.

A run is described by a :class:`TrainConfig` (YAML recipes in ``metis_speech/recipes``):
model preset + overrides, optional initial weights, fine-tuning mode, data, optimiser and
loop settings. :class:`Trainer` builds everything from it and runs

    for each optimiser step:  grad_accum micro-batches (dynamic, by frame count)
        -> objective.sample (CPU generator) -> forward/backward (no DDP sync until the last)
        -> clip -> AdamW step -> warm-up + cosine/linear decay -> EMA (optional) -> log

Checkpoints (every ``checkpoint_every`` steps and at the end) go to ``<out>/checkpoints``:
a directory ``step_XXXXXXXX`` is written as ``.tmp-step_XXXXXXXX`` and renamed when complete,
then the text file ``latest`` is replaced atomically; a SIGKILL at any moment leaves the
previous checkpoint intact. Each holds ``model.safetensors`` (trainable wrapper state),
``trainer.pt`` (optimiser, scheduler, EMA), ``rng_<rank>.pt`` (python, numpy, torch, CUDA
and the objective generator states) and ``meta.json`` (step, epoch, batch position). A
resumed run therefore reproduces the uninterrupted run's losses exactly (same seed, same
number of processes).

Final outputs in ``<out>/final``: ``model.safetensors`` + ``config.json`` readable by
:func:`metis_speech.loading.load_checkpoint` (EMA weights when EMA is on; LoRA merged);
in LoRA mode also ``lora.safetensors`` (peft names, official layout), ``adapter.safetensors``
(``model.cond_adapter.*``) and ``lora.json`` (r, alpha). ``log.jsonl`` (and TensorBoard
events when installed) and ``loss.png`` sit in ``<out>``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, config_from_dict, config_to_dict, load_preset
from ..errors import MetisError

__all__ = [
    "ModelSection",
    "FinetuneSection",
    "DataSection",
    "OptimSection",
    "LoopSection",
    "TrainConfig",
    "load_train_config",
    "Trainer",
    "lr_lambda",
    "LOOP_TRAINERS",
    "make_trainer",
]


# ------------------------------------------------------------------ config
@dataclass
class ModelSection:
    preset: str = "tiny"
    component: str = "stage1_base"
    overrides: Dict[str, Any] = field(default_factory=dict)  # fields replacing the preset's
    init_from: Optional[str] = None  # checkpoint dir (save_checkpoint) or .safetensors file
    # deepen a trained network: for each transformer layer of the new one, the init_from layer
    # it starts from; a layer's second and later copies start with their output projections
    # (attention o_proj, MLP down_proj) zeroed, an identity on the residual stream, so e.g.
    # [0, 1, 1, 2, 3, 3] (num_layers: 6 in overrides) computes exactly what the 4-layer init_from did
    init_layers: Optional[List[int]] = None
    # a stage 1 or S2A with frame_phones (overrides) whose alignment table is not fitted yet (not
    # in init_from) fits it from the training pairs at start: the phone vocabulary file the shards
    # were prepared with (its word boundaries and punctuation may take zero frames), and the
    # hard-EM iterations
    phone_vocab: Optional[str] = None
    align_iterations: int = 4
    duration_warmup_steps: int = 300  # the duration predictor trained alone on the fit first


@dataclass
class FinetuneSection:
    mode: str = "full"  # "full" or "lora"
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.01
    train_new_modules: bool = True  # train modules absent from init_from (adapter, phone prefix)


@dataclass
class DataSection:
    """Exactly one of ``path``, ``synthetic`` or ``sources``.

    ``sources`` is a task mixture (omni training), a list of entries
    ``{path: DIR | synthetic: {...}, weight: 1.0, name: ..., require: [...]}``: each epoch
    gives every source a share of the frames proportional to its weight
    (:class:`~metis_speech.training.data.MixtureBatchSampler`); ``name`` defaults to the
    folder name (``synthetic<i>`` for synthetic entries); ``require`` lists the fields its
    utterances must have (e.g. ``[phones]`` for TTS, ``[cond]`` for SE, ``[phones, cond]``
    for text-guided TSE), by default what ``data.path`` would require of the model, or only
    semantic ids for a model with both the phone prefix and the adapter (omni).
    """

    path: Optional[str] = None  # shard directory (see training/data.py)
    synthetic: Optional[Dict[str, Any]] = None  # synthetic_utterances(**synthetic) instead of path
    sources: Optional[List[Dict[str, Any]]] = None  # task mixture (see above) instead of path
    max_frames: int = 4000  # padded frames (B * T_max) per micro-batch
    max_batch_size: Optional[int] = None
    min_utt_frames: int = 4
    max_utt_frames: Optional[int] = None
    shuffle: bool = True
    # held-out shards (same layout as ``path``): the objective on them, with the same masks,
    # prompts and RVQ layers at every evaluation, is logged as val_loss / val_accuracy every
    # ``train.eval_every`` steps; ``val_batches`` caps how many of their batches are used
    val_path: Optional[str] = None
    val_batches: Optional[int] = None

    SOURCE_KEYS = ("path", "synthetic", "weight", "name", "require")

    def source_names(self) -> List[str]:
        """Each source's name: ``name``, else its folder's name, else ``synthetic<i>``."""
        names = []
        for i, e in enumerate(self.sources or []):
            names.append(str(e.get("name") or (Path(e["path"]).name if e.get("path") else f"synthetic{i}")))
        return names

    def check(self, where: str = "config") -> None:
        """ConfigError unless exactly one data origin is given and every source entry is well formed."""
        from .data import FIELDS

        if sum(x is not None for x in (self.path, self.synthetic, self.sources)) != 1:
            raise ConfigError(f"{where}: give exactly one of data.path, data.synthetic and data.sources")
        if self.sources is None:
            return
        if not isinstance(self.sources, list) or not self.sources:
            raise ConfigError(f"{where}: data.sources must be a non-empty list of {{path|synthetic, weight, name, require}}")
        for i, e in enumerate(self.sources):
            w = f"{where}: data.sources[{i}]"
            if not isinstance(e, dict):
                raise ConfigError(f"{w}: expected a mapping")
            unknown = sorted(set(e) - set(self.SOURCE_KEYS))
            if unknown:
                raise ConfigError(f"{w}: unknown field(s) {unknown}; known: {list(self.SOURCE_KEYS)}")
            if (e.get("path") is None) == (e.get("synthetic") is None):
                raise ConfigError(f"{w}: give exactly one of path and synthetic")
            if e.get("synthetic") is not None and not isinstance(e["synthetic"], dict):
                raise ConfigError(f"{w}: synthetic must be a mapping of synthetic_utterances arguments")
            weight = e.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
                raise ConfigError(f"{w}: weight must be a positive number, got {weight!r}")
            req = e.get("require")
            if req is not None and (not isinstance(req, list) or not set(req) <= set(FIELDS)):
                raise ConfigError(f"{w}: require must be a list of fields among {list(FIELDS)}, got {req!r}")
        names = self.source_names()
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: data.sources names must be unique, got {names} (set name: per entry)")


@dataclass
class OptimSection:
    lr: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    decay: str = "cosine"  # cosine | linear | constant
    min_lr_ratio: float = 0.0
    grad_clip: Optional[float] = 1.0


@dataclass
class LoopSection:
    max_steps: int = 1000
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | bf16 | fp16
    seed: int = 0
    ema: Optional[float] = None  # EMA decay, e.g. 0.999; None = off
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    out: str = "runs/metis"
    progress: bool = True
    samples: Optional[Dict[str, Any]] = None  # periodic audio samples (training/samples.py)
    eval_every: Optional[int] = None  # steps between validations (data.val_path); None = checkpoint_every
    # wall-clock budget in seconds (None = off): after a few steps the run measures its step rate
    # and shortens max_steps (the LR schedule follows) so that it ends, with final/, inside it
    max_seconds: Optional[float] = None


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: LoopSection = field(default_factory=LoopSection)
    objective: Dict[str, Any] = field(default_factory=dict)  # kwargs of the objective class

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _section(cls, d: Any, where: str):
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(names)}")
    return cls(**d)


def load_train_config(source: Union[str, os.PathLike, dict]) -> TrainConfig:
    """A TrainConfig from a YAML/JSON file, a recipe name (``stage1_pretrain_tiny``) or a dict."""
    if isinstance(source, dict):
        d, where = source, "config"
    else:
        path = Path(source)
        if not path.exists():
            from ..recipes import recipe_path

            path = recipe_path(str(source))
        import yaml

        try:
            d = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        where = str(path)
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping of sections")
    unknown = sorted(set(d) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; known: {sorted(_SECTIONS)}")
    kw = {}
    for name in ("model", "finetune", "data", "optim", "train"):
        kw[name] = _section(type(getattr(TrainConfig(), name)), d.get(name), f"{where}: {name}")
    kw["objective"] = dict(d.get("objective") or {})
    cfg = TrainConfig(**kw)
    if cfg.finetune.mode not in ("full", "lora"):
        raise ConfigError(f"{where}: finetune.mode must be 'full' or 'lora'")
    if cfg.finetune.mode == "lora" and not cfg.model.init_from:
        raise ConfigError(f"{where}: LoRA fine-tuning needs model.init_from (the pre-trained weights)")
    il = cfg.model.init_layers
    if il is not None:
        if not cfg.model.init_from:
            raise ConfigError(f"{where}: model.init_layers needs model.init_from (the network whose layers it copies)")
        if (not isinstance(il, list) or not il
                or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in il)):
            raise ConfigError(f"{where}: model.init_layers must be a non-empty list of layer indices (integers >= 0), "
                              f"got {il!r}")
    if cfg.optim.decay not in ("cosine", "linear", "constant"):
        raise ConfigError(f"{where}: optim.decay must be cosine, linear or constant")
    cfg.data.check(where)
    for field_name, v in (("train.eval_every", cfg.train.eval_every), ("data.val_batches", cfg.data.val_batches)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"{where}: {field_name} must be a positive integer, got {v!r}")
    if cfg.data.val_path is not None and not Path(cfg.data.val_path).exists():
        raise ConfigError(f"{where}: data.val_path {cfg.data.val_path} does not exist")
    return cfg


class TimeBudget:
    """``train.max_seconds``: shrink ``train.max_steps`` to what fits in the wall-clock budget.

    The budget counts from the first :meth:`update` of this process (a resumed run gets a
    fresh budget). After ``calibrate`` steps the measured rate sets ``max_steps`` to the
    step that ends the budget (never above the configured value); LR schedules read
    ``max_steps`` at every step, so the decay ends with the run.
    """

    def __init__(self, loop: "LoopSection", calibrate: int = 10):
        self.loop, self.calibrate = loop, calibrate
        self.t0: Optional[float] = None
        self.step0 = 0

    def update(self, step: int) -> int:
        """Call after each optimiser step; returns the (possibly lowered) max_steps."""
        budget = self.loop.max_seconds
        if not budget:
            return self.loop.max_steps
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.step0 = now, step
            return self.loop.max_steps
        elapsed, done = now - self.t0, step - self.step0
        if elapsed >= budget:
            self.loop.max_steps = step
        elif done >= self.calibrate:
            rate = done / elapsed
            # never raised again: a loop that stopped at an earlier estimate must find its run complete
            self.loop.max_steps = max(step, min(self.loop.max_steps, step + int(rate * (budget - elapsed))))
        return self.loop.max_steps


def lr_lambda(step: int, warmup: int, total: int, decay: str, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine/linear to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if decay == "constant" or total <= warmup:
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if decay == "cosine" else 1 - frac
    return min_ratio + (1 - min_ratio) * shape


# ------------------------------------------------------------------ helpers
def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def begin_checkpoint(acc, ckpt_dir: Path, step: int, is_main: bool, rank: int, generator) -> tuple:
    """Start checkpoint ``step_N``: a fresh hidden temp folder, then every rank's RNG file.
    Returns (name, tmp, final); the caller writes its files into ``tmp``."""
    name = f"step_{step:08d}"
    tmp, final = ckpt_dir / f".tmp-{name}", ckpt_dir / name
    if is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    torch.save(_rng_state(generator), tmp / f"rng_{rank}.pt")
    return name, tmp, final


def publish_checkpoint(acc, ckpt_dir: Path, name: str, tmp: Path, final: Path, keep: int, is_main: bool) -> Path:
    """Rename the finished temp folder into place, point ``latest`` at it, keep the newest
    ``keep`` checkpoints (all processes take part)."""
    acc.wait_for_everyone()
    if is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _atomic_write_text(ckpt_dir / "latest", name + "\n")
        old = sorted(p for p in ckpt_dir.glob("step_*") if p != final)
        keep = max(1, keep) - 1
        for p in old[: max(0, len(old) - keep)]:
            shutil.rmtree(p, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def read_checkpoint_meta(directory: Path, world: int) -> dict:
    """``meta.json`` of a checkpoint, refusing a different number of processes."""
    meta = json.loads((directory / "meta.json").read_text())
    if meta["world_size"] != world:
        raise MetisError(
            f"{directory}: written by {meta['world_size']} process(es), resuming with {world}; "
            "exact resumption needs the same number of processes"
        )
    return meta


def _rng_state(gen: torch.Generator) -> dict:
    st = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "objective": gen.get_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, gen: torch.Generator) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    gen.set_state(st["objective"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _peak_rss_mb() -> Optional[float]:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    except Exception:  # noqa: BLE001 - not on every platform
        return None


class _Logger:
    """JSONL log (always) + TensorBoard (when installed); main process only."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.path = out / "log.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"))
            except Exception:  # noqa: BLE001 - TensorBoard is optional
                self.tb = None

    def log(self, rec: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"train/{k}", v, rec["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_log(out: Union[str, Path]) -> List[dict]:
    """Records of ``<out>/log.jsonl``; a resumed run's repeated steps keep the last value."""
    by_step: Dict[int, dict] = {}
    path = Path(out) / "log.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            by_step[rec["step"]] = rec
    return [by_step[k] for k in sorted(by_step)]


def plot_loss(out: Union[str, Path], ylabel: str = "masked-token cross-entropy") -> Optional[Path]:
    """``<out>/loss.png`` from the log (None when matplotlib is missing or nothing was logged)."""
    recs = read_log(out)
    if not recs:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - plotting is optional
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], lw=1, label="training")
    val = [r for r in recs if r.get("val_loss") is not None]
    if val:  # data.val_path: the held-out loss beside the training loss
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", lw=1.5, ms=3, label="held out")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out) / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ trainer
def start_run(trainer, cfg: TrainConfig, out, resume: bool, find_unused_parameters: bool = False) -> Optional[Path]:
    """Common start of every trainer: sets ``cfg``, ``out``, ``ckpt_dir``, ``accelerator``,
    ``rank``, ``world``, ``is_main`` and ``generator`` (the objective's CPU generator, one
    stream per rank) on ``trainer``, seeds python/numpy/torch, creates the run directory and
    returns the checkpoint to resume from (None for a fresh run; an error when the directory
    holds checkpoints and ``resume`` is off)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    trainer.cfg = cfg
    trainer.out = Path(out or cfg.train.out)
    trainer.ckpt_dir = trainer.out / "checkpoints"
    # several processes but no GPU (torchrun / ``accelerate launch --multi_gpu`` on a CPU
    # machine): Accelerate needs cpu=True to pick MULTI_CPU with the gloo backend
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if find_unused_parameters else []
    trainer.accelerator = acc = Accelerator(cpu=multi_cpu, mixed_precision=cfg.train.mixed_precision, kwargs_handlers=handlers)
    trainer.rank, trainer.world, trainer.is_main = acc.process_index, acc.num_processes, acc.is_main_process
    latest = Trainer.latest_checkpoint(trainer.out)
    if latest is not None and not resume:
        raise MetisError(f"{trainer.out} already holds checkpoints ({latest.name}); pass --resume or choose another --out")
    if trainer.is_main:
        trainer.out.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    seed = cfg.train.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    trainer.generator = torch.Generator().manual_seed(seed * 7919 + trainer.rank + 1)
    return latest if resume else None


# model.component -> trainer of networks not trained through objectives.py (same run layout)
LOOP_TRAINERS = {
    "semantic_codec": "metis_speech.training.codec_train:SemanticCodecTrainer",
    "acoustic_codec": "metis_speech.training.codec_train:AcousticCodecTrainer",
    "visual_encoder": "metis_speech.training.visual_train:VisualEncoderTrainer",
    "ssl": "metis_speech.training.ssl_train:SSLTrainer",
}


def make_trainer(cfg: TrainConfig, out: Optional[Union[str, os.PathLike]] = None, resume: bool = False):
    """The trainer for ``cfg.model.component``: :class:`Trainer` (stage 1, S2A) or a loop
    trainer of :data:`LOOP_TRAINERS` (codecs, visual encoder); all share ``train(until)``."""
    target = LOOP_TRAINERS.get(cfg.model.component)
    if target is None:
        return Trainer(cfg, out=out, resume=resume)
    import importlib

    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(cfg, out=out, resume=resume)


_LAYER_KEY = re.compile(r"^(.*diff_estimator\.layers)\.(\d+)\.(.*)$")
_ZEROED_IN_COPIES = ("self_attn.o_proj.weight", "self_attn.o_proj.bias", "mlp.down_proj.weight", "mlp.down_proj.bias")


def _grown_state(path: Path, layers: List[int], num_layers: Optional[int]) -> Dict[str, torch.Tensor]:
    """init_from's weights with its transformer layers laid out as ``layers`` (model.init_layers):
    new layer i is a copy of old layer ``layers[i]``; a repeat's output projections are zeroed."""
    from safetensors.torch import load_file

    if num_layers is not None and len(layers) != num_layers:
        raise MetisError(f"model.init_layers lists {len(layers)} layers, the network has {num_layers} "
                         f"(set model.overrides.num_layers: {len(layers)})")
    src = load_file(str(path))
    per_layer: Dict[int, Dict[str, torch.Tensor]] = collections.defaultdict(dict)
    state, stem = {}, None
    for k, v in src.items():
        m = _LAYER_KEY.match(k)
        if m:
            stem = m.group(1)
            per_layer[int(m.group(2))][m.group(3)] = v
        else:
            state[k] = v
    if not per_layer:
        raise MetisError(f"{path}: no transformer layers (diff_estimator.layers.N.*) to lay out with model.init_layers")
    missing = sorted({i for i in layers if i not in per_layer})
    if missing:
        raise MetisError(f"model.init_layers names layer(s) {missing}; {path} has layers 0-{max(per_layer)}")
    seen = set()
    for new, old in enumerate(layers):
        for name, v in per_layer[old].items():
            t = v.clone()
            if old in seen and name in _ZEROED_IN_COPIES:
                t.zero_()
            state[f"{stem}.{new}.{name}"] = t
        seen.add(old)
    return state


class Trainer:
    """Builds model, objective, data and optimiser from a TrainConfig and runs the loop."""

    def __init__(self, cfg: TrainConfig, out: Optional[Union[str, os.PathLike]] = None, resume: bool = False):
        from ..config import S2AConfig

        self.cfg = cfg
        self.model_cfg = self._model_config()
        # S2A trains one RVQ layer's embedding/head per batch: the others get no gradient
        latest = start_run(self, cfg, out, resume, find_unused_parameters=isinstance(self.model_cfg, S2AConfig))
        acc, seed = self.accelerator, cfg.train.seed

        self.net, self.new_keys = self._build_network()
        self.model = self._apply_finetune(self.net)
        from .objectives import build_objective

        objective = build_objective(self.model, **cfg.objective)
        self.trainable = [p for p in objective.parameters() if p.requires_grad]
        if not self.trainable:
            raise MetisError("no trainable parameters")
        o = cfg.optim
        optimizer = torch.optim.AdamW(self.trainable, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
        loop = cfg.train  # max_steps is read at each step: a time budget may shorten it
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_lambda(s, o.warmup_steps, loop.max_steps, o.decay, o.min_lr_ratio)
        )
        self.budget = TimeBudget(cfg.train)
        self.objective, self.optimizer = acc.prepare(objective, optimizer)
        self.ema = (
            {n: p.detach().float().clone() for n, p in self._unwrapped().named_parameters() if p.requires_grad}
            if cfg.train.ema
            else None
        )

        self.dataset = self._build_dataset()
        if getattr(self.model_cfg, "frame_phones", False) and not self.net.aligner_fitted:
            if not (resume and latest is not None):  # a resumed run gets the table from its checkpoint
                self._fit_aligner()
        self.val_batches = self._build_val()
        if self.mixture_sampler is not None:  # data.sources: batches follow the sources' weights
            self.sampler = self.mixture_sampler
        else:
            from .data import FrameBatchSampler

            self.sampler = FrameBatchSampler(
                self.dataset.lengths,
                cfg.data.max_frames,
                seed=seed,
                shuffle=cfg.data.shuffle,
                rank=self.rank,
                world_size=self.world,
                max_batch_size=cfg.data.max_batch_size,
            )
        self.step, self.epoch, self.pos = 0, 0, 0
        self._epoch_batches: Optional[list] = None
        self.empty_batches = 0
        self.samples = self._build_samples()
        if resume and latest is not None:
            self.load_state(latest)

    # ------------------------------------------------------------- building
    def _model_config(self):
        m = self.cfg.model
        base = config_to_dict(load_preset(m.preset, m.component))
        base.update(m.overrides or {})
        return config_from_dict(base)

    def _build_network(self):
        from ..checkpoint import load_weights
        from ..loading import build_model

        net = build_model(self.model_cfg)
        new_keys: List[str] = []
        src = self.cfg.model.init_from
        if src:
            path = Path(src)
            if path.is_dir():
                path = path / "model.safetensors"
            from safetensors import safe_open

            try:
                with safe_open(str(path), framework="pt") as f:
                    have = set(f.keys())
            except Exception as e:  # noqa: BLE001
                raise MetisError(f"{path}: cannot read initial weights: {e}") from None
            layers = self.cfg.model.init_layers
            state = None
            if layers is not None:
                state = _grown_state(path, layers, getattr(self.model_cfg, "num_layers", None))
                have = set(state)
            new_keys = [k for k in net.state_dict() if k not in have]
            allowed = ("cond_adapter.", "phone_emb.", "diff_estimator.cond_mlp.", "frame_phone_proj.", "duration.",
                       "align_table", "align_skip")
            bad = [k for k in new_keys if not k.startswith(allowed)]
            if bad:
                raise MetisError(f"{path}: lacks weights the model needs: {bad[:3]} (+{max(0, len(bad) - 3)} more)")
            allow = [re.escape(prefix) for prefix in allowed]
            if state is None:
                load_weights(net, path, allow_missing=allow)
            else:
                from ..checkpoint import load_state_dict_strict

                load_state_dict_strict(net, state, str(path), allow_missing=allow)
        return net, new_keys

    def _fit_aligner(self) -> None:
        """Fit the frame_phones model's alignment table (models/align.py) on the training pairs."""
        from ..models.align import fit_emissions, skippable_ids
        from ..text.vocab import load_vocab

        mc, m = self.model_cfg, self.cfg.model
        if not m.phone_vocab:
            raise MetisError("model.phone_vocab: a frame_phones network without a fitted alignment table needs the phone "
                             "vocabulary file its shards were prepared with (e.g. BUNDLE/vocab.json)")
        try:
            vocab = load_vocab(m.phone_vocab)
        except MetisError as e:
            raise MetisError(f"model.phone_vocab: {e}") from None
        skip = skippable_ids(vocab.symbol_to_id, mc.phone_vocab_size)
        pairs = []
        for i in range(len(self.dataset)):
            u = self.dataset[i]
            if u is not None and u.get("phones") is not None and u["phones"].numel():
                pairs.append((u["phones"].numpy().astype(np.int64), u["semantic"].numpy().astype(np.int64)))
        if not pairs:
            raise MetisError("frame_phones: the training data has no utterance with phones to fit the alignment table from")
        t0 = time.perf_counter()

        def report(it, score):
            if self.is_main:
                print(f"aligner: iteration {it + 1}/{m.align_iterations}, log-likelihood per frame {score:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)

        semantic_vocab = self.net.align_table.shape[1]
        table, _, durs = fit_emissions(pairs, mc.phone_vocab_size, semantic_vocab, skip, mc.phone_pad_id,
                                       iterations=m.align_iterations, progress=report)
        with torch.no_grad():
            self.net.align_table.copy_(torch.from_numpy(table))
            self.net.align_skip.copy_(torch.from_numpy(skip.astype(np.float32)))
        if m.duration_warmup_steps > 0 and hasattr(self.net, "duration"):  # stage 1 (the S2A has none)
            self._warm_durations([p for p, _ in pairs], [d[1:-1] for d in durs], m.duration_warmup_steps)

    def _warm_durations(self, phones: List[np.ndarray], durs: List[np.ndarray], steps: int, batch: int = 32) -> None:
        """Train the duration predictor alone on the fitted alignments first, so that its early
        gradients do not dominate the clipped gradient norm of the stage-1 network."""
        from .objectives import duration_loss

        net, pad = self.net, self.model_cfg.phone_pad_id
        dev = self.accelerator.device
        opt = torch.optim.Adam(net.duration.parameters(), lr=1e-3)
        g = np.random.default_rng(self.cfg.train.seed)
        net.duration.train()
        loss = None
        for step in range(steps):
            idx = g.choice(len(phones), size=min(batch, len(phones)), replace=False)
            n = max(len(phones[i]) for i in idx)
            ids = torch.full((len(idx), n), pad, dtype=torch.long)
            tgt = torch.zeros(len(idx), n)
            for r, i in enumerate(idx):
                ids[r, n - len(phones[i]):] = torch.from_numpy(phones[i])  # left-padded, as collate does
                tgt[r, n - len(phones[i]):] = torch.from_numpy(durs[i].astype(np.float32))
            valid = (ids != pad).to(dev)
            loss = duration_loss(net.duration(ids.to(dev), valid), tgt.to(dev), valid)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if self.is_main and loss is not None:
            print(f"duration predictor: {steps} warm-up steps, loss {float(loss.detach()):.3f}", flush=True)

    def _apply_finetune(self, net: nn.Module) -> nn.Module:
        ft = self.cfg.finetune
        if ft.mode != "lora":
            return net
        from .lora import add_lora

        model = add_lora(net, ft.lora_r, ft.lora_alpha, ft.lora_dropout)
        new_prefixes = {k.rsplit(".", 1)[0] for k in self.new_keys}
        for n, p in net.named_parameters():
            if n.startswith("cond_adapter.") or (ft.train_new_modules and n.rsplit(".", 1)[0] in new_prefixes):
                p.requires_grad_(True)
        return model

    def _dataset_kw(self) -> dict:
        """TokenDataset arguments for this network: the fields it needs and its vocabularies."""
        from ..config import S2AConfig

        mc, d = self.model_cfg, self.cfg.data
        if isinstance(mc, S2AConfig):
            require = ("semantic", "acoustic")
            vocab, avocab = mc.cond_codebook_size, mc.codebook_size
            pvocab = mc.phone_vocab_size if mc.frame_phones else None
            # every layer it predicts and every layer of the prompt it reads
            layers = max(mc.num_quantizers, mc.prompt_layers)
        else:
            require = ("semantic",) + (("phones",) if mc.use_phone_cond else ()) + (("cond",) if mc.adapter != "none" else ())
            vocab, avocab, pvocab, layers = mc.codebook_size, None, mc.phone_vocab_size, None
        return dict(require=require, min_frames=d.min_utt_frames, max_frames=d.max_utt_frames, vocab=vocab,
                    acoustic_vocab=avocab, phone_vocab=pvocab, acoustic_layers=layers)

    def _build_val(self) -> Optional[list]:
        """The collated held-out batches of ``data.val_path`` (fixed order), else None."""
        from .data import FrameBatchSampler, TokenDataset, collate

        d = self.cfg.data
        if d.val_path is None:
            return None
        ds = TokenDataset(path=d.val_path, **self._dataset_kw())
        if not len(ds):
            raise MetisError(f"data.val_path {d.val_path}: no usable utterances (skipped: {dict(ds.skipped)})")
        plan = FrameBatchSampler(ds.lengths, d.max_frames, seed=0, shuffle=False, max_batch_size=d.max_batch_size).epoch_batches(0)
        pad = getattr(self.model_cfg, "phone_pad_id", 1023)
        batches = [b for b in (collate([ds[i] for i in idx], pad) for idx in plan[: d.val_batches]) if b is not None]
        if not batches:
            raise MetisError(f"data.val_path {d.val_path}: no batch could be formed")
        return batches

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """The objective on the held-out batches (``data.val_path``): masked-token cross-entropy
        and accuracy, averaged over the masked positions. The masks, prompts, mask ratios and
        (S2A) RVQ layers come from a generator seeded the same way at every call, so the numbers
        of two evaluations differ only by the network."""
        obj = self.accelerator.unwrap_model(self.objective)
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 7919 + 1_000_003)
        device, was = self.accelerator.device, obj.training
        obj.eval()
        loss = correct = n = 0.0
        aux: Dict[str, float] = {}
        batches = 0
        try:
            for batch in self.val_batches:
                plan = obj.sample(batch, gen)
                with self.accelerator.autocast():
                    out = obj({k: v.to(device) for k, v in batch.items()}, plan)
                w = float(out.n_masked)
                loss += float(out.loss) * w
                correct += float(out.accuracy) * w
                n += w
                for k, v in (out.aux or {}).items():
                    aux[k] = aux.get(k, 0.0) + float(v)
                batches += 1
        finally:
            obj.train(was)
        res = {"val_loss": loss / max(n, 1.0), "val_accuracy": correct / max(n, 1.0)}
        res.update({f"val_{k}": v / max(batches, 1) for k, v in aux.items()})
        return res

    def _build_dataset(self):
        """The TokenDataset of ``data.path`` / ``data.synthetic``, or the MixtureDataset of
        ``data.sources`` (whose batches ``self.mixture_sampler`` then plans; else None). A
        path or synthetic set given on top of sources (``metis train --data``) replaces them."""
        from ..config import S2AConfig
        from .data import MixtureBatchSampler, MixtureDataset, TokenDataset, synthetic_utterances

        mc, d = self.model_cfg, self.cfg.data
        kw = self._dataset_kw()
        require, vocab = kw["require"], kw["vocab"]

        def synthetic(spec: dict, **defaults):
            syn = dict(defaults, **spec)
            syn.setdefault("vocab", vocab)
            if isinstance(mc, S2AConfig):
                syn.setdefault("num_quantizers", mc.prompt_layers)
                syn.setdefault("acoustic_vocab", mc.codebook_size)
            else:
                syn.setdefault("phones", mc.use_phone_cond)
                syn.setdefault("cond_dim", mc.cond_dim if mc.adapter != "none" else 0)
            return synthetic_utterances(**syn)

        self.mixture_sampler = None
        if d.path is not None or d.synthetic is not None or not d.sources:
            ds = TokenDataset(items=synthetic(d.synthetic), **kw) if d.synthetic is not None else TokenDataset(path=d.path, **kw)
            if not len(ds):
                raise MetisError(f"data.{'synthetic' if d.synthetic is not None else 'path'}: no usable utterances "
                                 f"(skipped: {dict(ds.skipped)})")
            return ds
        # a task mixture: each source with its own requirements
        omni = not isinstance(mc, S2AConfig) and mc.use_phone_cond and mc.adapter != "none"
        names, parts = d.source_names(), []
        for name, e in zip(names, d.sources):
            req = tuple(e["require"]) if e.get("require") is not None else (("semantic",) if omni else require)
            skw = dict(kw, require=tuple(dict.fromkeys(("semantic",) + req)))
            if e.get("synthetic") is not None:
                ds = TokenDataset(items=synthetic(e["synthetic"], id_prefix=f"{name}-"), **skw)
            else:
                ds = TokenDataset(path=e["path"], **skw)
            if not len(ds):
                raise MetisError(f"data source {name!r}: no usable utterances (skipped: {dict(ds.skipped)})")
            parts.append(ds)
        mix = MixtureDataset(parts, names, [float(e.get("weight", 1.0)) for e in d.sources])
        self.mixture_sampler = MixtureBatchSampler(
            mix.lengths,
            mix.sources,
            mix.weights,
            d.max_frames,
            seed=self.cfg.train.seed,
            shuffle=d.shuffle,
            rank=self.rank,
            world_size=self.world,
            max_batch_size=d.max_batch_size,
        )
        return mix

    def _build_samples(self):
        """The run's SampleWriter (main process, ``train.samples`` set), else None."""
        from .samples import SampleWriter, parse_samples

        settings = parse_samples(self.cfg.train.samples)
        if settings is None or not self.is_main:
            return None
        from ..config import S2AConfig

        kind = "s2a" if isinstance(self.model_cfg, S2AConfig) else "stage1"
        vocab = self.model_cfg.cond_codebook_size if kind == "s2a" else self.model_cfg.codebook_size
        items = [self.dataset[i] for i in range(min(len(self.dataset), 8 * settings.count))]
        return SampleWriter(settings, kind, items, self.out, self.accelerator.device, vocab)

    def _unwrapped(self) -> nn.Module:
        """The network or its peft wrapper (what the checkpoints store)."""
        return self.accelerator.unwrap_model(self.objective).model

    # ------------------------------------------------------------------ data
    def _next_batch(self):
        from .data import collate

        while True:
            if self._epoch_batches is None:
                self._epoch_batches = self.sampler.epoch_batches(self.epoch)
            if self.pos >= len(self._epoch_batches):
                self.epoch += 1
                self.pos = 0
                self._epoch_batches = None
                continue
            idx = self._epoch_batches[self.pos]
            self.pos += 1
            batch = collate([self.dataset[i] for i in idx], getattr(self.model_cfg, "phone_pad_id", 1023))
            if batch is None:
                self.empty_batches += 1
                continue
            return batch

    def _source_frames(self) -> Dict[str, int]:
        """Log fields ``frames_seen/<source>``: frames of each mixture source in the batches
        all processes have taken so far (a function of epoch and position, so exact after a
        resume); empty without a mixture."""
        if self.mixture_sampler is None:
            return {}
        seen = self.mixture_sampler.frames_seen(self.epoch, self.pos)
        return {f"frames_seen/{n}": int(v) for n, v in zip(self.dataset.names, seen)}

    # ------------------------------------------------------------------ loop
    def train(self, until: Optional[int] = None) -> dict:
        """Run to ``until`` (default ``train.max_steps``) optimiser steps; returns a summary."""
        acc, c = self.accelerator, self.cfg.train
        target = min(until or c.max_steps, c.max_steps)
        logger = _Logger(self.out, self.is_main)
        bar = None
        if self.is_main and c.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=target, initial=self.step, desc="train", dynamic_ncols=True)
        device = acc.device
        frames_total, t_start, last = 0, time.perf_counter(), {}
        self.objective.train()
        while self.step < target:
            t0 = time.perf_counter()
            loss_sum = acc_sum = 0.0
            aux_sum: Dict[str, float] = {}
            frames = 0
            for micro in range(c.grad_accum):
                batch = self._next_batch()
                plan = acc.unwrap_model(self.objective).sample(batch, self.generator)
                batch = {k: v.to(device) for k, v in batch.items()}
                sync = micro == c.grad_accum - 1
                ctx = contextlib.nullcontext() if sync else acc.no_sync(self.objective)
                with ctx:
                    with acc.autocast():
                        out = self.objective(batch, plan)
                    acc.backward(out.total / c.grad_accum)
                loss_sum += float(out.loss.detach())
                for k, v in (out.aux or {}).items():
                    aux_sum[k] = aux_sum.get(k, 0.0) + float(v.detach()) / c.grad_accum
                acc_sum += float(out.accuracy)
                frames += int(out.n_frames)
            grad_norm = None
            if self.cfg.optim.grad_clip:
                grad_norm = float(acc.clip_grad_norm_(self.trainable, self.cfg.optim.grad_clip))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self._ema_update()
            self.step += 1
            target = min(target, self.budget.update(self.step))
            stats = torch.tensor([loss_sum / c.grad_accum, acc_sum / c.grad_accum, float(frames)], device=device)
            if self.world > 1:
                stats = acc.reduce(stats, reduction="sum")
                stats[:2] /= self.world
            dt = time.perf_counter() - t0
            frames_total += int(stats[2])
            last = {
                "step": self.step,
                "loss": float(stats[0]),
                "accuracy": float(stats[1]),
                "lr": self.scheduler.get_last_lr()[0],
                "frames": int(stats[2]),
                "frames_per_s": float(stats[2]) / max(dt, 1e-9),
                "epoch": self.epoch,
            }
            last.update(aux_sum)
            if grad_norm is not None:
                last["grad_norm"] = grad_norm
            last.update(self._source_frames())
            evaluated = self.val_batches is not None and (self.step % (c.eval_every or c.checkpoint_every) == 0
                                                          or self.step == target)
            if evaluated:
                last.update(self.validate())
            sampled = self.samples is not None and (self.step % self.samples.s.every == 0 or self.step == c.max_steps)
            if sampled:
                from .objectives import _unwrap

                last["samples"] = str(self.samples(_unwrap(self._unwrapped()), self.step, logger.tb))
            if self.step % c.log_every == 0 or self.step == target or sampled or evaluated:
                logger.log(last)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last['accuracy']:.3f}")
            if self.step % c.checkpoint_every == 0 or self.step == target:
                self.save_state()
        if bar is not None:
            bar.close()
        logger.close()
        elapsed = time.perf_counter() - t_start
        summary = {
            "step": self.step,
            "last": last,
            "frames_per_s": frames_total / elapsed if elapsed > 0 else 0.0,
            "skipped": dict(self.dataset.skipped),
            "empty_batches": self.empty_batches,
            "peak_rss_mb": _peak_rss_mb(),
        }
        if torch.cuda.is_available():
            summary["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        if self.step >= c.max_steps:
            self.save_final()
        return summary

    def _ema_update(self) -> None:
        d = float(self.cfg.train.ema)
        with torch.no_grad():
            for n, p in self._unwrapped().named_parameters():
                if n in self.ema:
                    self.ema[n].mul_(d).add_(p.detach().float(), alpha=1 - d)

    # ----------------------------------------------------------- checkpoints
    @staticmethod
    def latest_checkpoint(out: Union[str, Path]) -> Optional[Path]:
        """The newest complete checkpoint of a run directory (``latest`` pointer, else a scan)."""
        ck = Path(out) / "checkpoints"
        ptr = ck / "latest"
        if ptr.is_file():
            d = ck / ptr.read_text().strip()
            if (d / "meta.json").is_file():
                return d
        done = sorted(p for p in ck.glob("step_*") if (p / "meta.json").is_file()) if ck.is_dir() else []
        return done[-1] if done else None

    def save_state(self) -> Path:
        """Write a resumable checkpoint atomically (all processes take part)."""
        from ..checkpoint import save_weights

        acc = self.accelerator
        name, tmp, final = begin_checkpoint(acc, self.ckpt_dir, self.step, self.is_main, self.rank, self.generator)
        if self.is_main:
            save_weights(self._unwrapped().state_dict(), tmp / "model.safetensors")
            torch.save(
                {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "ema": self.ema},
                tmp / "trainer.pt",
            )
            meta = {
                "step": self.step,
                "epoch": self.epoch,
                "pos": self.pos,
                "world_size": self.world,
                "empty_batches": self.empty_batches,
                "config": self.cfg.to_dict(),
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        return publish_checkpoint(acc, self.ckpt_dir, name, tmp, final, self.cfg.train.keep_checkpoints, self.is_main)

    def load_state(self, directory: Union[str, Path]) -> None:
        """Restore model, optimiser, scheduler, EMA, RNG states and the data position."""
        from ..checkpoint import load_state_dict_strict, read_weights

        directory = Path(directory)
        meta = read_checkpoint_meta(directory, self.world)
        load_state_dict_strict(self._unwrapped(), read_weights(directory / "model.safetensors"), str(directory))
        st = torch.load(directory / "trainer.pt", map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.ema = st["ema"]
        _set_rng_state(torch.load(directory / f"rng_{self.rank}.pt", weights_only=False), self.generator)
        self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["pos"]
        self.empty_batches = meta.get("empty_batches", 0)
        self._epoch_batches = None

    # ------------------------------------------------------------ final save
    def save_final(self) -> Optional[Path]:
        """``<out>/final``: a load_checkpoint directory (+ LoRA/adapter files in LoRA mode)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if not self.is_main:
            return None
        from ..checkpoint import adapter_state_dict, lora_state_dict, save_weights
        from ..loading import save_checkpoint

        final = self.out / "final"
        model = copy.deepcopy(self._unwrapped()).float().eval()
        if self.ema is not None:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in self.ema:
                        p.copy_(self.ema[n])
        if self.cfg.finetune.mode == "lora":
            ft = self.cfg.finetune
            save_weights(lora_state_dict(model), final / "lora.safetensors")
            net = model.model
            if getattr(net, "has_adapter", False):
                save_weights(adapter_state_dict(net), final / "adapter.safetensors")
            (final / "lora.json").write_text(json.dumps({"r": ft.lora_r, "alpha": ft.lora_alpha, "base": self.cfg.model.init_from}, indent=1))
            model = model.merge_and_unload()
        save_checkpoint(model, final)
        plot_loss(self.out)
        return final
