"""Deterministic planning: which utterances and test items a corpus holds (no audio made).

Every random choice is drawn from ``random.Random`` streams keyed by the seed and a purpose
(``"{seed}/plan/train"``, ``"{seed}/plan/tse"``, ...), so

* the same settings give the same plan on every run;
* plans are prefix-stable: a bigger ``--minutes`` or ``--test-items`` extends the lists
  and keeps every earlier entry (so a resumed, enlarged build reuses finished files);
* choosing other ``--tasks`` does not change the items of a task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .config import CorpusConfig
from .noise import TEST_ONLY_NOISE_TYPES, TRAIN_NOISE_TYPES, sample_room
from .text import SentenceStream, resolve_sources
from .voices import BABBLE_TEST, BABBLE_TRAIN, Speaker, speakers_for_split

__all__ = ["Utt", "TestItem", "Plan", "make_plan", "estimate_seconds"]

PROMPTS_PER_SPEAKER = 2
NOISE_CLIP_SECONDS = 10.0
# characters per second at tempo 1, fitted on a 1.8-hour build (silences included)
_CPS = {"flite": 16.86, "festival-kal_diphone": 14.45, "festival-ked_diphone": 14.45, "festival": 16.3, "espeak": 19.57}


def estimate_seconds(speaker: Speaker, text: str) -> float:
    """Expected duration of ``text`` read by ``speaker`` (within ~1 % over a few hundred
    utterances, so ``--minutes`` is met closely without synthesising first)."""
    v = speaker.voice
    cps = _CPS.get(f"{v.engine}-{v.name}", _CPS[v.engine])
    return len(text) / cps / speaker.perturbation.tempo


@dataclass
class Utt:
    """One clean utterance to synthesise."""

    id: str
    split: str
    speaker: Speaker
    text: str

    @property
    def path(self) -> str:
        return f"wavs/{self.split}/{self.speaker.name}/{self.id}.wav"

    @property
    def video_path(self) -> str:
        return f"videos/{self.split}/{self.speaker.name}/{self.id}.mp4"


@dataclass
class TestItem:
    """One test-set entry; ``utts`` maps roles (reference, source, target, interferer,
    prompt) to utterances, ``details`` holds the task's settings (snr_db, noise, room)."""

    id: str
    task: str
    speaker: Speaker
    utts: Dict[str, Utt]
    details: Dict[str, object] = field(default_factory=dict)


@dataclass
class Plan:
    config: CorpusConfig
    sources: List[str]
    train: List[Utt]
    dev: List[Utt]
    tests: Dict[str, List[TestItem]]
    noise_bank: List[Dict[str, object]]
    rooms: List[Dict[str, object]]

    def test_utts(self) -> List[Utt]:
        """Clean test utterances used by the test sets, each once, in first-use order."""
        seen: Dict[str, Utt] = {}
        for task in self.tests:
            for item in self.tests[task]:
                for u in item.utts.values():
                    seen.setdefault(u.id, u)
        return list(seen.values())


def _weighted(rng: random.Random, speakers: List[Speaker]) -> Speaker:
    return rng.choices(speakers, weights=[s.weight for s in speakers])[0]


def _other_person(rng: random.Random, speakers: List[Speaker], than: Speaker) -> Speaker:
    while True:
        s = _weighted(rng, speakers)
        if s.voice.person != than.voice.person:
            return s


def _plan_split(cfg: CorpusConfig, split: str, seconds: float, sources: List[str]) -> List[Utt]:
    speakers = speakers_for_split(split)
    rng = random.Random(f"{cfg.seed}/plan/{split}")
    stream = SentenceStream(split, f"{cfg.seed}/text/{split}", sources)
    prefix = {"train": "tr", "dev": "dv"}[split]
    out: List[Utt] = []
    total = 0.0
    while total < seconds or not out:
        spk = _weighted(rng, speakers)
        text = next(stream)
        out.append(Utt(f"{prefix}{len(out):06d}", split, spk, text))
        total += estimate_seconds(spk, text)
    return out


