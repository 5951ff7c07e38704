"""The per-item work of ``metis prepare``: its settings and the audio worker.

:class:`PrepareConfig` holds a run's settings; :class:`_Worker` loads an item's audio, builds
the task's waveforms (:mod:`.task_data`) and tokenizes them with the model source's networks.
The driver (:func:`.prepare.prepare`) and the video worker (:mod:`.prepare_video`) both build
on this module, which imports neither of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import AudioError
from .prepare_io import AudioReader, Item
from .task_data import TaskRecipe, crop_prompt, degrade_se, item_rng, mix_tse, perturb_timbre, room_bank

__all__ = ["PrepareConfig", "COND_DTYPES", "VIDEO_TASKS"]

SSL_SR = 16000
SILENT_RMS = 10 ** (-60 / 20)  # -60 dBFS over the whole clip
VIDEO_TASKS = ("visual", "l2s")  # built by .prepare_video
COND_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class PrepareConfig:
    """Settings of one ``metis prepare`` run (the first block decides the content)."""

    input: str
    out: str
    model: str = "hub"
    task: str = "none"  # none | tts | vc | tse | se | visual | l2s
    acoustic: bool = True
    phones: bool = False  # always on for task tts
    language: str = "auto"  # when the item gives none
    min_duration: float = 0.5
    max_duration: float = 30.0
    shard_size: Optional[int] = None  # input utterances per shard; None: 500, or 100 with a frame condition
    seed: int = 0
    cond_dtype: str = "float16"
    recipe: TaskRecipe = field(default_factory=TaskRecipe)
    visual: Optional[str] = None  # l2s: visual encoder checkpoint dir (default: the model source's)
    # --- how, not what
    phone_vocab: Optional[str] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    batch_size: int = 8  # utterances per SSL forward pass
    progress: bool = True
    part: Tuple[int, int] = (0, 1)  # (k, n): this process does the shards i with i % n == k

    def content(self) -> dict:
        keys = ("task", "acoustic", "phones", "language", "min_duration", "max_duration", "shard_size", "seed", "cond_dtype")
        d = {k: getattr(self, k) for k in keys}
        d["shard_size"] = self.shard_items
        d["acoustic"] = self.wants_acoustic
        d["model"] = str(self.model)
        d["recipe"] = self.recipe.to_dict()
        return d

    @property
    def shard_items(self) -> int:
        if self.shard_size is not None:
            return int(self.shard_size)
        return 100 if self.task in ("vc", "tse", "se", "visual", "l2s") else 500

    @property
    def wants_phones(self) -> bool:
        return self.phones or self.task == "tts"

    @property
    def wants_acoustic(self) -> bool:
        return self.acoustic and self.task != "visual"  # visual-encoder pairs hold no acoustic ids


# ---------------------------------------------------------------------- processing
class _Skip(Exception):
    """An item that cannot be used; the message is the counted reason, ``path`` the file to
    name in the summary when it is not the item's audio (e.g. its video)."""

    def __init__(self, reason: str, path: Optional[str] = None):
        super().__init__(reason)
        self.path = path


def _fit(x: torch.Tensor, T: int) -> torch.Tensor:
    """Cut or repeat-pad the last row to exactly T rows."""
    if x.shape[0] >= T:
        return x[:T]
    return torch.cat([x, x[-1:].expand(T - x.shape[0], *x.shape[1:])], dim=0)


