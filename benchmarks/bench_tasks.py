"""Task benchmark: real-time factor and peak memory of each task, through the Python API.

    python benchmarks/bench_tasks.py tiny                 # every task on the tiny preset
    python benchmarks/bench_tasks.py official-tts         # 5 s TTS, official sizes, random weights
    python benchmarks/bench_tasks.py official-memory      # SE networks only vs every network loaded
    python benchmarks/bench_tasks.py small                # the shipped small model, every task it has
    common: --device cpu|cuda  --dtype fp32|bf16  --preset default|fast  --int8 (CPU)  --low-memory

Networks come from ``random:<preset>`` sources (random weights: the output is noise; the
cost is that of the real networks). Every measurement runs in a fresh subprocess so that
its peak resident memory (ru_maxrss) is its own. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VOCAB = REPO.parent / "shared" / "g2p" / "vocab.json"
TEXT_5S = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."
PROMPT_TEXT = "This is the voice that should be copied by the model."


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _speechlike(seconds, sr=16000, f0=130.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 * (1 + np.sin(2 * np.pi * 4 * t))) ** 2
    wav = wav + 0.05 * rng.standard_normal(t.size)
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def one(spec: dict) -> dict:
    import torch

    from metis_speech.pipeline import Metis

    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    source = "small" if spec["preset"] == "small" else f"random:{spec['preset']}"
    m = Metis.from_pretrained(spec["task"], source, device=spec.get("device", "cpu"),
                              dtype=spec.get("dtype", "fp32"), phone_vocab=str(VOCAB) if VOCAB.exists() and source != "small" else None,
                              lazy=spec.get("load") == "task", preset=spec.get("decoding", "default"),
                              quantize="int8" if spec.get("int8") else None, low_memory=bool(spec.get("low_memory")))
    if spec.get("load") == "all":  # every network of the system (one stage 1)
        for name in ("stage1", "ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a", "visual"):
            m._net(name)
    load_s = time.perf_counter() - t0
    prompt = (_speechlike(3.0), 16000)
    source = (_speechlike(spec.get("seconds", 5.0), seed=1, f0=170), 16000)
    kw = {k: spec[k] for k in ("steps", "s2a_steps", "guidance") if k in spec}

    def run():
        if spec["task"] == "tts":
            return m.tts(TEXT_5S, prompt, PROMPT_TEXT, duration=spec.get("seconds", 5.0), language="en", seed=0, **kw)
        if spec["task"] == "vc":
            return m.vc(source, prompt, seed=0, **kw)
        if spec["task"] == "tse":
            return m.tse(source, prompt, seed=0, **kw)
        if spec["task"] == "se":
            return m.se(source, seed=0, **kw)
        raise ValueError(spec["task"])

    if spec.get("warmup", True):
        run()
    t0 = time.perf_counter()
    out = run()
    secs = time.perf_counter() - t0
    return {**spec, "load_s": load_s, "seconds_run": secs, "audio_s": out.duration, "rtf": secs / out.duration,
            "rss_peak_mb": _rss_mb(), "rss_start_mb": rss0, "loaded": m.loaded}


def _sub(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print(rows, cols):
    print("  ".join(f"{c:>12s}" for c in cols))
    for r in rows:
        if "error" in r:
            print(f"{r.get('task')} {r.get('dtype', '')}: failed: {r['error']}")
            continue
        vals = []
        for c in cols:
            v = r.get(c, "")
            vals.append(f"{v:12.3f}" if isinstance(v, float) else f"{str(v):>12s}")
        print("  ".join(vals), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=["tiny", "small", "official-tts", "official-memory"], default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], help="one dtype (overrides --dtypes)")
    ap.add_argument("--preset", default="default", choices=["default", "fast"], help="decoding preset")
    ap.add_argument("--int8", action="store_true", help="CPU: int8 dynamic quantisation of stage 1 and S2A")
    ap.add_argument("--low-memory", action="store_true", help="each stage loads its networks and drops them after")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each measurement")
    ap.add_argument("--warmup", action="store_true", help="official-tts: one untimed request first (loading excluded)")
    ap.add_argument("--settings", default="reference,fast", help="official-tts: which decoding settings to run "
                    "(reference = the reference's default steps, fast = the fast preset)")
    ap.add_argument("--json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    if args.dtype:
        args.dtypes = args.dtype
    extra = {"decoding": args.preset, "int8": args.int8, "low_memory": args.low_memory,
             **({"threads": args.threads} if args.threads else {})}
    rows = []
    if args.what == "small":
        print(f"== shipped small model, {args.device}, preset {args.preset}"
              f"{', int8' if args.int8 else ''}, 5 s input/output (TTS: 3 s prompt), one warm-up request first")
        for dtype in args.dtypes.split(","):
            for task in ("tts", "vc", "tse", "se"):
                rows.append(_sub({"task": task, "preset": "small", "device": args.device, "dtype": dtype,
                                  "load": "task", **extra}))
        _print(rows, ["task", "dtype", "load_s", "seconds_run", "audio_s", "rtf", "rss_peak_mb"])
    elif args.what == "tiny":
        print(f"== tiny preset, random weights, {args.device}, reference default steps, 5 s input/output")
        for task in ("tts", "vc", "tse", "se"):
            rows.append(_sub({"task": task, "preset": "tiny", "device": args.device, "dtype": "fp32", "load": "task", **extra}))
        _print(rows, ["task", "load_s", "seconds_run", "audio_s", "rtf", "rss_peak_mb"])
    elif args.what == "official-tts":
        print(f"== official sizes, random weights, one 5 s TTS request (3 s prompt), {args.device}")
        for dtype in args.dtypes.split(","):
            for label, steps in (("reference", {}), ("fast", {"decoding": "fast"})):
                if label not in args.settings.split(","):
                    continue
                r = _sub({"task": "tts", "preset": "official", "device": args.device, "dtype": dtype, "load": "task",
                          "warmup": args.warmup, **extra, **steps, "setting": label})
                rows.append(r)
                _print([r], ["setting", "dtype", "load_s", "seconds_run", "audio_s", "rtf", "rss_peak_mb"])
    else:
        print(f"== official sizes, random weights: peak memory of a 5 s SE request (2 steps), {args.device}")
        for load in ("task", "all"):
            r = _sub({"task": "se", "preset": "official", "device": args.device, "dtype": "fp32", "load": load,
                      "warmup": False, "steps": 2, "s2a_steps": [2, 1], "setting": f"load={load}"})
            rows.append(r)
            _print([r], ["setting", "dtype", "load_s", "seconds_run", "rss_peak_mb"])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
