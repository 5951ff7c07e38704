"""Score a list of :class:`~.manifest.EvalItem` the way each task is scored in the field.

Metric groups (``--metrics`` takes group names, column names or the aliases below):

=========  ==========================================  ==========================================
group      columns                                     runs when
=========  ==========================================  ==========================================
wer        wer, cer (+ hypothesis text)                the item has ``text``
sim        sim                                         a ``prompt`` (else a ``reference``) exists
dnsmos     dnsmos_sig, dnsmos_bak, dnsmos_ovrl,        always
           dnsmos_p808
pesq       pesq                                        ``reference`` and task in se, tse, l2s
stoi       stoi, estoi                                 ``reference`` and task in se, tse, l2s
si_sdr     si_sdr, si_sdri                             ``reference`` and task in se, tse (si_sdri:
                                                       also an audio ``input``)
speed      rtf, peak_rss_mb, peak_cuda_mb              the generated manifest carries them
=========  ==========================================  ==========================================

With ``score_references`` the reference audio is scored as if generated (WER, SIM vs
the prompt, DNSMOS), and for SE / TSE the noisy input is scored against the reference
(``input_pesq``, ``input_stoi``, ``input_estoi``, ``input_si_sdr``, ``input_dnsmos_*``):
the ground-truth rows of a test set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..audio import load_audio
from . import quality
from .backends import EvalError
from .manifest import TASKS, EvalItem
from .text import char_errors, normalize_text, word_errors

__all__ = ["METRIC_GROUPS", "ALIASES", "EvalConfig", "EvalReport", "resolve_metrics", "evaluate", "mean_ci"]

SR = 16000
METRIC_GROUPS: Dict[str, tuple] = {
    "wer": ("wer", "cer"),
    "sim": ("sim",),
    "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"),
    "pesq": ("pesq",),
    "stoi": ("stoi", "estoi"),
    "si_sdr": ("si_sdr", "si_sdri"),
    "speed": ("rtf", "peak_rss_mb", "peak_cuda_mb"),
}
ALIASES = {
    "all": tuple(METRIC_GROUPS),
    "intelligibility": ("wer",),
    "similarity": ("sim",),
    "quality": ("dnsmos", "pesq", "stoi", "si_sdr"),
    "sisdr": ("si_sdr",),
    "si-sdr": ("si_sdr",),
}
INTRUSIVE_TASKS = {"pesq": ("se", "tse", "l2s"), "stoi": ("se", "tse", "l2s"), "si_sdr": ("se", "tse")}
INPUT_SCORED_TASKS = ("se", "tse")  # --score-references also scores their noisy input


def resolve_metrics(spec: Optional[Iterable[str] | str]) -> List[str]:
    """'wer,sim' / ['dnsmos', 'cer'] / None -> ordered list of metric groups."""
    if spec is None:
        return list(METRIC_GROUPS)
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not names:
        raise EvalError("no metrics selected")
    column_to_group = {c: g for g, cols in METRIC_GROUPS.items() for c in cols}
    groups: List[str] = []
    for name in names:
        if name in METRIC_GROUPS:
            found: Sequence[str] = (name,)
        elif name in ALIASES:
            found = ALIASES[name]
        elif name in column_to_group:
            found = (column_to_group[name],)
        else:
            valid = ", ".join([*METRIC_GROUPS, *ALIASES])
            raise EvalError(f"unknown metric {name!r}; choose from {valid}")
        groups += [g for g in found if g not in groups]
    return [g for g in METRIC_GROUPS if g in groups]


@dataclass
class EvalConfig:
    """What to compute and with which backends."""

    metrics: List[str] = field(default_factory=lambda: list(METRIC_GROUPS))
    asr: str = "pocketsphinx"
    asr_model: Optional[str] = None
    sv: str = "resemblyzer"
    sv_model: Optional[str] = None
    language: str = "en"
    device: str = "cpu"
    score_references: bool = False
    keep_examples: int = 3  # items whose audio is kept for the spectrogram figure


@dataclass
class EvalReport:
    """Per-item rows, summary statistics and a few example waveforms."""

    rows: List[Dict[str, Any]]
    summary: Dict[str, Any]
    config: EvalConfig
    examples: List[Dict[str, Any]] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def metric_columns(self) -> List[str]:
        return list(self.summary["metrics"])


def mean_ci(values: Sequence[float], level: float = 0.95) -> Dict[str, float]:
    """Mean, sample std and the half-width of the Student-t confidence interval (NaNs dropped)."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    n_nan = int(np.isnan(x).sum())
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return {"n": 0, "n_nan": n_nan, "mean": math.nan, "std": math.nan, "ci95": math.nan}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "n_nan": n_nan, "mean": mean, "std": math.nan, "ci95": math.nan}
    std = float(x.std(ddof=1))
    try:
        from scipy.stats import t

        q = float(t.ppf(0.5 + level / 2, n - 1))
    except ImportError:  # pragma: no cover - scipy comes with pesq / pystoi
        q = 1.959964
    return {"n": n, "n_nan": n_nan, "mean": mean, "std": std, "ci95": q * std / math.sqrt(n)}


