"""``metis eval``: score generated speech against a test set (a thin layer over :mod:`.runner`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .backends import EvalError

__all__ = ["add_parser", "run"]

EPILOG = """examples:
  metis eval out/tts --testset data/test/tts.jsonl          # folder of <id>.wav files
  metis eval out/generated.jsonl --metrics wer,sim            # manifest with a 'generated' field
  metis eval --testset data/test/se.jsonl --score-references  # ground-truth table of a test set
metrics: wer (wer, cer), sim, dnsmos (sig, bak, ovrl, p808), pesq, stoi (stoi, estoi),
  si_sdr (si_sdr, si_sdri), speed (rtf, peak_rss_mb, peak_cuda_mb from the manifest);
  aliases: all, intelligibility, similarity, quality.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="score generated speech (WER, speaker similarity, DNSMOS, PESQ, ...)",
        description="Score generated speech per task: WER/CER, speaker similarity, DNSMOS, PESQ, STOI, SI-SDR. "
        "Prints mean and 95% CI per metric and writes scores.csv, summary.json, metrics.png and spectrograms.png.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("generated", nargs="?", help="folder of generated audio named <id>.wav, or a JSONL manifest with 'generated' paths")
    p.add_argument("-t", "--testset", help="test-set JSONL manifest (paths relative to its folder)")
    p.add_argument("-o", "--out", help="output folder (default: <folder>/eval, or <manifest>.eval beside a manifest)")
    p.add_argument("-m", "--metrics", default="all", help="comma-separated metric groups or columns (default: all that apply)")
    p.add_argument("--score-references", action="store_true", help="score the test set's reference audio (and for SE/TSE its noisy input) instead of generated audio")
    p.add_argument("--asr", default="pocketsphinx", help="ASR backend for WER: pocketsphinx (offline, English), whisper, paraformer")
    p.add_argument("--asr-model", help="model id or local folder for the ASR backend (whisper: openai/whisper-large-v3)")
    p.add_argument("--language", default=None, help="text language for normalisation and ASR: en (default) or zh (default with paraformer)")
    p.add_argument("--sv", default="resemblyzer", help="speaker-similarity backend: resemblyzer (offline) or wavlm")
    p.add_argument("--sv-model", help="model id or local folder for the speaker backend (wavlm: a WavLMForXVector checkpoint)")
    p.add_argument("--device", default="cpu", help="device for neural backends (cpu, cuda)")
    p.add_argument("--tasks", help="only score these tasks, comma-separated (tts,vc,tse,se,l2s)")
    p.add_argument("--limit", type=int, help="score only the first N items")
    p.add_argument("--allow-missing", action="store_true", help="skip items whose generated file is missing instead of failing")
    p.add_argument("--examples", type=int, default=3, help="items drawn in spectrograms.png (default 3)")
    p.add_argument("--no-plot", action="store_true", help="write no PNG figures")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _default_out(args) -> Path:
    if args.generated and Path(args.generated).is_dir():
        return Path(args.generated) / "eval"
    manifest = Path(args.generated or args.testset)
    suffix = ".references.eval" if args.score_references else ".eval"
    return manifest.parent / (manifest.stem + suffix)


def run(args) -> int:
    from .manifest import TASKS, load_items
    from .report import format_table, write_report
    from .runner import EvalConfig, evaluate, resolve_metrics

    from .asr import ASR_BACKENDS
    from .speaker import SV_BACKENDS

    metrics = resolve_metrics(args.metrics)  # fail on a bad name before loading anything
    if args.asr not in ASR_BACKENDS:
        raise EvalError(f"unknown ASR backend {args.asr!r}; choose one of {', '.join(ASR_BACKENDS)}")
    if args.sv not in SV_BACKENDS:
        raise EvalError(f"unknown speaker-similarity backend {args.sv!r}; choose one of {', '.join(SV_BACKENDS)}")
    if args.asr == "paraformer" and args.language is None:
        args.language = "zh"
    if args.limit is not None and args.limit < 1:
        raise EvalError("--limit must be at least 1")
    if args.examples < 0:
        raise EvalError("--examples must be >= 0")
    items = load_items(
        Path(args.generated) if args.generated else None,
        Path(args.testset) if args.testset else None,
        score_references=args.score_references,
        allow_missing=args.allow_missing,
    )
    if args.tasks:
        wanted = [t.strip().lower() for t in args.tasks.split(",") if t.strip()]
        bad = [t for t in wanted if t not in TASKS]
        if bad:
            raise EvalError(f"unknown task {bad[0]!r} in --tasks; choose from {', '.join(TASKS)}")
        items = [it for it in items if it.task in wanted]
        if not items:
            raise EvalError(f"no items of task {', '.join(wanted)}")
    if args.limit:
        items = items[: args.limit]
    cfg = EvalConfig(
        metrics=metrics,
        asr=args.asr,
        asr_model=args.asr_model,
        sv=args.sv,
        sv_model=args.sv_model,
        language=args.language or "en",
        device=args.device,
        score_references=args.score_references,
        keep_examples=0 if args.no_plot else args.examples,
    )
    report = evaluate(items, cfg, progress=not args.quiet)
    out = Path(args.out) if args.out else _default_out(args)
    files = write_report(
        report,
        out,
        plots=not args.no_plot,
        generated=str(Path(args.generated).resolve()) if args.generated else None,
        testset=str(Path(args.testset).resolve()) if args.testset else None,
    )
    print(format_table(report))
    print("\nwrote " + ", ".join(str(p) for p in files.values()))
    sys.stdout.flush()
    return 0
