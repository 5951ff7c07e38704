"""How much the S2A loses: speech rebuilt from a reference's own semantic ids (stage 1 made
perfect), beside the codec's resynthesis of the same reference.

Per item of a test set with a clean ``reference`` and its ``text`` (a ``metis make-corpus``
folder's ``tests/tts.jsonl`` or ``tests/se.jsonl``, or ``benchmarks/real_testset.py``'s
``se.jsonl``), three renderings are scored against the reference:

* ``codec``: acoustic encoder -> decoder (the codec's own ceiling);
* ``s2a_prompt``: ``Metis.semantic_to_speech(ids, prompt)`` with the item's ``prompt`` (another
  utterance of the same voice, as TTS and VC have it; items without one are skipped here);
* ``s2a_none``: ``Metis.semantic_to_speech(ids)`` with no prompt (as SE and TSE run);
* ``s2a_text`` / ``s2a_prompt_text`` (an S2A trained with ``frame_phones``): as ``s2a_none`` /
  ``s2a_prompt``, with the item's transcript placed on the frames (``semantic_to_speech(text=)``),
  as TTS gives the S2A its text;
* ``known<k>`` (``--known-layers``): as ``s2a_none``, but with the reference's own acoustic ids
  for the first k RVQ layers (``known_codes``); the S2A generates only the layers above.

Scores: pocketsphinx WER against the text, resemblyzer similarity to the reference, and
PESQ-wb / STOI against the reference (the renderings keep its length, frame for frame).
The gap between ``codec`` and ``s2a_*`` is what the S2A costs (and ``known<k>`` says which of its
layers cost it); the gap between ``s2a_*`` and a task's output is what its stage 1 costs.

    python benchmarks/s2a_ceiling.py --testset CORPUS/tests/tts.jsonl --limit 20
    python benchmarks/s2a_ceiling.py --testset REAL/se.jsonl --model DIR --out /tmp/ceiling
    python benchmarks/s2a_ceiling.py --testset CORPUS/tests/tts.jsonl --limit 20 --known-layers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def read_items(path: Path, limit: int):
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("reference") and row.get("text"):
            rows.append(row)
    if not rows:
        sys.exit(f"{path}: no item has both a reference and a text")
    return rows[:limit] if limit else rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--testset", required=True, help="test-set JSONL whose items have reference + text")
    ap.add_argument("--model", default="small", help="'small' or a bundle directory")
    ap.add_argument("--limit", type=int, default=0, help="first N items only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--s2a-steps", default=None, help="S2A steps per layer, comma separated (default: the model's)")
    ap.add_argument("--known-layers", default="",
                    help="comma list of k: also render with the reference's acoustic ids for the first k RVQ layers")
    ap.add_argument("--phone-guidance", type=float, default=None,
                    help="S2A phone guidance of the *_text rows (default: the model's TTS default)")
    ap.add_argument("--out", help="folder for the renderings (<kind>/<id>.wav) and results.json")
    args = ap.parse_args(argv)
    path = Path(args.testset)
    if not path.is_file():
        sys.exit(f"{path}: no such test set")
    from metis_speech.errors import MetisError
    from metis_speech.tasks_cli import _s2a_steps

    try:
        s2a_steps = _s2a_steps(args.s2a_steps)
    except MetisError as e:
        sys.exit(str(e))
    try:
        known_layers = [int(k) for k in args.known_layers.split(",") if k.strip()]
    except ValueError:
        known_layers = [0]
    if any(k < 1 for k in known_layers):
        sys.exit(f"--known-layers: expected positive integers separated by commas, got {args.known_layers!r}")

    import torch

    from metis_speech import Metis
    from metis_speech.audio import load_audio, resample, save_audio
    from metis_speech.eval.asr import transcribe
    from metis_speech.eval.quality import pesq_wb, stoi
    from metis_speech.eval.speaker import speaker_similarity
    from metis_speech.eval.text import wer

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from codec_resynth import load_codec

    items = read_items(path, args.limit)
    _, dec = load_codec(args.model)
    try:
        m = Metis.from_pretrained("se", args.model)
        sr, ssl_sr = m.sample_rate, m.ssl_sample_rate
    except MetisError as e:
        sys.exit(f"--model {args.model}: {e}")
    s2a_cfg = m._src.config("s2a_full")
    reads_text = bool(getattr(s2a_cfg, "frame_phones", False))
    out = Path(args.out) if args.out else None
    rows = []
    for it in items:
        ref, _ = load_audio(path.parent / it["reference"], sr)
        r16 = resample(ref, sr, 16000)  # the metrics' rate
        ids = m.semantic_ids([r16 if ssl_sr == 16000 else resample(ref, sr, ssl_sr)])[0]
        with torch.no_grad():
            codes = m.acoustic_ids(ref, int(ids.shape[0]))
            renders = {"codec": dec.decode(codes[None].cpu())[0, 0].numpy()}
        if it.get("prompt"):
            renders["s2a_prompt"] = m.semantic_to_speech(ids, path.parent / it["prompt"], seed=args.seed, s2a_steps=s2a_steps).wav
        renders["s2a_none"] = m.semantic_to_speech(ids, seed=args.seed, s2a_steps=s2a_steps).wav
        if reads_text:
            try:
                if it.get("prompt"):
                    renders["s2a_prompt_text"] = m.semantic_to_speech(ids, path.parent / it["prompt"], seed=args.seed,
                                                                      s2a_steps=s2a_steps, text=it["text"],
                                                                      phone_guidance=args.phone_guidance).wav
                renders["s2a_text"] = m.semantic_to_speech(ids, seed=args.seed, s2a_steps=s2a_steps, text=it["text"],
                                                           phone_guidance=args.phone_guidance).wav
            except MetisError as e:  # a transcript too long for its frames: that item goes without
                print(f"{it.get('id', it['reference'])}: {e}", file=sys.stderr)
        for k in known_layers:
            try:
                renders[f"known{k}"] = m.semantic_to_speech(ids, seed=args.seed, s2a_steps=s2a_steps,
                                                            known_codes=codes[:, :k]).wav
            except MetisError as e:
                sys.exit(f"--known-layers {k}: {e}")
        row = {"id": it.get("id", Path(it["reference"]).stem), "wer_reference": wer(it["text"], transcribe(r16, 16000))}
        for kind, y in renders.items():
            y16 = resample(np.clip(y, -1, 1).astype(np.float32), sr, 16000)
            n = min(len(y16), len(r16))
            row[f"wer_{kind}"] = wer(it["text"], transcribe(y16, 16000))
            row[f"sim_{kind}"] = speaker_similarity(y16, r16, 16000)
            row[f"pesq_{kind}"] = pesq_wb(r16[:n], y16[:n])
            row[f"stoi_{kind}"] = stoi(r16[:n], y16[:n])
            if out:
                save_audio(out / kind / f"{row['id']}.wav", y, sr)
        rows.append(row)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    keys = sorted({k for r in rows for k in r if k != "id"})
    means = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    counts = {k: sum(k in r for r in rows) for k in keys}
    print(f"{len(rows)} items, model {args.model}:")
    for kind in ("reference", "codec", "s2a_prompt", "s2a_none", "s2a_prompt_text", "s2a_text",
                 *(f"known{k}" for k in known_layers)):
        got = [k for k in keys if k.endswith("_" + kind)]
        if got:
            print(f"  {kind:<11} n={counts[got[0]]:<3} " + "  ".join(f"{k.split('_')[0]} {means[k]:.3f}" for k in got))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"model": args.model, "testset": str(path), "items": rows, "means": means}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