class _Scorer:
    """Holds the lazily loaded backends and scores one item at a time."""

    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg
        self._asr = None
        self._sv = None
        self._embeddings: Dict[str, np.ndarray] = {}
        self.warnings: List[str] = []

    def asr(self, wav: np.ndarray) -> str:
        if self._asr is None:
            from .asr import get_asr

            self._asr = get_asr(self.cfg.asr, self.cfg.asr_model, self.cfg.language, self.cfg.device)
        return self._asr(wav)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        if self._sv is None:
            from .speaker import get_speaker_encoder

            self._sv = get_speaker_encoder(self.cfg.sv, self.cfg.sv_model, self.cfg.device)
        return self._sv(wav)

    def embed_file(self, path) -> np.ndarray:
        """Embedding of a prompt / reference file, cached: test sets reuse prompts."""
        key = str(path)
        if key not in self._embeddings:
            self._embeddings[key] = self.embed(load_audio(path, SR)[0])
        return self._embeddings[key]

    def _intrusive(self, row: Dict[str, Any], prefix: str, est: np.ndarray, ref: np.ndarray, item: EvalItem, groups: List[str]) -> None:
        if abs(len(est) - len(ref)) > 0.05 * len(ref) + 0.05 * SR:
            self.warnings.append(
                f"{item.id}: {'input' if prefix else 'generated'} audio is {len(est) / SR:.2f} s, reference {len(ref) / SR:.2f} s; "
                "intrusive metrics use the common length"
            )
        if "pesq" in groups and item.task in INTRUSIVE_TASKS["pesq"]:
            row[prefix + "pesq"] = quality.pesq_wb(ref, est, SR)
        if "stoi" in groups and item.task in INTRUSIVE_TASKS["stoi"]:
            row[prefix + "stoi"] = quality.stoi(ref, est, SR)
            row[prefix + "estoi"] = quality.stoi(ref, est, SR, extended=True)
        if "si_sdr" in groups and item.task in INTRUSIVE_TASKS["si_sdr"]:
            row[prefix + "si_sdr"] = quality.si_sdr(est, ref)

    def score(self, item: EvalItem) -> tuple:
        cfg, groups = self.cfg, self.cfg.metrics
        gen_path = item.reference if cfg.score_references else item.generated
        gen, _ = load_audio(gen_path, SR)
        row: Dict[str, Any] = {
            "id": item.id,
            "task": item.task,
            "speaker": item.speaker or "",
            "audio": str(gen_path),
            "duration_s": round(len(gen) / SR, 3),
        }
        intrusive = item.reference is not None and any(
            g in groups and item.task in tasks for g, tasks in INTRUSIVE_TASKS.items()
        )
        score_input = (
            item.input_is_audio
            and item.reference is not None
            and item.task in INPUT_SCORED_TASKS
            and (cfg.score_references or "si_sdr" in groups)
        )
        if cfg.score_references:
            ref = gen  # the reference is what is being scored
        else:
            ref = load_audio(item.reference, SR)[0] if (intrusive or score_input) else None
        inp = load_audio(item.input, SR)[0] if score_input else None

        if "wer" in groups and item.text:
            hyp = self.asr(gen)
            w, c = word_errors(item.text, hyp, cfg.language), char_errors(item.text, hyp, cfg.language)
            row.update(wer=w.rate, cer=c.rate, _wer_errors=w.errors, _wer_len=w.ref_len, _cer_errors=c.errors, _cer_len=c.ref_len)
            row.update(text=normalize_text(item.text, cfg.language), hypothesis=normalize_text(hyp, cfg.language))
        if "sim" in groups:
            target = item.prompt if item.prompt is not None else (None if cfg.score_references else item.reference)
            if target is not None and not np.any(gen):
                row["sim"] = math.nan  # shown as a NaN count in the table, never silently dropped
                self.warnings.append(f"{item.id}: generated audio is silent; SIM is NaN")
            elif target is not None:
                row["sim"] = float(np.dot(self.embed(gen), self.embed_file(target)))
        if "dnsmos" in groups:
            row.update({f"dnsmos_{k}": v for k, v in quality.dnsmos(gen, SR).items()})
        if ref is not None and not cfg.score_references and intrusive:
            self._intrusive(row, "", gen, ref, item, groups)
            if inp is not None and "si_sdr" in groups and item.task in INTRUSIVE_TASKS["si_sdr"]:
                row["si_sdri"] = row["si_sdr"] - quality.si_sdr(inp, ref)
        if cfg.score_references and inp is not None:
            self._intrusive(row, "input_", inp, ref, item, groups)
            if "dnsmos" in groups:
                row.update({f"input_dnsmos_{k}": v for k, v in quality.dnsmos(inp, SR).items()})
        if "speed" in groups and not cfg.score_references:
            self._speed(row, item, len(gen) / SR)
        if cfg.score_references:
            audio = {"input": inp, "reference": gen}
        else:
            audio = {"input": inp, "generated": gen, "reference": ref}
        return row, audio

    @staticmethod
    def _speed(row: Dict[str, Any], item: EvalItem, seconds: float) -> None:
        ex = item.extra
        if "rtf" in ex:
            row["rtf"] = float(ex["rtf"])
        elif any(k in ex for k in ("wall_s", "time_s", "elapsed_s")):
            wall = next(float(ex[k]) for k in ("wall_s", "time_s", "elapsed_s") if k in ex)
            row["rtf"] = wall / seconds
        for k in ("peak_rss_mb", "peak_cuda_mb"):
            if k in ex:
                row[k] = float(ex[k])


