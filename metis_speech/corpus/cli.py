"""``metis make-corpus``: a thin layer over :func:`metis_speech.corpus.build.build_corpus`."""

from __future__ import annotations

import argparse
import os

from .config import TASKS

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  metis make-corpus /data/metis_tiny --minutes 2 --seed 0 --test-items 5
  metis make-corpus /data/metis_1h --minutes 60 --seed 0 --jobs 2
  metis make-corpus /data/metis_se --minutes 30 --tasks tts,se

Voices: flite (kal16 awb rms slt), festival (kal ked slt-hts) and espeak-ng variants,
multiplied by pitch / vocal-tract-length / tempo perturbation. flite rms, three espeak
voices and four perturbation settings appear only in the test sets. Re-running the same
command finishes an interrupted build and reuses finished files.
"""


def _positive_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "make-corpus",
        help="build a synthetic multi-speaker corpus from offline voices",
        description="Build a synthetic multi-speaker English corpus (24 kHz audio + JSONL manifests) and fixed "
        "test sets for TTS, VC, TSE, SE and lip-to-speech, offline and deterministically from a seed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created; an existing build there is resumed)")
    p.add_argument("--minutes", type=_positive_float, required=True, help="clean speech in train + dev, in minutes (test sets come on top)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files (default 0)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma list of test sets to make (default {','.join(TASKS)})")
    p.add_argument("--test-items", type=int, default=100, help="items per task test set (default 100)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel worker processes (default: number of CPUs)")
    p.add_argument("--text-sources", default="auto", help="comma list of generated,fortunes,dict, or auto = all installed (default auto)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .build import build_corpus
    from .config import CorpusConfig, parse_tasks

    cfg = CorpusConfig(
        out_dir=args.out_dir, minutes=args.minutes, seed=args.seed, tasks=parse_tasks(args.tasks),
        test_items=args.test_items, jobs=args.jobs, text_sources=args.text_sources,
    )
    build_corpus(cfg)
    return 0
