"""``metis join-utterances``: longer training utterances from short ones of the same speaker.

A model trained on short utterances (a prompt being a part of one) meets, at inference, a
prompt that is a whole utterance followed by a whole target sentence: a sequence longer than
any it trained on. A small model trained on 2-6 s utterances loses the words of the sentence
then (README: a 6-7 s prompt raised corpus TTS WER from 0.61 to 0.78). Joining utterances of
one speaker, ``per`` at a time with a short pause between them, gives ``metis prepare`` and
the trainers sequences of that shape: a prompt drawn from the start of a joined utterance is
(most of) one utterance and the target the next one, as TTS, VC and TSE use them.

    metis join-utterances CORPUS/train.jsonl --out CORPUS/joined --per 2
    metis prepare CORPUS/joined/train.jsonl --task tts --out SHARDS ...

The input is anything ``metis prepare`` reads (a folder, a JSONL manifest, tar shards).
Utterances need a speaker; those with a transcript are joined only with others that have one
(the joined transcript is theirs in order), those without only with others without (untranscribed
speech, for the S2A and codec, which need no text). Utterances without a speaker, and a
speaker's last one when it has no partner left, are written unchanged (so nothing is lost). The order within a
speaker is a seeded shuffle, the pause lengths are drawn from ``gap_s``, and a group that
would pass ``max_duration`` seconds is written as single utterances instead. Audio is
written at the first member's sample rate (the others are resampled to it) as 16-bit WAV.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MetisError

__all__ = ["join_utterances", "add_parser", "run", "main"]


def _joined_text(texts: Sequence[str]) -> str:
    """Transcripts joined into one, each ending as a sentence (a full stop added where it has
    no closing punctuation), so that the phones keep a pause between them."""
    out = []
    for t in texts:
        t = t.strip()
        out.append(t if t and t[-1] in ".!?;:,。！？" else t + ".")
    return " ".join(out)


def join_utterances(source: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], per: int = 2,
                    gap_s: Tuple[float, float] = (0.1, 0.3), seed: int = 0, max_duration: float = 30.0,
                    progress: bool = True) -> dict:
    """Write ``out_dir/train.jsonl`` and ``out_dir/wavs/`` (see the module docstring); returns
    a summary: utterances read, written, joined groups, singles, seconds written."""
    from tqdm import tqdm

    from ..audio import resample, save_audio
    from .prepare_io import AudioReader, list_items

    if not isinstance(per, int) or per < 2:
        raise MetisError(f"--per must be an integer of at least 2, got {per!r}")
    lo, hi = (float(gap_s[0]), float(gap_s[1]))
    if not (0 <= lo <= hi <= 5):
        raise MetisError(f"--gap must be two seconds values 0 <= LO <= HI <= 5, got {lo:g} {hi:g}")
    if not max_duration > 0:
        raise MetisError(f"--max-duration must be positive, got {max_duration:g}")
    out = Path(out_dir)
    manifest = out / "train.jsonl"
    if manifest.exists():
        raise MetisError(f"{manifest} exists already; choose another --out")
    items, skips = list_items(source)
    if not items:
        raise MetisError(f"{source}: no utterances found")
    rng = np.random.default_rng(seed)
    # transcribed and untranscribed utterances of a speaker are joined apart: a joined
    # utterance's transcript must cover all of its speech
    by_speaker: Dict[Tuple[str, bool], list] = collections.defaultdict(list)
    singles = []
    for it in items:
        if it.speaker:
            by_speaker[(it.speaker, bool(it.text and it.text.strip()))].append(it)
        else:
            singles.append(it)
    groups: List[list] = [[it] for it in singles]
    for key in sorted(by_speaker):
        members = by_speaker[key]
        order = rng.permutation(len(members))
        chunk = [members[i] for i in order]
        for k in range(0, len(chunk), per):
            g = chunk[k:k + per]
            groups.extend([g] if len(g) > 1 else [[x] for x in g])
    reader = AudioReader()
    rows, stats = [], collections.Counter()
    try:
        for g in tqdm(groups, desc="join-utterances", unit="group", disable=not progress):
            try:
                parts = [reader.read(it.audio) for it in g]
            except Exception as e:  # noqa: BLE001 - one unreadable file is skipped, not fatal
                stats["unreadable"] += 1
                skips.append((g[0].uid, g[0].audio, f"unreadable ({type(e).__name__})"))
                continue
            sr = parts[0][1]
            wavs = [w if s == sr else resample(w, s, sr) for w, s in parts]
            gaps = rng.uniform(lo, hi, size=len(g) - 1)
            total = sum(len(w) for w in wavs) / sr + float(gaps.sum())
            if len(g) > 1 and total > max_duration:  # too long together: each alone
                stats["too_long"] += 1
                sub = [([it], [w]) for it, w in zip(g, wavs)]
            else:
                sub = [(g, wavs)]
            for members, ws in sub:
                pieces = [ws[0]]
                for w, gap in zip(ws[1:], gaps):
                    pieces += [np.zeros(int(round(gap * sr)), np.float32), w]
                wav = np.concatenate(pieces).astype(np.float32)
                uid = "+".join(it.uid for it in members) if len(members) > 1 else members[0].uid
                spk = members[0].speaker
                rel = Path("wavs") / (spk or "_") / f"{uid[:150]}.wav"
                save_audio(out / rel, wav, sr)
                texts = [it.text for it in members if it.text]
                langs = {it.language for it in members}
                row = {"id": uid, "audio": str(rel), "speaker": spk, "duration": round(len(wav) / sr, 4),
                       "joined": len(members)}
                if texts:
                    row["text"] = _joined_text(texts) if len(members) > 1 else members[0].text
                if len(langs) == 1 and None not in langs:
                    row["language"] = langs.pop()
                rows.append(row)
                stats["joined" if len(members) > 1 else "single"] += 1
                stats["seconds"] += len(wav) / sr
    finally:
        reader.close()
    tmp = manifest.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    os.replace(tmp, manifest)
    return {"read": len(items), "written": len(rows), "joined": stats["joined"], "single": stats["single"],
            "too_long": stats["too_long"], "unreadable": stats["unreadable"], "listing_skips": len(skips),
            "seconds": round(float(stats["seconds"]), 2), "manifest": str(manifest)}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "join-utterances",
        help="longer training utterances: a speaker's short utterances joined with short pauses",
        description=__doc__.split("\n\n")[0] + " Writes OUT/train.jsonl and OUT/wavs/.",
    )
    p.add_argument("input", metavar="INPUT", help="audio folder, JSONL manifest or tar shard(s), as metis prepare reads")
    p.add_argument("--out", required=True, help="output folder (its train.jsonl must not exist yet)")
    p.add_argument("--per", type=int, default=2, help="utterances per joined one (default 2)")
    p.add_argument("--gap", type=float, nargs=2, default=(0.1, 0.3), metavar=("LO", "HI"),
                   help="pause between them, seconds, drawn uniformly (default 0.1 0.3)")
    p.add_argument("--max-duration", type=float, default=30.0, help="longest joined utterance, seconds (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the order and the pauses (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    s = join_utterances(args.input, args.out, per=args.per, gap_s=tuple(args.gap), seed=args.seed,
                        max_duration=args.max_duration, progress=not args.quiet)
    print(f"{s['manifest']}: {s['written']} utterances ({s['joined']} joined, {s['single']} single) from {s['read']}, "
          f"{s['seconds'] / 3600:.2f} h" + (f"; {s['unreadable']} unreadable" if s["unreadable"] else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..cli import main as cli_main

    return cli_main(["join-utterances", *(argv or [])])
