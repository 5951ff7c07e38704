"""How much an acoustic codec loses: encode -> decode test speech and score the resynthesis
beside the original (pocketsphinx WER against the text for both, PESQ-wb and STOI of the
resynthesis against the original).

    python benchmarks/codec_resynth.py --model small --manifest CORPUS/test.jsonl --limit 20
    python benchmarks/codec_resynth.py --model runs/acoustic_codec/final --real
    python benchmarks/codec_resynth.py --model small --real --quantizers 1 2 4 8 --out /tmp/resynth

``--model``: a bundle directory (``acoustic_encoder/``, ``acoustic_decoder/``), an acoustic
codec run's ``final/`` (``encoder/``, ``decoder/``), or ``small`` (the shipped model).
``--manifest``: a JSONL of ``audio`` + ``text`` rows (paths relative to the file), e.g. a
``metis make-corpus`` folder's ``test.jsonl``; ``--real``: the real human recordings of
``benchmarks/real_testset.py`` (alsa-utils, ktuberling English), never seen by any corpus.
Issue 10's target: WER within 0.05 of the originals' and PESQ-wb >= 2.5.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load_codec(model: str):
    """(encoder, decoder) in eval mode from a bundle, a codec run's final/, or 'small'."""
    from metis_speech.shipped import acoustic_codec_dirs
    from metis_speech.errors import MetisError
    from metis_speech.loading import load_checkpoint

    try:
        enc, dec = acoustic_codec_dirs(model)
    except MetisError as e:
        sys.exit(str(e))
    return load_checkpoint(enc).float().eval(), load_checkpoint(dec).float().eval()


def items(args, sr: int):
    """[(id, text, wav at sr)]"""
    from metis_speech.audio import load_audio

    out = []
    if args.manifest:
        base = Path(args.manifest).parent
        for line in Path(args.manifest).read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if not row.get("text") or not row.get("audio"):
                continue
            wav, _ = load_audio(base / row["audio"], sr)
            out.append((row.get("id", Path(row["audio"]).stem), row["text"], wav))
    if args.real:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from real_testset import real_utterances

        out += [(f"{spk}-{i:02d}", text, wav) for i, (spk, text, wav) in enumerate(real_utterances(sr))]
    if not out:
        sys.exit("nothing to score: give --manifest and/or --real")
    return out[: args.limit] if args.limit else out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small", help="bundle dir, codec run final/, or 'small'")
    ap.add_argument("--manifest", help="JSONL with audio and text (e.g. a corpus test.jsonl)")
    ap.add_argument("--real", action="store_true", help="also the real recordings of benchmarks/real_testset.py")
    ap.add_argument("--limit", type=int, default=0, help="first N items only")
    ap.add_argument("--quantizers", type=int, nargs="+", default=[0], help="RVQ layers to decode with (0 = all)")
    ap.add_argument("--out", help="folder for the resynthesised audio and results.json")
    args = ap.parse_args(argv)

    import torch

    from metis_speech.audio import resample, save_audio
    from metis_speech.eval.asr import transcribe
    from metis_speech.eval.quality import pesq_wb, stoi
    from metis_speech.eval.text import wer

    enc, dec = load_codec(args.model)
    sr, hop = enc.cfg.sample_rate, enc.cfg.hop_length
    data = items(args, sr)
    out = Path(args.out) if args.out else None
    rows = []
    for uid, text, wav in data:
        wav = wav[: len(wav) // hop * hop]
        if len(wav) == 0:
            continue
        ref16 = resample(wav, sr, 16000)
        row = {"id": uid, "wer_original": wer(text, transcribe(ref16, 16000))}
        with torch.no_grad():
            codes = dec.quantize(enc(torch.from_numpy(wav)[None, None]))
            for q in args.quantizers:
                y = dec.decode(codes[..., :q] if q else codes)[0, 0].numpy()[: len(wav)]
                y16 = resample(y, sr, 16000)
                tag = f"q{q}" if q else "all"
                row[f"wer_{tag}"] = wer(text, transcribe(y16, 16000))
                row[f"pesq_{tag}"] = pesq_wb(ref16, y16)
                row[f"stoi_{tag}"] = stoi(ref16, y16)
                if out:
                    save_audio(out / tag / f"{uid}.wav", y, sr)
        rows.append(row)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    keys = [k for k in rows[0] if k != "id"]
    means = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print(f"{len(rows)} items, model {args.model}: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"model": args.model, "items": rows, "means": means}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
