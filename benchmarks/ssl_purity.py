"""How phonetic are the ids of an SSL front end? Phone purity and PNMI of k-means ids.

    python benchmarks/ssl_purity.py --corpus CORPUS --ssl random=random:small \
        --ssl phones=runs/ssl/final --ssl hubert=runs_hubert/final [--codec BUNDLE] [--k 256]

For each SSL (an ``ssl/`` directory, a bundle, or ``random:PRESET``) the features of the
corpus's dev utterances (``dev.jsonl`` + ``alignments/dev.jsonl``) are clustered with k-means
(``--k`` centres fitted on the first half of the utterances, ids of the second half
scored) and scored against the frame phone labels with
:func:`metis_speech.eval.purity.phone_purity` (silence frames left out). ``--codec BUNDLE``
adds a row for that bundle's own semantic codec ids (its SSL + VQ), the ids stage 1 models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def _ssl(spec: str):
    from metis_speech.config import load_preset
    from metis_speech.models.ssl import SSLFeatureExtractor

    if spec.startswith("random:"):
        torch.manual_seed(0)
        ext = SSLFeatureExtractor.from_config(load_preset(spec.split(":", 1)[1], "ssl"), stats=None)
        return ext.eval()
    from metis_speech.bundle import is_bundle, load_ssl

    p = Path(spec)
    return load_ssl(p / "ssl" if is_bundle(p) else p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--ssl", action="append", default=[], metavar="NAME=SOURCE")
    ap.add_argument("--codec", default=None, help="a bundle: also score its semantic codec ids")
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--utts", type=int, default=120)
    args = ap.parse_args(argv)
    from metis_speech.audio import load_audio
    from metis_speech.eval.purity import phone_purity
    from metis_speech.training.codec_train import kmeans
    from metis_speech.training.ssl_train import SILENCE, _label, frame_labels

    corpus = Path(args.corpus)
    rows = [json.loads(x) for x in (corpus / "dev.jsonl").read_text().splitlines() if x.strip()][: args.utts]
    align = {}
    for line in (corpus / "alignments" / "dev.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            align[r["id"]] = r["phones"]
    rows = [r for r in rows if r["id"] in align]
    names = sorted({_label(p[0]) for r in rows for p in align[r["id"]]} - {SILENCE})
    index = {n: i for i, n in enumerate([SILENCE] + names)}
    wavs = [load_audio(corpus / r["audio"], 16000)[0] for r in rows]
    half = len(rows) // 2
    table = []
    sources = [tuple(s.split("=", 1)) for s in args.ssl]
    if args.codec:
        sources.append(("codec ids", args.codec))
    for name, spec in sources:
        codec = None
        if name == "codec ids":
            from metis_speech.loading import load_checkpoint

            ext, codec = _ssl(spec), load_checkpoint(Path(spec) / "semantic_codec")
        else:
            ext = _ssl(spec)
        feats, labels = [], []
        with torch.no_grad():
            for r, w in zip(rows, wavs):
                f = ext([w], 16000)
                x = f.features[0][f.mask[0]]
                if codec is not None:
                    x = codec.quantize(x[None])[0][0]
                feats.append(x.float() if codec is None else x.long().reshape(-1))
                labels.append(frame_labels(align[r["id"]], len(feats[-1]), index))
        if codec is None:
            g = torch.Generator().manual_seed(0)
            fit = torch.cat(feats[:half])
            centres = kmeans(fit, args.k, 20, g)
            ids = [torch.cdist(x, centres).argmin(1) for x in feats[half:]]
        else:
            ids = feats[half:]
        res = phone_purity(torch.cat(ids).numpy(), torch.cat(labels[half:]).numpy(), ignore=[index[SILENCE]])
        table.append((name, res))
    print(f"{'SSL':<14} {'phone pur.':>10} {'cluster pur.':>12} {'PNMI':>6} {'frames':>7} {'ids':>5}")
    for name, r in table:
        print(f"{name:<14} {r['phone_purity']:>10.3f} {r['cluster_purity']:>12.3f} {r['pnmi']:>6.3f} {r['frames']:>7} {r['ids_used']:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
