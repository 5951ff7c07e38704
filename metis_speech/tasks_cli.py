"""``metis tts|vc|tse|se|l2s``: the five tasks from the command line (a thin layer over
:class:`metis_speech.pipeline.Metis`).

One naming scheme for inputs across tasks::

    metis tts --text T --prompt P.wav --prompt-text PT --out O.wav
    metis vc  --source S.wav  --prompt P.wav --out O.wav
    metis tse --mixture M.wav --prompt P.wav [--text T] --out O.wav
    metis se  --input N.wav --out O.wav
    metis l2s --video V.mp4 --prompt P.wav --out O.wav

Batch mode: ``--batch items.jsonl --out-dir DIR``, one JSON object per line with the same
field names (``text``, ``prompt``, ``prompt_text``, ``source``, ``mixture``, ``input``,
``video``, optional ``id`` and ``out``); relative paths are read from the manifest's folder.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List

from .errors import MetisError
from .inputs import MAX_PROMPT_S, REFINE_MODES, SPEAKING_RATE

# task -> (fields it takes, required fields, help)
TASK_FIELDS = {
    "tts": (["text", "prompt", "prompt_text", "duration", "language"], ["text", "prompt", "prompt_text"],
            "zero-shot text-to-speech in the voice of a prompt"),
    "vc": (["source", "prompt"], ["source", "prompt"], "voice conversion: the source's words in the prompt's voice"),
    "tse": (["mixture", "prompt", "text"], ["mixture", "prompt"], "target speaker extraction (text-guided with the omni model)"),
    "se": (["input"], ["input"], "speech enhancement: clean speech from a noisy or reverberant recording"),
    "l2s": (["video", "prompt", "crop_box"], ["video", "prompt"], "lip-to-speech: speech for a silent video of a speaking face"),
}

_HELP = {
    "text": "text to speak (tts) or the target speaker's transcript (tse, omni model only)",
    "prompt": "audio file of the target voice (1-30 s)",
    "prompt_text": "transcript of the prompt audio",
    "duration": "length of the generated speech in seconds (default: the prompt's speaking rate applied to "
                "the text, its pauses capped, kept within %g-%g phones/s)" % SPEAKING_RATE,
    "language": "language of the text: en, zh, ja, ko, fr, de or auto",
    "source": "speech whose words are kept",
    "mixture": "recording with the target speaker and others",
    "input": "noisy or reverberant speech",
    "video": "silent video of a speaking face (mp4, avi, ...)",
    "crop_box": "mouth crop box X,Y,W,H in pixels (default: find the face)",
}


def _add_common(p: argparse.ArgumentParser, task: str) -> None:
    g = p.add_argument_group("model and decoding")
    g.add_argument("--model", default="auto",
                   help="weights: 'auto' (default: the official weights when they are all in the Hugging Face cache, "
                        "else the small model shipped with the package where it does the task; never downloads), "
                        "'small' (the shipped model), 'hub' (official, downloaded and cached), a directory "
                        "with the official files (metis download TASK --to DIR), or a metis-speech bundle directory")
    if task == "tse":
        g.add_argument("--omni", action="store_true", help="use the omni model (needed for --text)")
    g.add_argument("--device", default=None, help="cuda, mps or cpu (default: the first available)")
    g.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="compute precision")
    g.add_argument("--preset", default="default", choices=["default", "fast"],
                   help="decoding defaults: the reference's, or 'fast' (fewer stage-1/S2A steps; README has its cost)")
    g.add_argument("--int8", action="store_true", help="CPU: int8 dynamic quantisation of stage 1 and S2A (opt-in; "
                   "faster, slightly different output)")
    g.add_argument("--low-memory", action="store_true", help="load each stage's networks when it starts and drop "
                   "them after (peak memory: the largest stage; same output)")
    g.add_argument("--steps", type=int, default=None, help="stage-1 decoding steps (default: the task's)")
    g.add_argument("--guidance", type=float, default=None, help="stage-1 guidance scale (default: the task's)")
    g.add_argument("--temperature", type=float, default=None, help="stage-1 sampling temperature")
    if task == "tts":
        g.add_argument("--phone-guidance", type=float, default=None,
                       help="steer the S2A towards the text's phones (models whose S2A reads them; default: the model's)")
        g.add_argument("--max-prompt-s", type=float, default=None,
                       help="use only the prompt's last words that fit in this many seconds (models whose stage 1 "
                       "aligns phones; 0: the whole prompt; default: the model's)")
    if task == "se":
        g.add_argument("--refine", default=None, choices=list(REFINE_MODES),
                       help="'none': the generated speech; 'wiener': the input filtered with the generated speech as "
                       "its speech spectrum; 'lsa': the input enhanced by an MMSE log-spectral amplitude gain "
                       "guided by the generated speech (both keep the recording's own words; default: the model's)")
    g.add_argument("--s2a-steps", default=None, help="S2A steps per RVQ layer, comma separated (default 40,16,1,...)")
    g.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    g.add_argument("--ssl-model", default=None, help="local w2v-BERT 2.0 directory (official weights only)")
    g.add_argument("--ssl-stats", default=None, help="w2v-BERT normalisation statistics file (official weights only)")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="output audio file (.wav or .flac, 24 kHz)")
    o.add_argument("--batch", help="JSONL file, one item per line (batch mode)")
    o.add_argument("--out-dir", help="folder for batch outputs (named by each item's id or line number)")
    o.add_argument("--batch-size", type=int, default=8, help="items generated together in batch mode")


def _validate_common(args) -> None:
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise MetisError(f"--steps must be between 1 and 1000, got {args.steps}")
    if args.guidance is not None and args.guidance < 0:
        raise MetisError(f"--guidance must be >= 0, got {args.guidance}")
    pg = getattr(args, "phone_guidance", None)
    if pg is not None and not (math.isfinite(pg) and 0 <= pg <= 20):
        raise MetisError(f"--phone-guidance must be between 0 and 20, got {pg}")
    mp = getattr(args, "max_prompt_s", None)
    if mp is not None and not (math.isfinite(mp) and 0 <= mp <= MAX_PROMPT_S):
        raise MetisError(f"--max-prompt-s must be between 0 and {MAX_PROMPT_S:.0f} seconds, got {mp}")
    if args.batch and args.out:
        raise MetisError("use --out for one item or --batch with --out-dir, not both")
    if args.batch and not args.out_dir:
        raise MetisError("--batch needs --out-dir")
    if not args.batch and not args.out:
        raise MetisError("--out is required (the output audio file)")
    if args.out and Path(args.out).suffix.lower() not in (".wav", ".flac"):
        raise MetisError(f"--out must end in .wav or .flac, got {args.out}")


def _s2a_steps(text):
    if text is None:
        return None
    try:
        steps = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise MetisError(f"--s2a-steps must be comma-separated integers, got {text!r}") from None
    if not steps or min(steps) < 1:
        raise MetisError("--s2a-steps needs at least one positive integer")
    return steps


def _crop_box(text):
    if text is None or isinstance(text, (list, tuple)):
        return text
    try:
        box = [int(x) for x in str(text).split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise MetisError(f"crop box must be X,Y,W,H with positive width and height, got {text!r}")
    return tuple(box)


def _items(args, task: str) -> List[Dict]:
    fields, required, _ = TASK_FIELDS[task]
    if not args.batch:
        item = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
        item["out"] = args.out
        items = [item]
        base = Path(".")
    else:
        path = Path(args.batch)
        if not path.is_file():
            raise MetisError(f"{path}: no such batch file")
        base = path.parent
        items = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise MetisError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(item, dict):
                raise MetisError(f"{path}:{n}: expected a JSON object")
            unknown = sorted(set(item) - set(fields) - {"id", "out"})
            if unknown:
                raise MetisError(f"{path}:{n}: unknown field(s) {unknown} for {task}; accepted: {fields + ['id', 'out']}")
            name = str(item.get("id", n))
            item["out"] = str(Path(args.out_dir) / item.get("out", f"{name}.wav"))
            for f in ("prompt", "source", "mixture", "input", "video"):
                if f in item and not Path(item[f]).is_absolute():
                    item[f] = str(base / item[f])
            items.append(item)
        if not items:
            raise MetisError(f"{path}: no items")
    for i, item in enumerate(items):
        missing = [f for f in required if item.get(f) in (None, "")]
        if missing:
            where = f"item {i + 1}: " if args.batch else ""
            raise MetisError(f"{where}missing {', '.join('--' + m.replace('_', '-') for m in missing)}")
    return items


def check_items(task: str, items: List[Dict], batch: bool) -> None:
    """Every item's inputs (files, audio, video, text, duration), before any model is chosen."""
    from .inputs import check_inputs

    fields = TASK_FIELDS[task][0]
    for i, item in enumerate(items):
        where = f"item {item.get('id', i + 1)} " if batch else ""
        names = {f: where + "--" + f.replace("_", "-") for f in fields}
        language = item.get("language") or "auto"
        check_inputs(task, item, names, language=language, prompt_language="auto")