def _int_ids(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().cpu().long()
    if x.numel() == 0 or (int(x.min()) >= -32768 and int(x.max()) <= 32767):
        return x.to(torch.int16)
    return x.to(torch.int32)


class _Worker:
    """Loads audio, builds the task's waveforms and tokenizes them with the Metis networks."""

    def __init__(self, cfg: PrepareConfig, items: Dict[str, Item], partners: Dict[str, dict]):
        from ..corpus.config import SAMPLE_RATE
        from ..pipeline import Metis

        self.cfg = cfg
        self.items = items
        self.partners = partners
        self.se_sr = SAMPLE_RATE  # the corpus noise generators and rooms work at this rate
        self.metis = Metis.from_pretrained("tts", cfg.model, device=cfg.device, dtype=cfg.dtype,
                                           phone_vocab=cfg.phone_vocab, lazy=True)
        self.reader = AudioReader()
        self.ac_sr = self.metis.sample_rate if cfg.wants_acoustic else None
        self.rooms = room_bank(cfg.seed, cfg.recipe) if cfg.task == "se" and cfg.recipe.reverb_prob > 0 else []
        self.tok = self.metis._net("phones") if cfg.wants_phones else None
        self.semantic_codec = self.metis._net("semantic_codec")
        self.ssl = self.metis._net("ssl")

    # ---- audio
    def load(self, it: Item, what: str = "") -> Tuple[np.ndarray, Optional[np.ndarray], float]:
        """(16 kHz wav, acoustic-codec-rate wav or None, seconds); raises _Skip with the reason.
        The native-rate waveform is kept in ``self.last`` for the SE degradation."""
        from ..audio import resample

        pre = f"{what} " if what else ""
        if not it.audio.startswith("tar://") and not Path(it.audio).is_file():
            raise _Skip(f"{pre}missing file")
        try:
            wav, sr = self.reader.read(it.audio)
        except AudioError:
            raise _Skip(f"{pre}corrupt or unreadable audio") from None
        except Exception:  # noqa: BLE001 - any decoder failure is a corrupt file
            raise _Skip(f"{pre}corrupt or unreadable audio") from None
        seconds = len(wav) / sr
        if float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < SILENT_RMS:
            raise _Skip(f"{pre}silent")
        if not what:
            if seconds < self.cfg.min_duration:
                raise _Skip("too short")
            if seconds > self.cfg.max_duration:
                raise _Skip("too long")
        self.last = (wav, sr)
        w16 = resample(wav, sr, SSL_SR)
        w24 = resample(wav, sr, self.ac_sr) if self.ac_sr else None
        return w16, w24, seconds

    # ---- per item: waveforms to featurize
    def phones(self, it: Item, what: str = "") -> List[int]:
        pre = f"{what} " if what else ""
        if it.phone_ids is not None:  # computed beforehand: only valid for the same vocabulary
            if it.phone_vocab != self.tok.vocab.fingerprint():
                raise _Skip(f"{pre}manifest phone_ids of another phone vocabulary")
            ids = [int(x) for x in it.phone_ids]
            if not ids or min(ids) < 0 or max(ids) >= len(self.tok.vocab):
                raise _Skip(f"{pre}manifest phone_ids outside the phone vocabulary")
            return ids
        if not it.text:
            raise _Skip(f"{pre}missing transcript")
        try:
            ids = self.tok(it.text, it.language or self.cfg.language).ids
        except Exception:  # noqa: BLE001 - TextError and backend failures alike
            raise _Skip(f"{pre}no phones from transcript") from None
        if not ids:
            raise _Skip(f"{pre}no phones from transcript")
        return list(ids)

    def plan(self, it: Item) -> dict:
        """Waveforms of one training item (raises _Skip).

        VC/TSE with phones (omni, text-guided TSE): the prompt utterance is used whole, and
        the phones are [prompt transcript ; target transcript], as TTS inference builds them."""
        cfg, rec = self.cfg, self.cfg.recipe
        out: dict = {"item": it, "info": {}}
        phones = self.phones(it) if cfg.wants_phones else None
        w16, w24, seconds = self.load(it)
        out.update(w16=w16, w24=w24, seconds=seconds, phones=phones)
        rng = item_rng(cfg.seed, it.uid, cfg.task)
        if cfg.task == "se":
            from ..audio import resample

            wav, sr = self.last
            noisy, info = degrade_se(resample(wav, sr, self.se_sr), rng, rec, self.rooms)
            out["cond_wav"] = resample(noisy, self.se_sr, SSL_SR)
            out["info"] = {k: info[k] for k in ("snr_db", "noise", "rt60")}
        elif cfg.task in ("vc", "tse"):
            partner = self.partners[it.uid]
            if phones is not None:
                phones = self.phones(self.items[partner["prompt"]], "prompt") + phones
                out["phones"] = phones
            p16, p24, n = self.prompt(partner["prompt"], rng, whole=phones is not None)
            if cfg.task == "vc":
                src, info = perturb_timbre(w16, SSL_SR, rng, rec)
            else:
                i16, _, _ = self.load(self.items[partner["interferer"]], "interferer")
                src, info = mix_tse(w16, i16, rng, rec)
                info = {"snr_db": info["snr_db"], "interferer": partner["interferer"]}
            out["prompt16"], out["prompt24"] = p16, p24
            out["cond_wav"] = np.concatenate([p16, src]).astype(np.float32)
            out["info"] = dict(info, prompt=partner["prompt"], prompt_s=round(n * 0.02, 2))
        return out

    def prompt(self, uid: str, rng: np.random.Generator, whole: bool = False):
        """(16 kHz, codec-rate or None, frames) of the prompt utterance ``uid``: a random
        ``recipe.prompt_s`` stretch cut on 20 ms frames, or all of it (``whole``)."""
        p16, p24, _ = self.load(self.items[uid], "prompt")
        start, n = (0, len(p16) // 320) if whole else crop_prompt(len(p16), SSL_SR, rng, self.cfg.recipe.prompt_s)
        if n < 2:
            raise _Skip("prompt too short")
        if p24 is not None:
            hop = self.ac_sr // 50
            p24 = p24[start * hop : (start + n) * hop]
        return p16[start * 320 : (start + n) * 320], p24, n

    # ---- tokenization
    @torch.no_grad()
    def features(self, wavs: List[np.ndarray]) -> List[torch.Tensor]:
        """SSL features (T, C) per waveform, in batches of cfg.batch_size."""
        feats: List[torch.Tensor] = []
        bs = max(1, self.cfg.batch_size)
        for s in range(0, len(wavs), bs):
            feats.extend(f.cpu() for f in self.metis.ssl_features(wavs[s : s + bs]))
        return feats

    def batch_features(self, wavs: List[np.ndarray]) -> List[torch.Tensor]:
        """:meth:`features` computed in length order (batches pad little), returned in input order."""
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
        got = self.features([wavs[i] for i in order])
        feats: List[Optional[torch.Tensor]] = [None] * len(wavs)
        for k, i in enumerate(order):
            feats[i] = got[k]
        return feats

    @torch.no_grad()
    def ids(self, feats: torch.Tensor) -> torch.Tensor:
        codec = self.semantic_codec
        p = next(codec.parameters())
        ids, _ = codec.quantize(feats[None].to(p.device, p.dtype))
        return ids[0].cpu()

    def tokenize(self, plans: List[dict]) -> List[Tuple[dict, Optional[dict], Optional[str]]]:
        """(plan, utterance dict or None, skip reason or None) per plan; a failing batch is
        retried item by item so that one bad item does not take its neighbours with it."""
        try:
            return self._tokenize(plans)
        except Exception as e:  # noqa: BLE001
            if len(plans) == 1:
                return [(plans[0], None, f"tokenizer error ({type(e).__name__})")]
            out = []
            for p in plans:
                out.extend(self.tokenize([p]))
            return out

    def plan_features(self, plans: List[dict]) -> Tuple[List[torch.Tensor], List[Dict[str, int]]]:
        """SSL features of every waveform of the plans (the clean target ``w16`` and, when
        present, ``prompt16`` and ``cond_wav``) in one batched pass, and per plan the index of
        each of its waveforms' features (keys ``clean``, ``prompt``, ``cond``)."""
        wavs, slots = [], []
        for p in plans:
            s = {}
            for key, name in (("w16", "clean"), ("prompt16", "prompt"), ("cond_wav", "cond")):
                if key in p:
                    s[name] = len(wavs)
                    wavs.append(p[key])
            slots.append(s)
        return self.batch_features(wavs), slots

    def _tokenize(self, plans: List[dict]):
        cfg = self.cfg
        feats, slots = self.plan_features(plans)
        dt = COND_DTYPES[cfg.cond_dtype]
        results = []
        for p, s in zip(plans, slots):
            it: Item = p["item"]
            sem = self.ids(feats[s["clean"]])
            T = int(sem.shape[0])
            u = {"id": it.uid}
            ac = None
            if cfg.wants_acoustic:
                ac = self.metis.acoustic_ids(p["w24"], T).cpu()
            if "prompt" in s:
                psem = self.ids(feats[s["prompt"]])
                Tp = int(psem.shape[0])
                c = feats[s["cond"]]
                cond = torch.cat([_fit(c[:Tp], Tp), _fit(c[Tp:], T)]) if c.shape[0] > Tp else None
                if cond is None:
                    results.append((p, None, "condition shorter than the prompt"))
                    continue
                u["semantic"] = torch.cat([psem, sem])
                u["prompt_len"] = torch.tensor([Tp], dtype=torch.int64)
                u["cond"] = cond.to(dt)
                if ac is not None:
                    u["acoustic"] = torch.cat([self.metis.acoustic_ids(p["prompt24"], Tp).cpu(), ac])
            else:
                u["semantic"] = sem
                if "cond" in s:
                    u["cond"] = _fit(feats[s["cond"]], T).to(dt)
                if ac is not None:
                    u["acoustic"] = ac
            if p.get("phones") is not None:
                u["phones"] = torch.tensor(p["phones"], dtype=torch.long)
            if "cond" in u and not bool(torch.isfinite(u["cond"].float()).all()):
                results.append((p, None, "non-finite condition"))
                continue
            results.append((p, u, None))
        return results

    def write_shard(self, path: Path, utts: Sequence[dict]) -> None:
        from ..checkpoint import save_weights
        from .data import SHARD_FORMAT

        save_weights(_tensors(utts), path, metadata=SHARD_FORMAT)


def _tensors(utts: Sequence[dict]) -> Dict[str, torch.Tensor]:
    tensors = {}
    for u in utts:
        for k, v in u.items():
            if k == "id":
                continue
            if k in ("semantic", "acoustic", "phones"):
                v = _int_ids(v)
            tensors[f"{u['id']}/{k}"] = v
    return tensors
