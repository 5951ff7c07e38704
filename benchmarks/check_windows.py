"""Loudness and voice steadiness of long SE / TSE / VC outputs across generation windows.

    python benchmarks/check_windows.py --model runs/small/bundle --corpus corpus/dev.jsonl --task se
    python benchmarks/check_windows.py --model random:tiny --corpus corpus/dev.jsonl --task vc --seconds 40 --window-s 10

Builds a long input from one speaker's utterances of a corpus manifest (``audio`` +
``speaker``; concatenated to ``--seconds``): for SE with noise at ``--snr`` dB, for TSE mixed
with another speaker, for VC converted to another speaker's voice (the prompt). Runs the task
with the pipeline's windows carrying context (``--context-s``, the default behaviour) and,
as the control the reference behaves like, with independent windows (context 0). Prints the
steadiness numbers of :mod:`metis_speech.eval.steadiness` for both and for the clean input
(what a perfect SE/TSE output would show): loudness step at boundaries minus inside windows
(dB), speaker-similarity drop at boundaries, window level spread, lowest similarity of a
window to the first. Numbers are printed, never asserted (with random weights they describe
noise, not a model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _rows(manifest: Path):
    for line in manifest.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            a = Path(r["audio"])
            r["audio"] = str(a if a.is_absolute() else manifest.parent / a)
            yield r


def build_inputs(manifest: Path, seconds: float, sr: int, snr_db: float, seed: int = 0):
    """(long clean speech of one speaker, an utterance of another speaker, a long interferer)."""
    from metis_speech.audio import load_audio

    by_spk: dict = {}
    for r in _rows(manifest):
        by_spk.setdefault(r.get("speaker", "?"), []).append(r["audio"])
    spk = sorted(by_spk, key=lambda s: -len(by_spk[s]))
    if len(spk) < 2:
        sys.exit("the manifest needs at least two speakers")
    gap = np.zeros(int(0.3 * sr), np.float32)

    def long_of(s):
        parts, total = [], 0.0
        while total < seconds:
            for f in by_spk[s]:
                w = load_audio(f, sr)[0]
                parts += [w, gap]
                total += (len(w) + len(gap)) / sr
                if total >= seconds:
                    break
        return np.concatenate(parts)[: int(seconds * sr)]

    clean = long_of(spk[0])
    other_prompt = load_audio(by_spk[spk[1]][0], sr)[0]
    interferer = long_of(spk[1])
    rng = np.random.default_rng(seed)
    noise = np.cumsum(rng.standard_normal(len(clean))).astype(np.float32)  # brown-ish
    noise -= np.convolve(noise, np.ones(200) / 200, mode="same")
    p_s, p_n = np.mean(clean**2), np.mean(noise**2)
    noisy = clean + noise * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    return clean, other_prompt, interferer, (noisy / max(1.0, np.abs(noisy).max())).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="bundle directory, official directory, hub, or random:<preset>")
    ap.add_argument("--corpus", required=True, help="JSONL manifest with audio and speaker")
    ap.add_argument("--task", choices=["se", "tse", "vc"], default="se")
    ap.add_argument("--seconds", type=float, default=70.0)
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--context-s", type=float, default=4.0)
    ap.add_argument("--snr", type=float, default=5.0, help="SE: noise level (dB)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seg-s", type=float, default=2.0, help="seconds each side of a boundary")
    ap.add_argument("--device", default=None)
    ap.add_argument("--phone-vocab", default=None)
    ap.add_argument("--json")
    args = ap.parse_args()

    from metis_speech.eval.steadiness import steadiness
    from metis_speech.pipeline import Metis, window_boundaries_s

    sr = 16000
    clean, prompt, interferer, noisy = build_inputs(Path(args.corpus), args.seconds, sr, args.snr)
    m = Metis.from_pretrained(args.task, args.model, device=args.device, phone_vocab=args.phone_vocab)
    m.window_s = args.window_s
    bounds = window_boundaries_s(args.seconds, args.window_s, m.frame_rate)
    if not bounds:
        sys.exit(f"{args.seconds} s in windows of {args.window_s} s gives one window: nothing to measure")
    print(f"== {args.task}, {args.seconds:.0f} s input, windows of {args.window_s} s -> boundaries at {bounds} s, model {args.model}")
    kw = {"seed": 0} | ({"steps": args.steps} if args.steps else {})
    rows = {"clean input": (clean, sr)}
    for label, ctx in ((f"context {args.context_s} s", args.context_s), ("independent windows", 0.0)):
        m.context_s = ctx
        if args.task == "se":
            out = m.se((noisy, sr), **kw)
        elif args.task == "tse":
            out = m.tse(((clean + 0.7 * interferer[: len(clean)]).astype(np.float32), sr), (clean[: 3 * sr], sr), **kw)
        else:
            out = m.vc((clean, sr), (prompt, sr), **kw)
        rows[label] = (out.wav, out.sample_rate)
    results = {}
    print(f"{'':>24s}  {'step excess dB':>14s}  {'SIM drop':>9s}  {'level spread dB':>15s}  {'min SIM to 1st':>14s}")
    for label, (wav, rate) in rows.items():
        s = steadiness(wav, rate, bounds, seg_s=args.seg_s)
        results[label] = s.to_dict()
        drop = s.boundary_sim_drop
        print(f"{label:>24s}  {s.boundary_excess_db:14.2f}  {drop if drop is not None else float('nan'):9.3f}  "
              f"{s.level_spread_db:15.2f}  {min(s.window_sims_to_first or [float('nan')]):14.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
