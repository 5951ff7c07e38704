"""``metis compare``: paired differences between two evaluations of the same items.

Two models (or two settings of one model) scored by ``metis eval`` on the same test items are
best compared item by item: the per-item difference removes the spread between items, so its
confidence interval is far narrower than the two means' own. Given BEFORE AFTER (and more pairs,
e.g. one per seed), this pairs the rows of each pair by ``id`` and prints, per metric, the two
means, the mean difference AFTER - BEFORE with its Student-t 95 % interval, and whether that is
better, worse or within the interval; with several pairs also the pooled differences.

    metis compare ev/base/c0 ev/new/c0 ev/base/c1 ev/new/c1 -m wer,sim
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from .backends import EvalError
from .report import LOWER_IS_BETTER, NON_METRIC_COLUMNS
from .runner import mean_ci

__all__ = ["add_parser", "run", "read_scores", "compare"]


def read_scores(path: Path) -> Dict[str, Dict[str, float]]:
    """Per-item metric values of one evaluation: ``path`` is a ``scores.csv``, the folder
    ``metis eval`` wrote it to, or the folder of generated audio it scored (``<folder>/eval``)."""
    path = Path(path)
    for f in (path, path / "scores.csv", path / "eval" / "scores.csv"):
        if f.is_file():
            break
    else:
        raise EvalError(f"{path}: no scores.csv there "
                        "(give a scores.csv, the folder `metis eval` wrote, or the folder it scored)")
    with open(f, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise EvalError(f"{f}: not a `metis eval` scores.csv (no 'id' column)")
        rows: Dict[str, Dict[str, float]] = {}
        for r in reader:
            vals = {}
            for k, v in r.items():
                if k is None or k in NON_METRIC_COLUMNS:
                    continue
                try:
                    vals[k] = float(v) if v not in ("", None) else math.nan
                except ValueError:
                    continue  # a text column of a newer format
            if r["id"] in rows:
                raise EvalError(f"{f}: item id {r['id']!r} appears twice")
            rows[r["id"]] = vals
    if not rows:
        raise EvalError(f"{f}: no items")
    return rows


def _row(before: Sequence[float], after: Sequence[float], metric: str) -> Dict[str, float]:
    diffs = [a - b for b, a in zip(before, after) if not (math.isnan(a) or math.isnan(b))]
    d = mean_ci(diffs)
    lower = metric.removeprefix("input_") in LOWER_IS_BETTER
    verdict = "within"
    if d["n"] > 1 and not math.isnan(d["ci95"]) and abs(d["mean"]) > d["ci95"]:
        verdict = "better" if (d["mean"] < 0) == lower else "worse"
    return {"n": d["n"], "before": mean_ci(before)["mean"], "after": mean_ci(after)["mean"], "diff": d["mean"],
            "ci95": d["ci95"], "verdict": verdict}


def compare(pairs: Sequence[Tuple[Path, Path]], metrics: Sequence[str] = ()) -> Dict[str, object]:
    """Paired comparison of (before, after) evaluations. Returns ``{"pairs": [{"before", "after",
    "n_common", "only_before", "only_after", "metrics": {m: row}}], "pooled": {m: row}}`` where a
    row has n, before, after (means), diff (after - before), ci95 and verdict."""
    out_pairs: List[Dict[str, object]] = []
    pooled: Dict[str, Tuple[List[float], List[float]]] = {}
    for b_path, a_path in pairs:
        b, a = read_scores(b_path), read_scores(a_path)
        common = [i for i in b if i in a]
        if not common:
            raise EvalError(f"{b_path} and {a_path} share no item ids: they are not the same test items")
        shared = [m for m in next(iter(b.values())) if m in next(iter(a.values()))]
        wanted = list(metrics) or shared
        missing = [m for m in wanted if m not in shared]
        if missing:
            raise EvalError(f"metric {missing[0]!r} is not in both {b_path} and {a_path} "
                            f"(both have: {', '.join(shared) or 'none'})")
        rows = {}
        for m in wanted:
            xb, xa = [b[i][m] for i in common], [a[i][m] for i in common]
            rows[m] = _row(xb, xa, m)
            pb, pa = pooled.setdefault(m, ([], []))
            pb += xb
            pa += xa
        out_pairs.append({"before": str(b_path), "after": str(a_path), "n_common": len(common),
                          "only_before": len(b) - len(common), "only_after": len(a) - len(common), "metrics": rows})
    return {"pairs": out_pairs, "pooled": {m: _row(xb, xa, m) for m, (xb, xa) in pooled.items()} if len(pairs) > 1 else {}}


def _fmt(x: float, signed: bool = False) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def format_comparison(result: Dict[str, object]) -> str:
    lines = []
    head = f"{'metric':<12}{'n':>5}{'before':>9}{'after':>9}{'after-before':>15}{'95% CI':>10}  verdict"
    blocks = [(f"{p['before']} -> {p['after']}" + (f"  ({p['only_before']} items only before, {p['only_after']} only after)"
                                                   if p["only_before"] or p["only_after"] else ""), p["metrics"])
              for p in result["pairs"]]
    if result["pooled"]:
        blocks.append((f"pooled over {len(result['pairs'])} pairs", result["pooled"]))
    for title, rows in blocks:
        lines += [title, head]
        for m, r in rows.items():
            ci = "-" if math.isnan(r["ci95"]) else "±" + _fmt(r["ci95"])
            lines.append(f"{m:<12}{r['n']:>5}{_fmt(r['before']):>9}{_fmt(r['after']):>9}{_fmt(r['diff'], True):>15}"
                         f"{ci:>10}  {r['verdict']}")
        lines.append("")
    return "\n".join(lines).rstrip()


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare",
        help="paired differences between two evaluations of the same items, with 95-percent intervals",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="examples:\n  metis compare ev/base/c0 ev/new/c0                  # folders `metis eval` scored\n"
               "  metis compare a/eval/scores.csv b/eval/scores.csv a2 b2 -m wer,sim --json cmp.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("evaluations", nargs="+", metavar="BEFORE AFTER",
                   help="pairs of evaluations (a scores.csv, the folder `metis eval` wrote it to, or the folder it scored)")
    p.add_argument("-m", "--metrics", default="", help="comma-separated metric columns (default: every one both have)")
    p.add_argument("--json", help="also write the comparison to this JSON file")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    ev = list(args.evaluations)
    if len(ev) % 2:
        raise EvalError(f"give evaluations in BEFORE AFTER pairs; got {len(ev)} (an odd number)")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    result = compare([(Path(ev[i]), Path(ev[i + 1])) for i in range(0, len(ev), 2)], metrics)
    print(format_comparison(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    sys.stdout.flush()
    return 0