def _summarise(rows: List[Dict[str, Any]], columns: List[str]) -> Dict[str, Any]:
    metrics = {c: mean_ci([r.get(c, math.nan) for r in rows if c in r]) for c in columns}
    out: Dict[str, Any] = {"n_items": len(rows), "metrics": metrics}
    for unit in ("wer", "cer"):
        errs = sum(r.get(f"_{unit}_errors", 0) for r in rows)
        total = sum(r.get(f"_{unit}_len", 0) for r in rows)
        if any(f"_{unit}_errors" in r for r in rows):
            out[f"{unit}_corpus"] = errs / total if total else math.nan
    return out


def _example(item: EvalItem, audio: Dict[str, Optional[np.ndarray]], cfg: EvalConfig) -> Dict[str, Any]:
    """Audio for the spectrogram figure: input / generated / reference, loading what scoring skipped."""
    audio = dict(audio)
    if audio.get("input") is None and item.input_is_audio:
        audio["input"] = load_audio(item.input, SR)[0]
    if "generated" in audio and audio.get("reference") is None and item.reference is not None:
        audio["reference"] = load_audio(item.reference, SR)[0]
    return {"id": item.id, "task": item.task, **{k: v for k, v in audio.items() if v is not None}}


def evaluate(items: Sequence[EvalItem], config: Optional[EvalConfig] = None, progress: bool = True, **overrides: Any) -> EvalReport:
    """Score every item; returns rows, overall and per-task summaries, and example audio.

    ``overrides`` set :class:`EvalConfig` fields, e.g. ``evaluate(items, metrics="wer,sim")``.
    """
    cfg = replace(config or EvalConfig(), **overrides)  # TypeError on an unknown option
    cfg.metrics = resolve_metrics(cfg.metrics)
    if not items:
        raise EvalError("nothing to evaluate: no items")
    from tqdm.auto import tqdm

    scorer = _Scorer(cfg)
    rows, examples = [], []
    t0 = time.perf_counter()
    for item in tqdm(items, desc="metis eval", unit="item", disable=None if progress else True):
        row, audio = scorer.score(item)
        rows.append(row)
        if len(examples) < cfg.keep_examples:
            examples.append(_example(item, audio, cfg))
    order = [c for g in cfg.metrics for c in METRIC_GROUPS[g]]
    order += [f"input_{c}" for c in order if c not in ("wer", "cer", "sim", "si_sdri", "rtf", "peak_rss_mb", "peak_cuda_mb")]
    columns = [c for c in order if any(c in r for r in rows)]
    summary = _summarise(rows, columns)
    summary["by_task"] = {
        task: _summarise([r for r in rows if r["task"] == task], columns) for task in TASKS if any(r["task"] == task for r in rows)
    }
    summary["elapsed_s"] = time.perf_counter() - t0
    summary["backends"] = {
        "asr": cfg.asr if "wer" in cfg.metrics else None,
        "sv": cfg.sv if "sim" in cfg.metrics else None,
        "dnsmos": "speechmos ONNX (DNS-Challenge dnsmos_local)" if "dnsmos" in cfg.metrics else None,
    }
    summary["score_references"] = cfg.score_references
    summary["language"] = cfg.language
    summary["warnings"] = scorer.warnings
    return EvalReport(rows=rows, summary=summary, config=cfg, examples=examples, warnings=scorer.warnings)
