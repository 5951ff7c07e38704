"""``metis info``: the model each task uses by default and why, presets, the official file
registry and parameter counts."""

from __future__ import annotations

import torch

from . import hub
from .config import list_presets, load_preset, preset_components


def parameter_counts(preset: str = "official") -> dict:
    """component -> number of parameters, counted on the meta device (no memory used)."""
    from .loading import MODEL_CLASSES, build_model

    counts = {}
    for comp in preset_components(preset):
        cfg = load_preset(preset, comp)
        if type(cfg).__name__ not in MODEL_CLASSES:
            continue
        try:
            with torch.device("meta"):
                model = build_model(cfg)
        except ImportError:
            continue
        counts[comp] = sum(p.numel() for p in model.parameters())
    return counts


def shipped_summary() -> str:
    """One paragraph on the small model shipped in the package (or that there is none)."""
    from .bundle import read_manifest
    from .shipped import SMALL_MODEL_DIR, small_model_dir

    d = small_model_dir()
    if d is None:
        return f"shipped small model: not in this installation ({SMALL_MODEL_DIR})"
    m = read_manifest(d)
    size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
    tasks = ", ".join(t for t in sorted(m["stage1"]) if t != "base")
    lines = [f"shipped small model ('--model small'; the default where it does the task and the official weights are not cached): {d}",
             f"  tasks: {tasks}; preset {m.get('preset', '?')}; {size / 1e6:.1f} MB"]
    trained = m.get("training") or {}
    if trained.get("corpus"):
        lines.append(f"  trained on: {trained['corpus']}")
    for preset, tasks_ in sorted((m.get("decoding") or {}).items()):
        for task, d in sorted(tasks_.items()):
            lines.append(f"  decoding ({preset} preset), {task}: " + ", ".join(
                f"{k} {','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in d.items()))
    for task, figures in sorted((m.get("measured") or {}).items()):
        lines.append(f"  measured, {task}: {figures}")
    return "\n".join(lines)


def model_choices() -> list:
    """(task, one line: the model ``--model auto`` uses for it and why, or why there is none)."""
    from .errors import MetisError
    from .shipped import choose_source

    out = []
    for task in ("tts", "vc", "tse", "se", "omni", "l2s"):
        try:
            out.append((task, choose_source(task, "auto").line))
        except MetisError as e:
            out.append((task, f"none: {e}"))
    return out


def _cmd(args) -> int:
    print("model per task (--model auto; nothing is downloaded):")
    for task, line in model_choices():
        print(f"  {task:5s} {line}")
    print(f"presets: {', '.join(list_presets())}")
    print(shipped_summary())
    print(f"\nparameter counts ({args.preset}):")
    for comp, n in parameter_counts(args.preset).items():
        print(f"  {comp:18s} {n:>14,d}")
    print("\ntasks -> official files:")
    for task, spec in hub.TASKS.items():
        lora = f", LoRA r={spec.lora_rank} alpha={spec.lora_alpha:g}" if spec.lora else ""
        print(f"  {task:5s} stage 1 = {spec.component}{lora}" + (f"  ({spec.note})" if spec.note else ""))
        for key in hub.files_for_task(task):
            f = hub.FILES[key]
            print(f"        {f.repo}:{f.path} ({f.size_hint})")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="the model each task uses and why, presets, official checkpoint files, parameter counts")
    p.add_argument("--preset", default="official", help="preset whose parameter counts to print")
    p.set_defaults(func=_cmd)
