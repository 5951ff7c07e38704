"""Core benchmark: conformance tables, parameter counts, and CPU/GPU forward cost of the
official-size stage 1 and S2A with random weights.

    python benchmarks/bench_core.py                    # everything, prints tables
    python benchmarks/bench_core.py --skip-forward     # tables and counts only
    python benchmarks/bench_core.py --device cuda --tokens 750

Each forward measurement runs in a fresh subprocess so that its peak resident memory
(ru_maxrss) belongs to that measurement alone. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "parity"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one_measurement(spec: dict) -> dict:
    """Run inside a subprocess: build the network, time one forward (after one warm-up)."""
    import torch

    from metis_speech.config import load_preset
    from metis_speech.loading import build_model

    torch.manual_seed(0)
    dev = torch.device(spec["device"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[spec["dtype"]]
    cfg = load_preset("official", spec["component"])
    model = build_model(cfg, dev, empty=True)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel():
                p.normal_(0, 0.02)
        for name, p in model.named_parameters():
            if name.endswith("to_weight.bias"):
                p.fill_(1.0)
    model = model.to(dtype).eval()
    rss_model = _rss_mb()
    L = spec["tokens"]
    B = 1
    g = torch.Generator().manual_seed(0)
    H = cfg.hidden_size
    if spec["component"].startswith("stage1"):
        Np, Tp = L // 5, L // 4  # a TTS-like split: phones, prompt, target
        T = L - Np - Tp
        phones = torch.randint(0, 363, (B, Np), generator=g).to(dev)
        prompt = torch.randint(0, cfg.codebook_size, (B, Tp), generator=g).to(dev)
        target = torch.randint(0, cfg.codebook_size, (B, T), generator=g).to(dev)
        masked = (torch.rand(B, T, generator=g) < 0.5).to(dev)
    else:
        Np, Tp = 0, L // 3
        T = L - Tp
        sem = torch.randint(0, cfg.cond_codebook_size, (B, L), generator=g).to(dev)
        pc = torch.randint(0, cfg.codebook_size, (B, Tp, cfg.num_quantizers), generator=g).to(dev)
        tc = torch.randint(0, cfg.codebook_size, (B, T, cfg.num_quantizers), generator=g).to(dev)
        masked = (torch.rand(B, T, generator=g) < 0.5).to(dev)
    t = torch.full((B,), 0.5, device=dev)
    est = model.diff_estimator

    def run():
        with torch.no_grad():
            if spec["component"].startswith("stage1"):
                cur = model.embed_tokens(target, masked)
                ctx = torch.cat([model.phone_prefix(phones), model.embed_tokens(prompt)], dim=1)
                x = torch.cat([ctx, cur], dim=1)
            else:
                cond = est.cond_mlp(model.condition(sem, 1))
                cur = model.embed_target(model.embed_lower(tc, 1), tc[..., 1], masked, 1)
                x = torch.cat([model.embed_prompt(pc), cur], dim=1) + cond
                cur = cur + cond[:, Tp:]
            C = x.shape[1] - T
            mode = spec["guidance"]
            if mode == "none":
                h = est(x, t)[:, C:]
            elif mode == "two-pass":
                h = est(x, t)[:, C:]
                est(cur, t)
            else:  # one batched (2, L) forward; the unconditional row right-padded
                xu = torch.cat([cur, cur.new_zeros(B, C, H)], dim=1)
                mask = torch.cat([torch.ones(B, L, device=dev), torch.cat([torch.ones(B, T, device=dev), torch.zeros(B, C, device=dev)], 1)])
                h = est(torch.cat([x, xu]), torch.cat([t, t]), mask)[:B, C:]
            logits = model.to_logit(h) if hasattr(model, "to_logit") else model.to_logits[1](h)
            return logits

    run()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        run()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = {
        **spec,
        "seconds": min(times),
        "rss_model_mb": rss_model,
        "rss_peak_mb": _rss_mb(),
        "params": sum(p.numel() for p in model.parameters()),
    }
    if dev.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def conformance_tables(dirs) -> None:
    from metis_speech import conformance

    for d in dirs:
        d = Path(d)
        if not (d / "manifest.json").exists():
            print(f"(no vectors at {d})")
            continue
        res = conformance.run_dir(d)
        print(f"\n== conformance: {d}")
        print(conformance.format_table(res))
        print(f"{sum(r.passed for r in res)}/{len(res)} passed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", nargs="*", default=[str(DEFAULT_SHARED), str(DEFAULT_SHARED / "holdout")])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, default=750)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--skip-forward", action="store_true")
    ap.add_argument("--skip-conformance", action="store_true")
    ap.add_argument("--json", help="also write the forward measurements here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        print(json.dumps(one_measurement(json.loads(args.one))))
        return

    if not args.skip_conformance:
        conformance_tables(args.vectors)

    from metis_speech.info import parameter_counts

    print("\n== parameter counts (official preset)")
    for comp, n in parameter_counts("official").items():
        print(f"  {comp:18s} {n:>14,d}")

    if args.skip_forward:
        return
    specs = []
    for dtype in args.dtypes.split(","):
        for guidance in ("none", "two-pass", "batched"):
            specs.append({"component": "stage1_tts", "dtype": dtype, "guidance": guidance})
        for guidance in ("none", "two-pass", "batched"):
            specs.append({"component": "s2a_full", "dtype": dtype, "guidance": guidance})
    rows = []
    import torch

    print(f"\n== one forward over {args.tokens} tokens, batch 1, {args.device}, "
          f"torch threads {torch.get_num_threads()} of {os.cpu_count()} cores")
    print(f"{'network':12s} {'dtype':5s} {'guidance':9s} {'seconds':>8s} {'RSS model MB':>13s} {'RSS peak MB':>12s}")
    for spec in specs:
        spec.update(device=args.device, tokens=args.tokens, repeat=args.repeat)
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{spec['component']} {spec['dtype']} {spec['guidance']}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        extra = f" cuda peak {r['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in r else ""
        print(f"{r['component']:12s} {r['dtype']:5s} {r['guidance']:9s} {r['seconds']:8.2f} {r['rss_model_mb']:13.0f} {r['rss_peak_mb']:12.0f}{extra}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
