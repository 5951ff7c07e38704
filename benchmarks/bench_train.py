"""Training benchmark: throughput and peak memory of every trainer, at tiny and official sizes.

    python benchmarks/bench_train.py tiny                    # every packaged *_tiny recipe
    python benchmarks/bench_train.py official                # official sizes (CPU: minutes, ~12 GB)
    python benchmarks/bench_train.py official --only stage1_pretrain,s2a --steps 2 --json out.json
    python benchmarks/bench_train.py curves --work runs/curves   # every *_tiny recipe to its end + loss_curves.png

Each packaged recipe is run as written except: synthetic data of the recipe's kind (real
shards are not needed to time a step), ``--steps`` timed optimiser steps after one untimed
warm-up step, no checkpoint writing, ``--mixed-precision`` (default: ``no`` on CPU, the
recipe's own on GPU) and, at official sizes, ``--max-frames`` token frames per micro-batch
(the recipes' GPU batch sizes do not fit a CPU's time budget; the acoustic codec gets 1/15 of
it in codec frames, the visual encoder 1/6 in video frames). The acoustic codec is timed with its
discriminators on (``disc_start: 0``), its steady state. Every measurement runs in a fresh
subprocess so that its peak resident memory (ru_maxrss) is its own. Throughput is the
median over the timed steps of frames / step time, in the trainer's unit (50 Hz token
frames for stage 1 / S2A / semantic codec, seconds of audio for the acoustic codec, 25 fps
video frames for the visual encoder). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# synthetic data per trainer kind: tiny / official sizes (frames per utterance follow the recipes)
SYNTHETIC = {
    "tokens": ({"n": 64, "min_frames": 24, "max_frames": 64, "seed": 0},
               {"n": 16, "min_frames": 400, "max_frames": 750, "seed": 0}),
    "semantic_codec": ({"n": 64, "min_frames": 16, "max_frames": 48, "clusters": 16, "seed": 0},
                       {"n": 16, "min_frames": 400, "max_frames": 750, "clusters": 16, "seed": 0}),
    "acoustic_codec": ({"n": 16, "seconds": 1.0, "seed": 0}, {"n": 8, "seconds": 2.0, "seed": 0}),
    "visual_encoder": ({"n": 32, "min_frames": 6, "max_frames": 12, "classes": 8, "seed": 0},
                       {"n": 8, "min_frames": 75, "max_frames": 125, "classes": 8, "seed": 0}),
}
OFFICIAL_RECIPES = ["stage1_pretrain", "stage1_tts", "stage1_se_lora", "s2a", "s2a_1layer", "semantic_codec",
                    "acoustic_codec", "visual_encoder"]


def _kind(component: str) -> str:
    return component if component in ("semantic_codec", "acoustic_codec", "visual_encoder") else "tokens"


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one(spec: dict) -> dict:
    """Build the recipe's trainer in this process, run warm-up + timed steps, report."""
    import torch

    from metis_speech.recipes import recipe_path
    from metis_speech.training.trainer import load_train_config, make_trainer, read_log

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    name = spec["recipe"]
    s2a_1layer = name == "s2a_1layer"
    import yaml

    d = yaml.safe_load(Path(recipe_path("s2a" if s2a_1layer else name)).read_text())
    if s2a_1layer:
        d["model"]["component"] = "s2a_1layer"
    official = not name.endswith("_tiny")
    component = d["model"]["component"]
    kind = _kind(component)
    data = {k: v for k, v in d.get("data", {}).items() if k not in ("path", "synthetic", "max_utt_frames")}
    data["synthetic"] = dict(SYNTHETIC[kind][1 if official else 0])
    data["min_utt_frames"] = 1
    if official and spec.get("max_frames"):
        # CPU-sized batches: token frames as given; codec / video frames scaled to a similar step time
        scale = {"acoustic_codec": 1 / 15, "visual_encoder": 1 / 6}.get(kind, 1.0)
        data["max_frames"] = max(1, int(int(spec["max_frames"]) * scale))
    d["data"] = data
    out = tempfile.mkdtemp(prefix="bench_train_")
    if d["model"].get("init_from"):
        # random weights (the cost of a step does not depend on them); LoRA needs a base file
        d["model"]["init_from"] = None
        if d.get("finetune", {}).get("mode") == "lora":
            from metis_speech.config import load_preset
            from metis_speech.loading import build_model, save_checkpoint

            base = Path(out) / "base"
            save_checkpoint(build_model(load_preset(d["model"].get("preset", "tiny"), "stage1_base")), base)
            d["model"]["init_from"] = str(base)
    if kind == "acoustic_codec":
        d.setdefault("objective", {})["disc_start"] = 0
    steps = 1 + int(spec["steps"])
    d["train"] = {**d.get("train", {}), "max_steps": steps, "log_every": 1, "checkpoint_every": 10**9,
                  "out": out, "progress": False, "samples": None, "mixed_precision": spec["mixed_precision"]}
    t0 = time.perf_counter()
    tr = make_trainer(load_train_config(d), out)
    build_s = time.perf_counter() - t0
    tr.save_state = lambda: None  # timing steps, not disk writes
    tr.save_final = lambda: None
    n_params = sum(p.numel() for p in tr.trainable) if hasattr(tr, "trainable") else None
    if n_params is None:
        n_params = sum(p.numel() for m in tr.nets.values() for p in m.parameters() if p.requires_grad)
    tr.train()
    recs = read_log(out)[1:]  # the first step is the warm-up
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    fps = [r["frames_per_s"] for r in recs]
    frames = [r["frames"] for r in recs]
    return {"recipe": name, "component": component, "trainable_M": n_params / 1e6, "build_s": build_s,
            "frames_per_step": statistics.median(frames), "frames_per_s": statistics.median(fps),
            "s_per_step": statistics.median(f / x for f, x in zip(frames, fps)),
            "unit": getattr(tr, "frames_unit", "frames"), "peak_rss_mb": _peak_rss_mb(),
            "mixed_precision": spec["mixed_precision"], "threads": torch.get_num_threads()}


