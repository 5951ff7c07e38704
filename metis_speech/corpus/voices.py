"""Voices, perturbations and speakers of the synthetic corpus (data, not code paths).

A *voice* is one offline synthesiser voice (flite, festival or an espeak-ng language +
variant). A *perturbation* changes pitch (semitones), vocal-tract length (formant scale
``vtl``: >1 = shorter tract, formants up) and tempo; it is applied with the WORLD vocoder.
A *speaker* is a (voice, perturbation) pair, named ``<voice>__<perturbation>``.

Leakage rules, fixed here and checked by the tests:

* ``HELD_OUT_PERSON`` (flite ``rms``) and the espeak voices marked ``held_out`` occur in
  the test split only;
* ``TEST_PERTURBATIONS`` are never applied in train/dev; every test speaker is unseen in
  training (either its voice or its perturbation is held out);
* ``BABBLE_TRAIN`` / ``BABBLE_TEST`` espeak voices only ever appear inside babble noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

__all__ = [
    "Voice",
    "Perturbation",
    "Speaker",
    "VOICES",
    "TRAIN_PERTURBATIONS",
    "TEST_PERTURBATIONS",
    "HELD_OUT_VOICE_PERTURBATIONS",
    "HELD_OUT_PERSON",
    "BABBLE_TRAIN",
    "BABBLE_TEST",
    "speakers_for_split",
    "voice_by_key",
]


@dataclass(frozen=True)
class Voice:
    """One synthesiser voice.

    ``key`` is file-name safe (``flite-awb``); ``engine`` is flite|festival|espeak;
    ``name`` is what the engine calls it; ``person`` groups voices that are the same
    recorded speaker behind different engines (flite kal16 and festival kal_diphone are
    both Kal); ``weight`` is the relative sampling weight (the natural-sounding
    flite/festival voices are preferred over formant synthesis, which ASR scores poorly).
    """

    key: str
    engine: str
    name: str
    person: str
    held_out: bool = False
    weight: float = 1.0

    @property
    def label(self) -> str:
        """``engine:name`` as written in the manifests' ``voice`` field."""
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Perturbation:
    """pitch (semitones), vtl (formant frequency scale), tempo (speed-up factor)."""

    pitch: float = 0.0
    vtl: float = 1.0
    tempo: float = 1.0

    @property
    def name(self) -> str:
        return f"p{self.pitch:+.1f}_v{self.vtl:.2f}_t{self.tempo:.2f}"

    @property
    def is_identity(self) -> bool:
        return self.pitch == 0.0 and self.vtl == 1.0 and self.tempo == 1.0

    def to_dict(self) -> Dict[str, object]:
        return {"name": self.name, "pitch_semitones": self.pitch, "vtl": self.vtl, "tempo": self.tempo}


@dataclass(frozen=True)
class Speaker:
    voice: Voice
    perturbation: Perturbation

    @property
    def name(self) -> str:
        return f"{self.voice.key}__{self.perturbation.name}"

    @property
    def weight(self) -> float:
        return self.voice.weight


def _espeak(lang: str, variant: str, *, held_out: bool = False, weight: float = 0.15) -> Voice:
    name = f"{lang}+{variant}"
    return Voice(f"espeak-{lang}-{variant}", "espeak", name, person=f"espeak-{lang}-{variant}", held_out=held_out, weight=weight)


HELD_OUT_PERSON = "rms"

