"""``metis bundle``: assemble a model bundle from trained runs (a thin layer over
:func:`metis_speech.bundle.assemble_bundle`)."""

from __future__ import annotations

import argparse
import json
from typing import Dict

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  metis bundle --out models/v1 --base random:tiny --semantic-codec runs/sem/final --acoustic-codec runs/ac/final \\
      --phone-vocab vocab.json
  metis bundle --out models/v2 --base models/v1 --s2a runs/s2a/final --s2a-1layer runs/s2a1/final \\
      --stage1 tts=runs/tts/final --stage1 se=runs/se/final --drop-untrained

Networks not given, and the decoding defaults of metis.json, come from --base. The bundle is checked before anything is written: the
semantic codec's vocabulary must be stage 1's and S2A's, the acoustic codec's codebook size
and RVQ depth S2A's, the SSL feature size the semantic codec's input and the adapters'
cond_dim; and (unless --no-lineage-check) the semantic codec must have been trained on this
SSL's features and stage-1/S2A runs on shards tokenized with these codecs.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bundle",
        help="assemble a model bundle from trained runs (codecs, S2A, stage 1 per task) and a base bundle",
        description="Assemble a metis-speech bundle from trained runs; networks not given come from the base.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="bundle directory to write (must not exist, or be empty, unless --overwrite)")
    p.add_argument("--base", required=True, help="base bundle directory, or random:PRESET (e.g. random:tiny)")
    p.add_argument("--ssl", default=None, metavar="BUNDLE|SSL_DIR", help="take the SSL front end from this bundle (or its ssl/)")
    p.add_argument("--semantic-codec", default=None, metavar="RUN/final", help="semantic codec run")
    p.add_argument("--acoustic-codec", default=None, metavar="RUN/final", help="acoustic codec run (holds encoder/ and decoder/)")
    p.add_argument("--s2a", default=None, metavar="RUN/final", help="S2A (full) run")
    p.add_argument("--s2a-1layer", default=None, metavar="RUN/final", help="S2A 1-layer run")
    p.add_argument("--stage1", action="append", default=[], metavar="TASK=RUN/final",
                   help="stage-1 run of a task (tts, vc, tse, se, omni, l2s, base); repeat for several tasks")
    p.add_argument("--visual", default=None, metavar="RUN/final", help="L2S visual encoder run")
    p.add_argument("--phone-vocab", default=None, metavar="FILE", help="phone vocabulary JSON (default: the base's)")
    p.add_argument("--drop-untrained", action="store_true",
                   help="leave out stage-1 tasks and optional networks that would come randomly initialised from the base")
    p.add_argument("--no-lineage-check", dest="check_lineage", action="store_false",
                   help="do not check that runs were trained on data tokenized with this bundle's SSL and codecs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(func=run)
    return p


def _stage1(specs) -> Dict[str, str]:
    from .errors import MetisError

    out: Dict[str, str] = {}
    for s in specs:
        task, sep, path = s.partition("=")
        if not sep or not task or not path:
            raise MetisError(f"--stage1 {s!r}: expected TASK=RUN/final, e.g. tts=runs/tts/final")
        if task in out:
            raise MetisError(f"--stage1: task {task!r} given twice")
        out[task] = path
    return out


def run(args: argparse.Namespace) -> int:
    from .bundle import assemble_bundle, read_manifest

    comps = {k: v for k, v in (("ssl", args.ssl), ("semantic_codec", args.semantic_codec), ("acoustic_codec", args.acoustic_codec),
                               ("s2a_full", args.s2a), ("s2a_1layer", args.s2a_1layer), ("visual", args.visual)) if v}
    out = assemble_bundle(args.out, args.base, comps, _stage1(args.stage1), phone_vocab=args.phone_vocab,
                          drop_untrained=args.drop_untrained, check_lineage=args.check_lineage, overwrite=args.overwrite)
    m = read_manifest(out)
    prov = m["provenance"]
    print(f"bundle written to {out}")
    for key in sorted(prov):
        r = prov[key]
        where = r.get("run") or r.get("path") or r.get("from")
        step = f" (step {r['step']})" if r.get("step") is not None else ""
        tag = "random init" if r.get("random") else r.get("from", "")
        print(f"  {key:<18} {tag:<12} {where}{step}")
    if m.get("untrained"):
        print("untrained (random) networks: " + ", ".join(m["untrained"]))
    print(json.dumps({"out": str(out), "stage1": sorted(m["stage1"]), "components": sorted(m["components"]),
                      "untrained": m.get("untrained", [])}))
    return 0