def _plan_tests(cfg: CorpusConfig, sources: List[str]) -> Dict[str, List[TestItem]]:
    speakers = speakers_for_split("test")
    # prompts: PROMPTS_PER_SPEAKER fixed utterances per test speaker, shared by all tasks
    pstream = SentenceStream("test", f"{cfg.seed}/text/test/prompts", sources)
    prompts = {
        (s.name, k): Utt(f"prompt_s{i:03d}_{k}", "test", s, next(pstream))
        for i, s in enumerate(speakers)
        for k in range(PROMPTS_PER_SPEAKER)
    }
    tests: Dict[str, List[TestItem]] = {}
    for task in cfg.tasks:
        rng = random.Random(f"{cfg.seed}/plan/{task}")
        stream = SentenceStream("test", f"{cfg.seed}/text/test/{task}", sources, exclude={_norm(u.text) for u in prompts.values()})
        items: List[TestItem] = []
        for i in range(cfg.test_items):
            iid = f"{task}{i:04d}"
            spk = _weighted(rng, speakers)
            prompt = prompts[(spk.name, rng.randrange(PROMPTS_PER_SPEAKER))]
            text = next(stream)
            details: Dict[str, object] = {}
            if task == "tts":
                utts = {"reference": Utt(f"{iid}_ref", "test", spk, text), "prompt": prompt}
            elif task == "vc":
                src = _other_person(rng, speakers, spk)
                utts = {"source": Utt(f"{iid}_src", "test", src, text), "reference": Utt(f"{iid}_ref", "test", spk, text), "prompt": prompt}
            elif task == "tse":
                itf = _other_person(rng, speakers, spk)
                utts = {"target": Utt(f"{iid}_tgt", "test", spk, text), "interferer": Utt(f"{iid}_itf", "test", itf, next(stream)), "prompt": prompt}
                details = {"snr_db": round(rng.uniform(-5.0, 5.0), 1), "mix_seed": rng.getrandbits(32)}
            elif task == "se":
                utts = {"target": Utt(f"{iid}_cln", "test", spk, text)}
                held_out = rng.random() < 0.5
                kind = rng.choice(TEST_ONLY_NOISE_TYPES if held_out else TRAIN_NOISE_TYPES)
                nprng = np.random.default_rng(rng.getrandbits(64))
                details = {
                    "snr_db": round(rng.uniform(-5.0, 15.0), 1),
                    "noise_type": kind,
                    "noise_seen": not held_out,
                    "room": sample_room(nprng) if rng.random() < 0.7 else None,
                    "noise_seed": rng.getrandbits(32),
                }
                if kind == "babble":
                    bstream = SentenceStream("test", f"{cfg.seed}/text/babble/{iid}", sources)
                    details["babble_texts"] = [next(bstream) for _ in range(12)]
            elif task == "l2s":
                utts = {"reference": Utt(f"{iid}_ref", "test", spk, text), "prompt": prompt}
            else:  # pragma: no cover - parse_tasks guards this
                raise ValueError(task)
            items.append(TestItem(iid, task, spk, utts, details))
        tests[task] = items
    return tests


def _norm(text: str) -> str:
    from .text import normalize_text

    return normalize_text(text)


def _plan_noise_bank(cfg: CorpusConfig, sources: List[str]) -> Tuple[List[Dict[str, object]], List[Dict[str, object]]]:
    """Training noise clips (NOISE_CLIP_SECONDS each, every training noise type) and rooms."""
    if "se" not in cfg.tasks:
        return [], []
    per_type = int(min(40, max(1, round(cfg.minutes / 10))))
    n_rooms = int(min(300, max(2, round(cfg.minutes))))
    rng = random.Random(f"{cfg.seed}/plan/noise")
    bstream = SentenceStream("train", f"{cfg.seed}/text/babble/train", sources)
    bank = []
    for k in range(per_type):
        for kind in TRAIN_NOISE_TYPES:
            entry: Dict[str, object] = {"id": f"noise_{kind}_{k:03d}", "noise_type": kind, "seconds": NOISE_CLIP_SECONDS, "noise_seed": rng.getrandbits(32)}
            if kind == "babble":
                entry["babble_texts"] = [next(bstream) for _ in range(24)]
            bank.append(entry)
    rrng = np.random.default_rng(random.Random(f"{cfg.seed}/plan/rooms").getrandbits(64))
    rooms = [dict(id=f"rir_{k:04d}", **sample_room(rrng)) for k in range(n_rooms)]
    return bank, rooms


def make_plan(cfg: CorpusConfig) -> Plan:
    """Everything the corpus will hold, decided from ``cfg`` alone."""
    sources = resolve_sources(cfg.text_sources)
    seconds = cfg.minutes * 60.0
    train = _plan_split(cfg, "train", seconds * (1 - cfg.dev_fraction), sources)
    dev = _plan_split(cfg, "dev", seconds * cfg.dev_fraction, sources)
    tests = _plan_tests(cfg, sources)
    bank, rooms = _plan_noise_bank(cfg, sources)
    return Plan(cfg, sources, train, dev, tests, bank, rooms)


BABBLE_VOICES = {"train": BABBLE_TRAIN, "test": BABBLE_TEST}
