"""Outputs of an evaluation: terminal table, per-item CSV, JSON summary and PNG figures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from . import dsp
from .backends import need
from .runner import EvalReport

__all__ = ["LOWER_IS_BETTER", "NON_METRIC_COLUMNS", "format_table", "write_csv", "write_json", "plot_metrics", "plot_spectrograms", "write_report"]

LOWER_IS_BETTER = {"wer", "cer", "rtf", "peak_rss_mb", "peak_cuda_mb"}
_FIRST = ["id", "task", "speaker", "duration_s"]
_LAST = ["text", "hypothesis", "audio"]
#: the columns of scores.csv that are not metrics
NON_METRIC_COLUMNS = frozenset(_FIRST + _LAST)


def _fmt(x: float, width: int = 9) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-".rjust(width)
    return (f"{x:.2f}" if abs(x) >= 100 else f"{x:.3f}").rjust(width)


def _table(summary: Dict[str, Any]) -> List[str]:
    lines = [f"{'metric':<20}{'n':>5}{'mean':>10}{'95% CI':>10}  better"]
    for name, s in summary["metrics"].items():
        if s["n"] == 0 and not s["n_nan"]:
            continue  # not applicable to these items
        better = "lower" if name.removeprefix("input_") in LOWER_IS_BETTER else "higher"
        ci = "-" if math.isnan(s["ci95"]) else "±" + _fmt(s["ci95"], 0).strip()
        nan = f"  ({s['n_nan']} NaN)" if s["n_nan"] else ""
        lines.append(f"{name:<20}{s['n']:>5}{_fmt(s['mean'], 10)}{ci:>10}  {better}{nan}")
    for unit in ("wer", "cer"):
        if f"{unit}_corpus" in summary:
            lines.append(f"{unit + ' (corpus)':<20}{'':>5}{_fmt(summary[unit + '_corpus'], 10)}")
    return lines


def format_table(report: EvalReport) -> str:
    """Mean and 95% confidence interval of every metric, overall and per task."""
    s = report.summary
    tasks = s["by_task"]
    counts = ", ".join(f"{t} {v['n_items']}" for t, v in tasks.items())
    head = f"metis eval: {s['n_items']} items ({counts})"
    if s["score_references"]:
        head += ", scoring the references (ground truth)"
    backends = [f"{k}={v}" for k, v in s["backends"].items() if v and k != "dnsmos"]
    if backends:
        head += "; " + ", ".join(backends)
    lines = [head, ""]
    if len(tasks) > 1:
        for task, ts in tasks.items():
            lines += [f"[{task}]", *_table(ts), ""]
        lines += ["[all]"]
    lines += _table(s)
    for w in s.get("warnings", [])[:5]:
        lines.append(f"warning: {w}")
    if len(s.get("warnings", [])) > 5:
        lines.append(f"warning: ... and {len(s['warnings']) - 5} more (see summary.json)")
    return "\n".join(lines)


def write_csv(report: EvalReport, path: Path) -> Path:
    """One row per item: identifiers, every metric column, normalised text and transcript."""
    metrics = report.metric_columns
    extra = sorted({k for r in report.rows for k in r if not k.startswith("_")} - set(_FIRST) - set(_LAST) - set(metrics))
    fields = _FIRST + metrics + extra + [c for c in _LAST if any(c in r for r in report.rows)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in report.rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(report: EvalReport, path: Path, **context: Any) -> Path:
    """Summary statistics (overall, per task), backends, warnings and ``context`` (paths, args)."""
    cfg = report.config
    data = {**context, "config": {k: getattr(cfg, k) for k in ("metrics", "asr", "asr_model", "sv", "sv_model", "language", "score_references")}, **report.summary}
    path.write_text(json.dumps(_jsonable(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _pyplot():
    matplotlib = need("matplotlib", "matplotlib", "the evaluation plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(report: EvalReport, path: Path) -> Path:
    """Bar chart per metric: mean with 95% CI error bars, one bar per task and one for all."""
    plt = _pyplot()
    cols = [c for c in report.metric_columns if report.summary["metrics"][c]["n"] > 0]
    ncols = min(4, max(1, len(cols)))
    nrows = max(1, math.ceil(len(cols) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    groups = {**{t: v for t, v in report.summary["by_task"].items()}, "all": report.summary}
    if len(report.summary["by_task"]) == 1:
        groups = {"all": report.summary}
    for ax, col in zip(axes.flat, cols):
        names = [g for g, s in groups.items() if s["metrics"].get(col, {}).get("n", 0) > 0]
        means = [groups[g]["metrics"][col]["mean"] for g in names]
        cis = [np.nan_to_num(groups[g]["metrics"][col]["ci95"]) for g in names]
        ax.bar(names, means, yerr=cis, capsize=4, color=["C%d" % (i % 10) for i in range(len(names))])
        better = "lower" if col.removeprefix("input_") in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{col} ({better} is better)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    title = "ground truth (references)" if report.config.score_references else "generated"
    fig.suptitle(f"metis eval: {title}, {report.summary['n_items']} items, mean ± 95% CI", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_spectrograms(report: EvalReport, path: Path, sample_rate: int = 16000) -> Path:
    """Log-power spectrograms of a few items, side by side: input / generated / reference."""
    plt = _pyplot()
    kinds = [k for k in ("input", "generated", "reference") if any(k in ex for ex in report.examples)]
    rows = max(1, len(report.examples))
    fig, axes = plt.subplots(rows, max(1, len(kinds)), figsize=(4 * max(1, len(kinds)), 2.4 * rows), squeeze=False)
    for i, ex in enumerate(report.examples):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            if kind not in ex:
                ax.axis("off")
                continue
            spec = 10 * np.log10(dsp.stft_power(ex[kind], n_fft=512, hop_length=128) + 1e-10)
            vmax = spec.max()
            ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                      extent=(0, len(ex[kind]) / sample_rate, 0, sample_rate / 2000))
            ax.set_title(f"{ex['id']} ({ex['task']}): {kind}", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("kHz", fontsize=7)
            if i == rows - 1:
                ax.set_xlabel("s", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(report: EvalReport, out_dir: Path, plots: bool = True, **context: Any) -> Dict[str, Path]:
    """Write scores.csv, summary.json and (with ``plots``) metrics.png and spectrograms.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"csv": write_csv(report, out_dir / "scores.csv"), "json": write_json(report, out_dir / "summary.json", **context)}
    if plots:
        files["metrics_png"] = plot_metrics(report, out_dir / "metrics.png")
        if report.examples:
            files["spectrograms_png"] = plot_spectrograms(report, out_dir / "spectrograms.png")
    return files
