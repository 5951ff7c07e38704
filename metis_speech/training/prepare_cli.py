"""``metis prepare``: a thin layer over :func:`metis_speech.training.prepare.prepare`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["add_parser", "run", "main"]

EPILOG = """\
examples:
  metis prepare /data/wavs --out shards/pretrain --model /models/bundle
  metis prepare corpus/train.jsonl --out shards/tts --task tts --model hub --max-duration 20
  metis prepare '/data/emilia/EN/*.tar' --out shards/se --task se --model hub --no-acoustic
  metis prepare corpus/train.jsonl --out shards/tse --task tse --model random:tiny --phone-vocab vocab.json
  metis prepare '/data/emilia/*.tar' --out shards/all --model hub --device cuda:1 --part 1/4   # 4 GPUs
  metis prepare corpus/train.jsonl --out shards/visual --task visual --model /models/bundle   # lip pairs
  metis prepare corpus/train.jsonl --out shards/l2s --task l2s --model /models/bundle --visual runs/visual_encoder/final

Input: a folder of audio files (speaker = first sub-folder, transcript = .txt/.lab beside the
audio), a JSONL manifest (audio, optional id/text/speaker/language/duration), or tar shards
in the Emilia layout (<key>.mp3|wav|flac + <key>.json). Tasks: none (pre-training / S2A),
tts (phones), vc, tse, se (a frame condition; vc/tse also a prompt, its length stored as
<id>/prompt_len), and from a manifest whose items have a "video" (optional "mouth_box"
[x0, y0, x1, y1], else the face is found): visual (mouth crops + semantic ids for the
visual-encoder trainer) and l2s (prompt + visual-feature condition for stage-1 L2S; the
visual encoder from --visual or the model source). Rerunning the same command resumes an
interrupted run.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare",
        help="tokenize audio into training shards (semantic/acoustic ids, conditions)",
        description="Tokenize audio into TokenDataset shards (semantic ids, acoustic ids, phones, and the task's "
        "frame condition), resumably, with duration filtering and a summary of what was skipped and why.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="audio folder, JSONL manifest, or tar shard(s) (file, folder or glob)")
    p.add_argument("--out", required=True, help="output folder (an existing preparation there is resumed)")
    p.add_argument("--model", default="hub", help="tokenizer source: bundle dir, official dir, 'hub' or 'random:tiny' (default hub)")
    p.add_argument("--task", default="none", choices=["none", "tts", "vc", "tse", "se", "visual", "l2s"],
                   help="fine-tuning data recipe (default none: ids only); visual and l2s need videos in a manifest")
    p.add_argument("--visual", default=None, metavar="DIR",
                   help="l2s: visual encoder checkpoint (a visual-encoder run's final/; default: the model source's)")
    p.add_argument("--phones", action="store_true", help="also store phones of transcripts (always on for --task tts)")
    p.add_argument("--no-acoustic", dest="acoustic", action="store_false", help="skip acoustic ids (not needed for stage 1)")
    p.add_argument("--phone-vocab", default=None, help="phone vocabulary JSON (default: the model source's)")
    p.add_argument("--language", default="auto", help="transcript language when the item gives none (default auto)")
    p.add_argument("--min-duration", type=float, default=0.5, help="seconds; shorter files are skipped (default 0.5)")
    p.add_argument("--max-duration", type=float, default=30.0, help="seconds; longer files are skipped (default 30)")
    p.add_argument("--shard-size", type=int, default=None,
                   help="input utterances per shard (default 500; 100 for vc/tse/se/visual/l2s, whose items are large)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--cond-dtype", default="float16", choices=["float16", "float32", "bfloat16"], help="storage type of cond")
    p.add_argument("--batch-size", type=int, default=8, help="utterances per SSL forward pass (default 8)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: best available)")
    p.add_argument("--dtype", default=None, help="network dtype: fp32, bf16, fp16 (default fp32)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--se-snr", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="SE noise SNR range, dB (default -5 20)")
    p.add_argument("--tse-snr", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="TSE target-to-interferer SNR range, dB (default -5 5)")
    p.add_argument("--reverb-prob", type=float, default=None, help="SE: probability of a simulated room (default 0.5)")
    p.add_argument("--part", default="0/1", metavar="K/N",
                   help="this process does every N-th shard starting at K, so N processes can share --out (default 0/1)")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # tests: a simulated kill
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from .prepare import PrepareConfig, prepare
    from .task_data import TaskRecipe

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = TaskRecipe()
    if args.se_snr:
        recipe.se_snr = tuple(args.se_snr)
    if args.tse_snr:
        recipe.tse_snr = tuple(args.tse_snr)
    if args.reverb_prob is not None:
        recipe.reverb_prob = args.reverb_prob
    try:
        k, n = (int(x) for x in str(args.part).split("/"))
    except ValueError:
        from ..errors import MetisError

        raise MetisError(f"--part {args.part!r}: expected K/N, e.g. 0/4") from None
    cfg = PrepareConfig(
        input=args.input, out=args.out, model=args.model, task=args.task, acoustic=args.acoustic, phones=args.phones,
        language=args.language, min_duration=args.min_duration, max_duration=args.max_duration,
        shard_size=args.shard_size, seed=args.seed, cond_dtype=args.cond_dtype, recipe=recipe, visual=args.visual,
        phone_vocab=args.phone_vocab, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        progress=not args.quiet and sys.stderr.isatty(), part=(k, n),
    )
    summary = prepare(cfg, stop_after=args.stop_after)
    return 0 if summary["utterances"] > 0 or not summary["complete"] else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m metis_speech.training.prepare_cli ...`` (same as ``metis prepare ...``)."""
    from ..errors import MetisError

    parser = argparse.ArgumentParser(prog="metis")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "prepare":
        argv = ["prepare"] + argv
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MetisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
