"""The paper's fine-tuning data recipes: what each task's training item is made of.

Used by :mod:`metis_speech.training.prepare` (``metis prepare --task ...``). Everything is a
pure function of (seed, utterance id), so a resumed or repeated run makes the same items.

=====  ==========================================  =======================  ==================
task   condition (``cond``, SSL features of ...)   ``semantic``             prompt
=====  ==========================================  =======================  ==================
none   --                                          ids of the utterance     objective's random
tts    -- (``phones`` of the transcript)           ids of the utterance     objective's random
se     noisy + reverberant copy (mixed at 24 kHz)  ids of the clean copy    none (SE has none)
vc     [prompt ; timbre-perturbed copy]            [prompt ids ; ids]       ``prompt_len``
tse    [prompt ; target + other speaker at SNR]    [prompt ids ; ids]       ``prompt_len``
l2s    [zeros ; visual features of the video]      [prompt ids ; ids]       ``prompt_len``
=====  ==========================================  =======================  ==================

``visual`` makes no TokenDataset items but visual-encoder pairs (mouth crops + semantic
ids); it and ``l2s`` are built in :mod:`.prepare_video`. The L2S prompt is paired and cut as
for VC (another utterance of the same speaker, a ``prompt_s`` stretch).

VC and TSE mirror inference (:meth:`metis_speech.pipeline.Metis.vc` / ``tse``): the prompt
is another utterance of the same speaker, its ids are computed on its own, and the frame
condition is computed on the concatenated waveform so that the prompt region carries the
prompt's own features. The prompt is cut to whole 20 ms frames (a random ``prompt_s``
stretch; the whole utterance when phones are stored, whose ids are then [prompt transcript ;
target transcript] as in TTS inference) so that the prompt / target boundary falls on a
frame. Its length in frames is stored as ``<id>/prompt_len`` (1,); the ids, condition and
acoustic ids all cover [prompt ; target].

Degradations (waveforms are float32 (S,)):
  * VC: WORLD re-synthesis with the pitch shifted by ±U(pitch) semitones and the spectral
    envelope warped by a vocal-tract-length factor (``metis_speech.corpus.synth.perturb``);
    the length is kept, so the condition stays frame-aligned with the target.
  * SE: with probability ``reverb_prob`` the clean speech is convolved with a simulated
    room (image method, ``corpus.noise.room_rir``, a bank of ``n_rooms`` rooms drawn from
    the seed), then a synthetic noise (``corpus.noise.make_noise``) is added at an SNR
    drawn from ``se_snr``; the SNR is that of the (reverberant) speech to the noise.
  * TSE: an utterance of another speaker, looped or cut to the target's length from a
    random offset, is added at a target-to-interferer SNR drawn from ``tse_snr``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "TASKS",
    "PROMPT_TASKS",
    "TaskRecipe",
    "item_rng",
    "pair_items",
    "perturb_timbre",
    "degrade_se",
    "mix_tse",
    "room_bank",
    "crop_prompt",
    "pitch_hz",
]

TASKS = ("none", "tts", "vc", "tse", "se", "visual", "l2s")
PROMPT_TASKS = ("vc", "tse", "l2s")  # items made of [prompt of the same speaker ; target]
FRAME_S = 0.02  # 50 Hz: 320 samples at 16 kHz, 480 at 24 kHz


@dataclass
class TaskRecipe:
    """Parameters of the degradations (ranges are uniform [low, high])."""

    se_snr: Tuple[float, float] = (-5.0, 20.0)
    reverb_prob: float = 0.5
    rt60: Tuple[float, float] = (0.2, 0.8)
    n_rooms: int = 8
    noise_types: Tuple[str, ...] = ("white", "pink", "brown", "tones", "bursts", "clicks", "modulated")
    tse_snr: Tuple[float, float] = (-5.0, 5.0)
    pitch_semitones: Tuple[float, float] = (3.0, 7.0)  # |shift|, sign drawn
    vtl: Tuple[float, float] = (0.85, 1.15)
    prompt_s: Tuple[float, float] = (2.0, 5.0)  # the prompt utterance is cut to this length

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def item_rng(seed: int, uid: str, salt: str = "") -> np.random.Generator:
    """A generator that depends only on (seed, utterance id, salt)."""
    h = hashlib.sha256(f"{seed}\x00{uid}\x00{salt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


# ----------------------------------------------------------------------------- pairing
def pair_items(
    ids: Sequence[str], speakers: Sequence[Optional[str]], task: str, seed: int
) -> Tuple[Dict[str, dict], Dict[str, str]]:
    """Prompt / interferer partners for VC, TSE and L2S (a prompt only).

    Returns (partners, skipped): ``partners[id] = {"prompt": id2[, "interferer": id3]}``,
    ``skipped[id] = reason`` for items that cannot be used. Other tasks need no partners.
    """
    partners: Dict[str, dict] = {}
    skipped: Dict[str, str] = {}
    if task not in PROMPT_TASKS:
        return partners, skipped
    by_spk: Dict[str, List[str]] = {}
    for uid, spk in zip(ids, speakers):
        if spk:
            by_spk.setdefault(str(spk), []).append(uid)
    spk_list = sorted(by_spk)
    for uid, spk in zip(ids, speakers):
        if not spk:
            skipped[uid] = "no speaker label"
            continue
        same = [u for u in by_spk[str(spk)] if u != uid]
        if not same:
            skipped[uid] = "speaker has one utterance"
            continue
        rng = item_rng(seed, uid, "pair")
        rec = {"prompt": same[int(rng.integers(len(same)))]}
        if task == "tse":
            others = [s for s in spk_list if s != str(spk)]
            if not others:
                skipped[uid] = "no other speaker for an interferer"
                continue
            other = by_spk[others[int(rng.integers(len(others)))]]
            rec["interferer"] = other[int(rng.integers(len(other)))]
        partners[uid] = rec
    return partners, skipped


def crop_prompt(n_samples: int, sr: int, rng: np.random.Generator, seconds: Tuple[float, float]) -> Tuple[int, int]:
    """(start, length) in 20 ms frames of a random stretch of ``seconds`` (uniform) of an
    ``n_samples`` waveform at ``sr``; apply it at any rate as ``wav[start*hop:(start+length)*hop]``."""
    hop = int(round(FRAME_S * sr))
    total = n_samples // hop
    want = max(1, int(rng.uniform(*seconds) / FRAME_S))
    if total <= want:
        return 0, total
    return int(rng.integers(0, total - want + 1)), want


# ------------------------------------------------------------------------ degradations
def perturb_timbre(wav: np.ndarray, sr: int, rng: np.random.Generator, recipe: TaskRecipe) -> Tuple[np.ndarray, dict]:
    """Pitch-shifted, formant-warped copy of ``wav`` with the same length (WORLD)."""
    from ..corpus.synth import normalize_level, perturb
    from ..corpus.voices import Perturbation

    shift = float(rng.uniform(*recipe.pitch_semitones)) * (1 if rng.random() < 0.5 else -1)
    vtl = float(rng.uniform(*recipe.vtl))
    y, _ = perturb(np.asarray(wav, dtype=np.float32), sr, Perturbation(pitch=round(shift, 3), vtl=round(vtl, 4)))
    y = y[: len(wav)] if len(y) >= len(wav) else np.pad(y, (0, len(wav) - len(y)))
    y = normalize_level(y, sr)
    return y.astype(np.float32), {"pitch_semitones": round(shift, 3), "vtl": round(vtl, 4)}


def room_bank(seed: int, recipe: TaskRecipe) -> List[Tuple[dict, np.ndarray]]:
    """``n_rooms`` simulated rooms (description, 24 kHz RIR) drawn from ``seed``."""
    from ..corpus.noise import room_rir, sample_room

    rng = item_rng(seed, "", "rooms")
    rooms = [sample_room(rng, tuple(recipe.rt60)) for _ in range(max(0, recipe.n_rooms))]
    return [(r, room_rir(r)) for r in rooms]


def degrade_se(
    clean24: np.ndarray, rng: np.random.Generator, recipe: TaskRecipe, rooms: Sequence[Tuple[dict, np.ndarray]] = ()
) -> Tuple[np.ndarray, dict]:
    """Noisy (and maybe reverberant) copy of 24 kHz ``clean24``.

    Returns (noisy (S,), info) with info ``snr_db``, ``noise``, ``rt60`` (None when dry) and
    the two parts ``speech`` (reverberant speech as mixed) and ``noise_wav`` (as mixed), so
    that ``noisy == speech + noise_wav``.
    """
    from ..corpus.noise import make_noise, mix_at_snr, reverberate

    snr = float(rng.uniform(*recipe.se_snr))
    kind = str(recipe.noise_types[int(rng.integers(len(recipe.noise_types)))])
    speech = np.asarray(clean24, dtype=np.float32)
    rt60 = None
    if rooms and rng.random() < recipe.reverb_prob:
        room, rir = rooms[int(rng.integers(len(rooms)))]
        speech = reverberate(speech, rir)
        rt60 = room["rt60"]
    noise = make_noise(kind, len(speech), rng)
    noisy, s, n = mix_at_snr(speech, noise, snr)
    return noisy, {"snr_db": round(snr, 3), "noise": kind, "rt60": rt60, "speech": s, "noise_wav": n}


def mix_tse(
    target: np.ndarray, interferer: np.ndarray, rng: np.random.Generator, recipe: TaskRecipe
) -> Tuple[np.ndarray, dict]:
    """Target + another speaker (looped / cut to length from a random offset) at a drawn SNR.

    Returns (mixture (S,), info) with ``snr_db`` and the scaled parts ``target`` and
    ``interferer`` (mixture == target + interferer)."""
    from ..corpus.noise import fit_length, mix_at_snr

    snr = float(rng.uniform(*recipe.tse_snr))
    other = fit_length(np.asarray(interferer, dtype=np.float32), len(target), rng)
    mix, s, n = mix_at_snr(np.asarray(target, dtype=np.float32), other, snr)
    return mix, {"snr_db": round(snr, 3), "target": s, "interferer": n}


def pitch_hz(wav: np.ndarray, sr: int) -> float:
    """Median F0 (Hz) over voiced frames (WORLD harvest-free DIO + StoneMask); 0 if unvoiced."""
    from ..corpus.synth import _pyworld

    pw = _pyworld()
    x = np.asarray(wav, dtype=np.float64)
    f0, t = pw.dio(x, sr, frame_period=10.0)
    f0 = pw.stonemask(x, f0, t, sr)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0
