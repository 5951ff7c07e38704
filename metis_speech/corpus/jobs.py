"""The units of work of a build, each a pure function of its JSON spec.

A job spec is a dict with ``kind`` and ``outputs`` (paths relative to the corpus folder);
:func:`run_job` makes the outputs (each written atomically) and returns a small JSON-able
meta dict. Because a job's result depends on its spec alone, jobs can run in any order and
in any process, and a finished job is recognised on a later run by :func:`job_key`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List

import numpy as np

from .config import SAMPLE_RATE

__all__ = ["job_key", "run_job", "save_wav"]

_UMASK = None


def job_key(spec: Dict[str, object]) -> str:
    """Content key of a job: sha1 of its canonical JSON (16 hex digits)."""
    return hashlib.sha1(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _public(path: Path) -> None:
    """Give a finished file the usual 0644-under-umask mode (temp files are made 0600)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    os.chmod(path, 0o666 & ~_UMASK)


def save_wav(out_dir: Path, rel: str, wav: np.ndarray) -> None:
    from ..audio import save_audio

    path = out_dir / rel
    save_audio(path, wav, SAMPLE_RATE)
    _public(path)


def _load(out_dir: Path, rel: str) -> np.ndarray:
    from ..audio import load_audio

    wav, _ = load_audio(out_dir / rel)
    return wav


def _utt(out_dir: Path, spec) -> Dict[str, object]:
    from .synth import render_utterance
    from .voices import Perturbation, voice_by_key

    wav, phones = render_utterance(voice_by_key(spec["voice"]), Perturbation(*spec["perturbation"]), spec["text"])
    save_wav(out_dir, spec["outputs"][0], wav)
    return {"duration": round(len(wav) / SAMPLE_RATE, 4), "phones": phones}


def _noise_clip(spec, n: int) -> np.ndarray:
    from .noise import make_noise
    from .plan import BABBLE_VOICES

    rng = np.random.default_rng(spec["noise_seed"])
    return make_noise(spec["noise_type"], n, rng, BABBLE_VOICES[spec.get("babble_pool", "train")], spec.get("babble_texts", ()))


def _noise(out_dir: Path, spec) -> Dict[str, object]:
    n = int(spec["seconds"] * SAMPLE_RATE)
    save_wav(out_dir, spec["outputs"][0], _noise_clip(spec, n))
    return {"duration": round(n / SAMPLE_RATE, 4)}


def _rir(out_dir: Path, spec) -> Dict[str, object]:
    from .noise import room_rir

    rir = room_rir(spec["room"])
    save_wav(out_dir, spec["outputs"][0], rir)
    return {"samples": int(len(rir))}


def _tse(out_dir: Path, spec) -> Dict[str, object]:
    """target + interferer (zero-padded or cut at a random position) at snr_db."""
    from .noise import mix_at_snr, snr_db

    target = _load(out_dir, spec["target"])
    itf = _load(out_dir, spec["interferer"])
    rng = np.random.default_rng(spec["mix_seed"])
    n = len(target)
    if len(itf) >= n:
        start = int(rng.integers(0, len(itf) - n + 1))
        itf = itf[start : start + n]
    else:
        start = int(rng.integers(0, n - len(itf) + 1))
        itf = np.pad(itf, (start, n - len(itf) - start))
    mix, ref, noise = mix_at_snr(target, itf, spec["snr_db"])
    save_wav(out_dir, spec["outputs"][1], ref)
    save_wav(out_dir, spec["outputs"][0], mix)
    return {"snr_db_measured": round(snr_db(ref, noise), 3), "duration": round(n / SAMPLE_RATE, 4)}


def _se(out_dir: Path, spec) -> Dict[str, object]:
    """(reverberant) clean + noise at snr_db; the reference is the dry clean signal."""
    from .noise import mix_at_snr, reverberate, room_rir, snr_db

    clean = _load(out_dir, spec["target"])
    speech = reverberate(clean, room_rir(spec["room"])) if spec["room"] else clean
    noise = _noise_clip(spec, len(clean))
    _, _, noise_s = mix_at_snr(speech, noise, spec["snr_db"], peak=np.inf)
    mix = speech + noise_s
    g = min(1.0, 0.9 / max(float(np.abs(mix).max()), 1e-9))
    save_wav(out_dir, spec["outputs"][1], clean * g)
    save_wav(out_dir, spec["outputs"][0], mix * g)
    return {"snr_db_measured": round(snr_db(speech, noise_s), 3), "duration": round(len(clean) / SAMPLE_RATE, 4)}


def _video(out_dir: Path, spec) -> Dict[str, object]:
    from .face import face_for, render_video

    face = face_for(spec["speaker"], spec["seed"])
    n = render_video(out_dir / spec["outputs"][0], spec["phones"], spec["duration"], face, seed=spec["render_seed"])
    _public(out_dir / spec["outputs"][0])
    return {"n_frames": n}


_RUNNERS = {"utt": _utt, "noise": _noise, "rir": _rir, "tse": _tse, "se": _se, "video": _video}


def run_job(out_dir: str, spec: Dict[str, object]) -> Dict[str, object]:
    """Run one job (in whichever process) and return its meta."""
    return _RUNNERS[spec["kind"]](Path(out_dir), spec)


def outputs(spec: Dict[str, object]) -> List[str]:
    return list(spec["outputs"])