def _run(args) -> int:
    from .shipped import choose_source

    task = args.task
    _validate_common(args)
    items = _items(args, task)
    s2a_steps = _s2a_steps(args.s2a_steps)
    for item in items:
        if item.get("crop_box") is not None:
            _crop_box(item["crop_box"])
    load_task = "omni" if (task == "tse" and getattr(args, "omni", False)) else task
    if task == "tse" and any(i.get("text") for i in items) and load_task != "omni":
        raise MetisError("tse --text needs the omni model: add --omni")
    check_items(task, items, bool(args.batch))  # bad input is refused before any model is chosen
    choice = choose_source(load_task, args.model)
    print(choice.line, file=sys.stderr)

    from tqdm import tqdm

    from .pipeline import Metis

    model = Metis.from_pretrained(load_task, choice, device=args.device, dtype=args.dtype,
                                  ssl_model=args.ssl_model, ssl_stats=args.ssl_stats, preset=args.preset,
                                  quantize="int8" if args.int8 else None, low_memory=args.low_memory)
    common = dict(steps=args.steps, guidance=args.guidance, temperature=args.temperature, s2a_steps=s2a_steps)
    bs = max(1, int(args.batch_size))
    bar = tqdm(total=len(items), desc=task, unit="item", disable=len(items) < 2)
    written = []
    for start in range(0, len(items), bs):
        chunk = items[start : start + bs]
        seed = args.seed + start
        if task == "tts":
            outs = model.tts([i["text"] for i in chunk], [i["prompt"] for i in chunk], [i["prompt_text"] for i in chunk],
                             duration=[i.get("duration") for i in chunk] if any(i.get("duration") for i in chunk) else None,
                             language=chunk[0].get("language", "auto"), seed=seed,
                             phone_guidance=args.phone_guidance, max_prompt_s=args.max_prompt_s, **common)
        elif task == "vc":
            outs = model.vc([i["source"] for i in chunk], [i["prompt"] for i in chunk], seed=seed, **common)
        elif task == "tse":
            texts = [i.get("text") for i in chunk]
            outs = model.tse([i["mixture"] for i in chunk], [i["prompt"] for i in chunk],
                             text=texts if any(texts) else None, seed=seed, **common)
        elif task == "se":
            outs = model.se([i["input"] for i in chunk], seed=seed, refine=args.refine, **common)
        else:
            outs = [model.l2s(i["video"], i["prompt"], crop_box=_crop_box(i.get("crop_box")), seed=seed + k, **common)
                    for k, i in enumerate(chunk)]
        for item, out in zip(chunk, outs):
            written.append(out.save(item["out"]))
        bar.update(len(chunk))
    bar.close()
    for p in written:
        print(p)
    return 0


def add_parser(sub) -> None:
    for task, (fields, required, help_text) in TASK_FIELDS.items():
        p = sub.add_parser(task, help=help_text, description=f"{help_text}. " + (
            "Output: 24 kHz audio of the generated speech only." if task != "se" else "Output: 24 kHz audio."))
        g = p.add_argument_group("inputs")
        for f in fields:
            kwargs = {"help": _HELP[f] + (" (required)" if f in required else "")}
            if f == "duration":
                kwargs["type"] = float
            if f == "language":
                kwargs["default"] = "auto"
            g.add_argument("--" + f.replace("_", "-"), dest=f, **kwargs)
        _add_common(p, task)
        p.set_defaults(func=_run, task=task)
