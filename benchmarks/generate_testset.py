"""Generate a `metis make-corpus` test set with a model, for `metis eval` to score.

    python benchmarks/generate_testset.py --testset corpus/tests/tts.jsonl --model small --out gen/tts
    metis eval gen/tts -t corpus/tests/tts.jsonl

Maps each test item to the task API (tts: text + prompt + prompt_text; vc: input as the
source + prompt; tse: input as the mixture + prompt; se: input; l2s: input as the video +
prompt, the item's mouth box as the crop) and writes ``<out>/<id>.wav`` (24 kHz). Items
already generated are skipped, so an interrupted run resumes. Prints the real-time factor
(generation seconds / generated audio seconds) at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _call(model, task: str, it: dict, base: Path, kw: dict):
    def path(key):
        p = Path(it[key])
        return str(p if p.is_absolute() else base / p)

    if task == "tts":
        return model.tts(it["text"], path("prompt"), it["prompt_text"], **kw)
    if task == "vc":
        return model.vc(path("input"), path("prompt"), **kw)
    if task == "tse":
        return model.tse(path("input"), path("prompt"), **kw)
    if task == "se":
        return model.se(path("input"), **kw)
    box = it.get("mouth_box")
    return model.l2s(path("input"), path("prompt"), crop_box=tuple(box) if box else None, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--testset", required=True, help="test-set JSONL (tests/<task>.jsonl of a make-corpus folder)")
    ap.add_argument("--model", default="auto", help="model source (auto, small, hub, a directory)")
    ap.add_argument("--out", required=True, help="folder for <id>.wav")
    ap.add_argument("--limit", type=int, default=None, help="only the first N items")
    ap.add_argument("--steps", type=int, default=None, help="stage-1 steps (default: the task's)")
    ap.add_argument("--s2a-steps", default=None, help="S2A steps per layer, comma separated")
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="default", choices=["default", "fast"], help="decoding preset")
    ap.add_argument("--speed", type=float, default=None,
                    help="TTS: speaking-rate factor of the target length (default 1; refused for other tasks)")
    ap.add_argument("--max-prompt-s", type=float, default=None,
                    help="TTS: seconds of the prompt's last words used (default: the model's; 0: all)")
    ap.add_argument("--int8", action="store_true", help="CPU int8 dynamic quantisation of stage 1 and S2A")
    ap.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="network dtype (default fp32)")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from metis_speech.errors import MetisError
    from metis_speech.pipeline import Metis

    testset = Path(args.testset)
    items = [json.loads(x) for x in testset.read_text().splitlines() if x.strip()][: args.limit]
    if not items:
        sys.exit(f"{testset}: no items")
    task = items[0].get("task") or testset.stem
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kw = {"seed": args.seed}
    if args.steps:
        kw["steps"] = args.steps
    if args.s2a_steps:
        kw["s2a_steps"] = [int(x) for x in args.s2a_steps.split(",")]
    for opt, key in (("--speed", "speed"), ("--max-prompt-s", "max_prompt_s")):
        value = getattr(args, key)
        if value is not None:
            if task != "tts":
                sys.exit(f"error: {opt} is a TTS option; {testset} holds {task} items")
            kw[key] = value
    try:
        model = Metis.from_pretrained(task, args.model, device=args.device, dtype=args.dtype, preset=args.preset,
                                      quantize="int8" if args.int8 else None)
    except MetisError as e:
        sys.exit(f"error: {e}")
    gen_s = audio_s = 0.0
    failed = 0
    for it in tqdm(items, desc=task, unit="item"):
        dest = out / f"{it['id']}.wav"
        if dest.is_file():
            continue
        t0 = time.perf_counter()
        try:
            res = _call(model, task, it, testset.parent, kw)
        except MetisError as e:
            print(f"{it['id']}: {e}", file=sys.stderr)
            failed += 1
            continue
        gen_s += time.perf_counter() - t0
        audio_s += res.duration
        res.save(dest)
    if audio_s:
        print(f"{task}: {len(items) - failed} items, {audio_s:.1f} s of audio in {gen_s:.1f} s (RTF {gen_s / audio_s:.3f})")
    return 1 if failed == len(items) else 0


if __name__ == "__main__":
    sys.exit(main())