VOICES: Tuple[Voice, ...] = (
    Voice("flite-kal16", "flite", "kal16", person="kal"),
    Voice("flite-awb", "flite", "awb", person="awb"),
    Voice("flite-rms", "flite", "rms", person="rms", held_out=True, weight=1.5),
    Voice("flite-slt", "flite", "slt", person="slt"),
    Voice("festival-kal", "festival", "kal_diphone", person="kal"),
    Voice("festival-ked", "festival", "ked_diphone", person="ked"),
    Voice("festival-slt", "festival", "cmu_us_slt_arctic_hts", person="slt"),
    # espeak-ng: accents x variants (formant synthesis pseudo-speakers)
    _espeak("en-us", "m1"), _espeak("en-us", "m3"), _espeak("en-us", "f1"), _espeak("en-us", "f3"),
    _espeak("en-us", "klatt"), _espeak("en-us", "Andy"), _espeak("en-us", "belinda"),
    _espeak("en", "m2"), _espeak("en", "f2"), _espeak("en", "m5"), _espeak("en", "klatt3"),
    _espeak("en-gb-x-rp", "m4"), _espeak("en-gb-x-rp", "f4"), _espeak("en-gb-x-rp", "david"),
    _espeak("en-gb-scotland", "m6"), _espeak("en-gb-scotland", "f5"),
    _espeak("en-029", "m7"), _espeak("en-029", "Annie"),
    _espeak("en-us-nyc", "john"), _espeak("en-us-nyc", "linda"),
    # held out entirely (test speakers only)
    _espeak("en-us", "m2", held_out=True), _espeak("en-gb-x-gbclan", "f3", held_out=True),
    _espeak("en-gb-x-gbcwmd", "m3", held_out=True),
)

# Babble talkers: never target/prompt/interferer speakers; train and test pools disjoint.
BABBLE_TRAIN: Tuple[str, ...] = ("en-us+m5", "en+f1", "en-gb-x-rp+m1", "en-029+f2", "en-us-nyc+m4", "en+Alex")
BABBLE_TEST: Tuple[str, ...] = ("en-gb-scotland+m2", "en-us+f4", "en+edward", "en-us+steph")

IDENTITY = Perturbation()
TRAIN_PERTURBATIONS: Tuple[Perturbation, ...] = (
    IDENTITY,
    Perturbation(+2.0, 1.00, 1.00),
    Perturbation(-2.0, 1.00, 1.00),
    Perturbation(0.0, 1.06, 1.00),
    Perturbation(0.0, 0.94, 1.00),
    Perturbation(+3.0, 1.08, 1.05),
    Perturbation(-3.0, 0.92, 0.95),
    Perturbation(+1.0, 0.96, 1.10),
    Perturbation(-1.0, 1.04, 0.90),
    Perturbation(+4.0, 1.10, 1.00),
    Perturbation(-4.0, 0.90, 1.00),
)
# zero-shot settings: two outside the training range, two between training points
TEST_PERTURBATIONS: Tuple[Perturbation, ...] = (
    Perturbation(+5.0, 1.12, 1.00),
    Perturbation(-5.0, 0.88, 0.95),
    Perturbation(+1.5, 1.03, 0.92),
    Perturbation(-1.5, 0.97, 1.08),
)
# held-out voices are unseen already; give them a few (training-range) variants too
HELD_OUT_VOICE_PERTURBATIONS: Tuple[Perturbation, ...] = (IDENTITY, Perturbation(+2.0, 1.00, 1.00), Perturbation(0.0, 0.94, 1.00))

assert not set(p.name for p in TRAIN_PERTURBATIONS) & set(p.name for p in TEST_PERTURBATIONS)


def voice_by_key(key: str) -> Voice:
    for v in VOICES:
        if v.key == key:
            return v
    raise KeyError(key)


def speakers_for_split(split: str) -> List[Speaker]:
    """Speakers of ``train``/``dev`` (seen voices x training perturbations) or ``test``
    (seen voices x held-out perturbations, plus held-out voices x a few perturbations)."""
    if split in ("train", "dev"):
        return [Speaker(v, p) for v in VOICES if not v.held_out for p in TRAIN_PERTURBATIONS]
    if split == "test":
        seen = [Speaker(v, p) for v in VOICES if not v.held_out for p in TEST_PERTURBATIONS]
        unseen = [Speaker(v, p) for v in VOICES if v.held_out for p in HELD_OUT_VOICE_PERTURBATIONS]
        return seen + unseen
    raise ValueError(f"unknown split {split!r}")
