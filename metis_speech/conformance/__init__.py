"""Numeric conformance against vectors produced with the reference implementation.

A vector directory (``../shared/parity`` or its ``holdout/``) has a ``manifest.json`` whose
``cases`` each name a ``kind``, weight files, an input/output tensor file and tolerances.
Each kind is handled by a runner function registered in :data:`RUNNERS`:

    runner(name, case, root, inputs) -> {output_name: tensor}

where ``inputs`` holds the case file's tensors plus the manifest's scalar inputs. The
comparison (ids exact, floats ``|a-b| <= atol + rtol*|b|``) is shared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ..errors import MetisError

Runner = Callable[[str, dict, Path, Dict[str, object]], Dict[str, torch.Tensor]]
RUNNERS: Dict[str, Runner] = {}


def register(kind: str):
    def deco(fn: Runner) -> Runner:
        RUNNERS[kind] = fn
        return fn

    return deco


def _load_runners() -> None:
    # importing these modules fills RUNNERS
    from . import codecs, ssl, stage1  # noqa: F401


@dataclass
class OutputResult:
    name: str
    max_abs_err: float
    tolerance: dict
    passed: bool
    detail: str = ""


@dataclass
class CaseResult:
    name: str
    kind: str
    passed: bool
    informational: bool = False
    outputs: List[OutputResult] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def max_abs_err(self) -> float:
        errs = [o.max_abs_err for o in self.outputs if math.isfinite(o.max_abs_err)]
        return max(errs) if errs else float("nan")


def compare(name: str, got: torch.Tensor, want: torch.Tensor, tol: dict) -> OutputResult:
    """Compare one output with its tolerance entry (``{"exact": true}`` or atol/rtol)."""
    got = torch.as_tensor(got).detach().cpu()
    want = torch.as_tensor(want)
    if tuple(got.shape) != tuple(want.shape):
        return OutputResult(name, float("inf"), tol, False, f"shape {tuple(got.shape)} != {tuple(want.shape)}")
    if tol.get("exact") or not want.is_floating_point():
        eq = torch.equal(got.to(want.dtype), want)
        n_bad = int((got.to(want.dtype) != want).sum())
        err = 0.0 if eq else float((got.double() - want.double()).abs().max())
        return OutputResult(name, err, tol, eq, "" if eq else f"{n_bad} ids differ")
    got = got.double()
    want = want.double()
    fin_w = torch.isfinite(want)
    fin_g = torch.isfinite(got)
    if not torch.equal(fin_w, fin_g) or not torch.equal(got[~fin_w], want[~fin_w]):
        return OutputResult(name, float("inf"), tol, False, "non-finite entries differ")
    diff = (got[fin_w] - want[fin_w]).abs()
    err = float(diff.max()) if diff.numel() else 0.0
    atol = float(tol.get("atol", 1e-5))
    rtol = float(tol.get("rtol", 1e-4))
    ok = bool((diff <= atol + rtol * want[fin_w].abs()).all()) if diff.numel() else True
    return OutputResult(name, err, tol, ok)


def case_inputs(case: dict, root: Path) -> Dict[str, object]:
    from safetensors.torch import load_file

    tensors = load_file(str(root / case["vectors"]))
    inputs: Dict[str, object] = {}
    for k, spec in case.get("inputs", {}).items():
        if "value" in spec:
            inputs[k] = spec["value"]
        elif k in tensors:
            inputs[k] = tensors[k]
    # informational cases keep everything, outputs included
    inputs["_all_tensors"] = tensors
    return inputs


def run_case(name: str, case: dict, root: Path) -> CaseResult:
    _load_runners()
    kind = case.get("kind", "?")
    informational = bool(case.get("informational", False))
    runner = RUNNERS.get(kind)
    if runner is None:
        return CaseResult(name, kind, False, informational, error=f"no runner for kind {kind!r}")
    try:
        inputs = case_inputs(case, root)
        got = runner(name, case, root, inputs)
    except MetisError as e:
        return CaseResult(name, kind, False, informational, error=str(e))
    except Exception as e:  # noqa: BLE001 - reported per case, the run goes on
        return CaseResult(name, kind, False, informational, error=f"{type(e).__name__}: {e}")
    want = inputs["_all_tensors"]
    tols = case.get("tolerance", {})
    results = []
    for out_name, tensor in got.items():
        if out_name not in want:
            continue
        tol = tols.get(out_name, {"exact": True} if informational else {"atol": 1e-5, "rtol": 1e-4})
        results.append(compare(out_name, tensor, want[out_name], tol))
    missing = [o for o in case.get("outputs", {}) if o not in got]
    passed = all(r.passed for r in results) and not missing and bool(results)
    err = f"outputs not produced: {missing}" if missing else None
    return CaseResult(name, kind, passed, informational, results, err)


def load_manifest(root: Path) -> dict:
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        raise MetisError(f"{root}: no manifest.json (expected a conformance-vector directory)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MetisError(f"{path}: invalid JSON ({e})") from None


def run_dir(root: Path, only: Optional[List[str]] = None, progress: bool = False) -> List[CaseResult]:
    root = Path(root)
    manifest = load_manifest(root)
    names = [n for n in manifest["cases"] if not only or n in only]
    if only:
        unknown = sorted(set(only) - set(manifest["cases"]))
        if unknown:
            raise MetisError(f"unknown case(s) {unknown}; available: {sorted(manifest['cases'])}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    it = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc="cases", leave=False)
    return [run_case(n, manifest["cases"][n], root) for n in it]


def format_table(results: List[CaseResult]) -> str:
    rows = [("case", "kind", "max_abs_err", "result", "worst output / note")]
    for r in results:
        status = "PASS" if r.passed else ("info-FAIL" if r.informational else "FAIL")
        if r.informational and r.passed:
            status = "PASS(info)"
        worst = ""
        if r.error:
            worst = r.error
        elif r.outputs:
            bad = [o for o in r.outputs if not o.passed]
            o = bad[0] if bad else max(r.outputs, key=lambda o: o.max_abs_err)
            tol = "exact" if o.tolerance.get("exact") else f"atol {o.tolerance.get('atol')}"
            worst = f"{o.name} ({tol}){' ' + o.detail if o.detail else ''}"
        rows.append((r.name, r.kind, f"{r.max_abs_err:.3g}", status, worst))
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return "\n".join(lines)


def _cmd(args) -> int:
    results = run_dir(Path(args.directory), only=args.case or None, progress=not args.quiet)
    print(format_table(results))
    hard = [r for r in results if not r.passed and not r.informational]
    n_info_fail = sum(1 for r in results if not r.passed and r.informational)
    print(
        f"\n{sum(r.passed for r in results)}/{len(results)} cases passed"
        + (f" ({n_info_fail} informational case(s) differ; they do not fail the run)" if n_info_fail else "")
    )
    return 1 if hard else 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "check-parity",
        help="run a directory of conformance vectors and print one row per case",
        description="Run every case of a conformance-vector directory (manifest.json + weights/ + cases/) "
        "against this implementation. Exits non-zero when any non-informational case fails.",
    )
    p.add_argument("directory", help="vector directory, e.g. ../shared/parity or ../shared/parity/holdout")
    p.add_argument("--case", action="append", help="run only this case (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)
