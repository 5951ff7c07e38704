"""``metis train CONFIG`` — run a training recipe (also ``accelerate launch -m metis_speech.training.cli``).

CONFIG is a YAML file or the name of a packaged recipe (``metis_speech/recipes``).
``--resume`` continues from ``<out>/checkpoints/latest`` (a fresh start when there is none);
``--max-steps`` replaces ``train.max_steps`` (the schedule length: resume with the same value);
``--out`` replaces ``train.out``. Data options can be overridden with ``--data PATH``;
``--val-data SHARDS`` sets ``data.val_path`` (stage 1 / S2A: the loss on held-out shards is
logged as val_loss every ``train.eval_every`` steps and drawn in loss.png).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

__all__ = ["add_parser", "run", "main"]


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("config", help="training YAML, or a recipe name (e.g. stage1_pretrain_tiny)")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="optimiser steps (replaces train.max_steps)")
    p.add_argument("--out", default=None, help="run directory (replaces train.out)")
    p.add_argument("--data", default=None, help="data directory or manifest (replaces data.path / data.synthetic / data.sources)")
    p.add_argument("--val-data", default=None, metavar="SHARDS",
                   help="held-out `metis prepare` shards (replaces data.val_path; stage-1 and S2A runs)")
    p.add_argument("--until", type=int, default=None, help="stop (after a checkpoint) at this step without ending the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train stage 1 / S2A / the codecs / the L2S visual encoder from a recipe (single CPU/GPU or accelerate launch)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return _configure(p)


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..errors import MetisError
    from .trainer import load_train_config, make_trainer

    try:
        cfg = load_train_config(args.config)
    except ConfigError as e:
        raise MetisError(str(e)) from None
    if args.max_steps is not None:
        cfg.train.max_steps = args.max_steps
    if args.out is not None:
        cfg.train.out = args.out
    if args.data is not None:
        cfg.data.path, cfg.data.synthetic = args.data, None
    if args.val_data is not None:
        from pathlib import Path

        if not Path(args.val_data).exists():
            raise MetisError(f"--val-data {args.val_data}: no such folder")
        cfg.data.val_path = args.val_data
    if args.no_progress:
        cfg.train.progress = False
    trainer = make_trainer(cfg, resume=args.resume)
    summary = trainer.train(until=args.until)
    if trainer.is_main:
        last = summary.get("last") or {}
        print(
            json.dumps(
                {
                    "step": summary["step"],
                    "loss": last.get("loss"),
                    "accuracy": last.get("accuracy"),
                    **({"val_loss": last["val_loss"], "val_accuracy": last["val_accuracy"]} if "val_loss" in last else {}),
                    "frames_per_s": round(summary["frames_per_s"], 1),
                    "peak_rss_mb": round(summary["peak_rss_mb"] or 0, 1),
                    "skipped": summary["skipped"],
                    "out": str(trainer.out),
                }
            )
        )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point for ``python -m`` / ``accelerate launch -m metis_speech.training.cli``."""
    from ..errors import MetisError

    parser = _configure(argparse.ArgumentParser(prog="metis-train", description=__doc__))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MetisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