def curve(spec: dict) -> dict:
    """Run one *_tiny recipe to its end (its own steps and logging) under ``spec["work"]``;
    recipes on prepared data get synthetic data of their kind, and an ``init_from`` of
    ``runs/<recipe>/final`` points at that recipe's run in the same work folder."""
    import torch
    import yaml

    from metis_speech.recipes import recipe_path
    from metis_speech.training.trainer import load_train_config, make_trainer, read_log

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    work, name = Path(spec["work"]), spec["recipe"]
    d = yaml.safe_load(Path(recipe_path(name)).read_text())
    if d.get("data", {}).get("path"):
        d["data"] = {**{k: v for k, v in d["data"].items() if k != "path"},
                     "synthetic": dict(SYNTHETIC[_kind(d["model"]["component"])][0])}
    init = d["model"].get("init_from")
    if init and str(init).startswith("runs/"):
        d["model"]["init_from"] = str(work / Path(init).relative_to("runs"))
    out = work / name
    d["train"] = {**d.get("train", {}), "out": str(out), "progress": False, "checkpoint_every": 10**9, "samples": None}
    t0 = time.perf_counter()
    summary = make_trainer(load_train_config(d), out).train()
    recs = read_log(out)
    return {"recipe": name, "steps": summary["step"], "first_loss": recs[0]["loss"], "last_loss": recs[-1]["loss"],
            "seconds": time.perf_counter() - t0, "frames_per_s": summary["frames_per_s"], "out": str(out)}


def plot_curves(rows, path: Path) -> Path:
    """One panel per run: its logged training loss (the mel loss for the GAN) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metis_speech.training.trainer import read_log

    ok = [r for r in rows if "error" not in r]
    cols = 4
    nrows = max(1, -(-len(ok) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
    for ax, r in zip(axes.flat, ok):
        recs = read_log(r["out"])
        key = "mel_loss" if "mel_loss" in recs[-1] else "loss"  # a GAN's total adds adversarial terms
        ys = [x[key] for x in recs]
        ax.plot([x["step"] for x in recs], ys, lw=1)
        ax.set_title(f"{r['recipe']}: {ys[0]:.2f} -> {ys[-1]:.2f}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(key.replace("_", " "), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(ok):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _sub(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


COLS = ["recipe", "trainable_M", "frames_per_step", "s_per_step", "frames_per_s", "unit", "peak_rss_mb"]


def _print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['recipe']:>22s}  failed: {r['error']}", flush=True)
        return
    vals = []
    for c in COLS:
        v = r.get(c, "")
        vals.append(f"{v:12.2f}" if isinstance(v, float) else f"{str(v):>12s}")
    print(f"{vals[0]:>22s}  " + "  ".join(vals[1:]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=["tiny", "official", "curves"], default="tiny")
    ap.add_argument("--work", default="runs/curves", help="curves: folder of the runs and loss_curves.png")
    ap.add_argument("--only", help="comma-separated recipe names (without _tiny for official)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 10 tiny, 2 official)")
    ap.add_argument("--max-frames", type=int, default=1500, help="official: padded frames per micro-batch")
    ap.add_argument("--mixed-precision", default=None, help="no | bf16 | fp16 (default: no on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(curve(spec) if "work" in spec else one(spec)))
        return
    from metis_speech.recipes import list_recipes

    if args.what == "curves":
        names = sorted((r for r in list_recipes() if r.endswith("_tiny")), key=lambda r: (r != "stage1_pretrain_tiny", r))
        if args.only:
            names = [n for n in names if n in args.only.split(",") or n.removesuffix("_tiny") in args.only.split(",")]
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        print(f"== tiny recipes to their end, runs in {work}")
        rows = []
        for name in names:
            r = _sub({"recipe": name, "work": str(work), "threads": args.threads})
            rows.append(r)
            print(r if "error" in r else f"{name:>28s}  loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}  "
                  f"{r['steps']} steps  {r['seconds']:.0f} s  {r['frames_per_s']:.0f} frames/s", flush=True)
        print("plot:", plot_curves(rows, work / "loss_curves.png"))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return

    if args.what == "tiny":
        names = [r for r in list_recipes() if r.endswith("_tiny")]
        steps = args.steps or 10
    else:
        names = list(OFFICIAL_RECIPES)
        steps = args.steps or 2
    if args.only:
        want = [w.strip() for w in args.only.split(",") if w.strip()]
        names = [n for n in names if n in want or n.removesuffix("_tiny") in want]
    mp = args.mixed_precision or "no"
    print(f"== training throughput, {args.what} sizes, synthetic data, {steps} timed steps after 1 warm-up, "
          f"mixed precision {mp}, threads {args.threads or os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{'recipe':>22s}  " + "  ".join(f"{c:>12s}" for c in COLS[1:]), flush=True)
    rows = []
    for name in names:
        r = _sub({"recipe": name, "steps": steps, "max_frames": args.max_frames, "mixed_precision": mp,
                  "threads": args.threads})
        rows.append(r)
        _print_row(r)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
