"""Build TTS and SE test sets from the real human recordings that exist offline, for
`generate_testset.py` and `metis eval` to score.

    python benchmarks/real_testset.py --out /tmp/real
    python benchmarks/generate_testset.py --testset /tmp/real/tts.jsonl --model small --out /tmp/gen_real/tts
    metis eval /tmp/gen_real/tts -t /tmp/real/tts.jsonl

No corpus of the project holds these voices (``make-corpus`` synthesises flite / festival /
espeak-ng voices), so the sets test generalisation to real speakers, microphones and rooms:

* ``alsa``: the eight channel-test clips of Debian ``alsa-utils`` (one male speaker, 48 kHz,
  "Front Left", ...), three joined per utterance;
* ``ktuberling-en``: the English word clips of Debian ``ktuberling-data`` (one speaker),
  four words joined per utterance (``--ktuberling-lang`` picks another language for SE).

``tts.jsonl``: each speaker's prompt (one utterance and its text) with ``--texts`` target
sentences written for this script (not in any corpus). ``se.jsonl``: every utterance mixed
with noise at ``--snr`` dB, the noise types cycling through ``--noise`` (by default the
stationary ``white``/``pink`` and the test-only ``hum``/``siren``/``crackle`` of
:mod:`metis_speech.corpus.noise`); the clean utterance is the reference.
Files are written at 24 kHz; the items carry ``voice: real:<speaker>`` and the SNR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ALSA_DIR = Path("/usr/share/sounds/alsa")
KTUBERLING_DIR = Path("/usr/share/ktuberling/sounds")
ALSA_GROUPS = [("Front_Left", "Front_Right", "Front_Center"), ("Rear_Left", "Rear_Right", "Rear_Center"),
               ("Side_Left", "Side_Right", "Front_Center")]
TEXTS = [
    "The old lighthouse keeper painted his boat a bright shade of green.",
    "Please bring the blue folder to the meeting on Thursday morning.",
    "A gentle rain fell on the quiet village all through the night.",
    "Our neighbours planted tomatoes and beans along the garden wall.",
    "The train to the coast leaves from the second platform at noon.",
    "She found an old map hidden between the pages of a heavy book.",
    "Turn left at the bakery and walk past the small red church.",
    "Every winter the children build a snowman in the park.",
]


def _join(clips, sr: int, gap_s: float = 0.2) -> np.ndarray:
    gap = np.zeros(int(gap_s * sr), np.float32)
    out = [gap]
    for c in clips:
        out += [c, gap]
    return np.concatenate(out)


def _load(path: Path, sr: int) -> np.ndarray:
    from metis_speech.audio import load_audio

    wav, _ = load_audio(path, sr)
    wav = wav - float(np.mean(wav))
    return (wav / max(1e-4, float(np.abs(wav).max())) * 0.7).astype(np.float32)


def real_utterances(sr: int, ktuberling_lang: str = "en", words: int = 4):
    """[(speaker, text, wav)] of joined real clips; raises if neither package is installed."""
    utts = []
    if ALSA_DIR.is_dir():
        for group in ALSA_GROUPS:
            files = [ALSA_DIR / f"{n}.wav" for n in group]
            if all(f.is_file() for f in files):
                text = ". ".join(n.replace("_", " ").capitalize() for n in group) + "."
                utts.append(("alsa", text, _join([_load(f, sr) for f in files], sr)))
    kdir = KTUBERLING_DIR / ktuberling_lang
    if kdir.is_dir():
        files = sorted(p for p in kdir.iterdir() if p.suffix in (".ogg", ".wav", ".flac") and "_" not in p.stem)
        for i in range(0, len(files) - words + 1, words):
            group = files[i : i + words]
            text = ", ".join(p.stem for p in group) + "."
            utts.append((f"ktuberling-{ktuberling_lang}", text.capitalize(), _join([_load(f, sr) for f in group], sr)))
    if not utts:
        sys.exit("no real recordings found: install the Debian packages alsa-utils and ktuberling-data")
    return utts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (tts.jsonl, se.jsonl, audio under wavs/)")
    ap.add_argument("--texts", type=int, default=4, help="target sentences per TTS prompt (at most %d)" % len(TEXTS))
    ap.add_argument("--snr", type=float, nargs="+", default=[0.0, 5.0, 10.0], help="SE mixing SNRs in dB")
    ap.add_argument("--noise", nargs="+", default=["white", "pink", "hum", "siren", "crackle"],
                    help="SE noise types, cycled over the items")
    ap.add_argument("--se-items", type=int, default=12, help="number of SE items")
    ap.add_argument("--ktuberling-lang", default="en")
    ap.add_argument("--sample-rate", type=int, default=24000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 1 <= args.texts <= len(TEXTS):
        sys.exit(f"--texts must be 1..{len(TEXTS)}")

    from metis_speech.audio import save_audio
    from metis_speech.corpus.noise import fit_length, make_noise, mix_at_snr

    out = Path(args.out)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    sr = args.sample_rate
    utts = real_utterances(sr, args.ktuberling_lang)
    rng = np.random.default_rng(args.seed)

    tts, seen = [], set()
    for spk, text, wav in utts:
        if spk in seen:  # one prompt per speaker: the first (longest alsa group comes first)
            continue
        seen.add(spk)
        prompt = out / "wavs" / f"prompt_{spk}.wav"
        save_audio(prompt, wav, sr)
        for j, t in enumerate(TEXTS[: args.texts]):
            tts.append({"id": f"real_tts_{spk}_{j}", "task": "tts", "prompt": str(prompt.relative_to(out)),
                        "prompt_text": text, "text": t, "speaker": spk, "voice": f"real:{spk}",
                        "zero_shot": "real voice", "sample_rate": sr})

    se = []
    for i in range(args.se_items):
        spk, text, clean = utts[i % len(utts)]
        kind = args.noise[i % len(args.noise)]
        snr = args.snr[i % len(args.snr)]
        noise = fit_length(make_noise(kind, len(clean), rng), len(clean), rng)
        mix, ref, _ = mix_at_snr(clean, noise, snr)
        save_audio(out / "wavs" / f"se{i:03d}_noisy.wav", mix, sr)
        save_audio(out / "wavs" / f"se{i:03d}_ref.wav", ref, sr)
        se.append({"id": f"real_se{i:03d}", "task": "se", "input": f"wavs/se{i:03d}_noisy.wav",
                   "reference": f"wavs/se{i:03d}_ref.wav", "text": text, "speaker": spk, "voice": f"real:{spk}",
                   "snr_db": snr, "noise_type": kind, "duration": round(len(clean) / sr, 3), "sample_rate": sr})
    for name, rows in (("tts", tts), ("se", se)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps({"out": str(out), "tts_items": len(tts), "se_items": len(se),
                      "speakers": sorted({u[0] for u in utts})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
