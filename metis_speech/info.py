"""``metis info``: presets, the official file registry and parameter counts."""

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


def _cmd(args) -> int:
    print(f"presets: {', '.join(list_presets())}")
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
    p = sub.add_parser("info", help="list presets, official checkpoint files and parameter counts")
    p.add_argument("--preset", default="official", help="preset whose parameter counts to print")
    p.set_defaults(func=_cmd)
