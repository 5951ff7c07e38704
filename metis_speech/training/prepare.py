"""Data preparation: audio -> TokenDataset shards (``metis prepare``), resumably.

Input (:func:`list_items`): a folder of audio files (searched recursively; the first
sub-folder is the speaker, a ``.txt``/``.lab`` file beside the audio its transcript), a JSONL
manifest (``audio`` + optional ``id``, ``text``, ``speaker``, ``language``, ``duration``;
relative paths are relative to the manifest), or WebDataset-style tar shards in the Emilia
layout (``<key>.mp3|wav|flac`` + ``<key>.json`` per utterance; a ``.tar`` file, a folder of
them, or a glob).

Tokenizers: a model source as :meth:`metis_speech.Metis.from_pretrained` takes it (bundle
directory, official directory, ``"hub"``, ``"random:tiny"``). Per kept utterance the shard
holds ``semantic`` (T,), ``acoustic`` (T, Q) unless ``acoustic=False``, ``phones`` (Np,)
for TTS or with ``phones=True``, and the task's ``cond`` (T, C) / ``prompt_len`` (1,) (see
:mod:`.task_data`). Ids are stored as int16 when they fit, ``cond`` as float16 by default.
Tasks ``visual`` (visual-encoder pairs) and ``l2s`` read the manifest's ``video`` too; they
are built by :mod:`.prepare_video`. Listing, ledger and summary live in :mod:`.prepare_io`.

Output folder::

    shard-00000.safetensors   TokenDataset shard (training/data.py), written atomically
    shard-00000.json          per-item details (seconds, speaker, SNR, prompt, ...)
    ledger.jsonl              one line per finished shard: the commit point of a shard
    prepare.json              settings + input fingerprint (a rerun must match them)
    summary.json              hours, utterances, speakers, skipped files and why

The input is cut into fixed shards of ``shard_size`` items in input order. A shard counts
as done only once its ledger line is written (after the shard and its .json); a rerun skips
done shards, removes stale temp files and redoes everything else, so a killed run continues
where it stopped and gives the same shards as an uninterrupted one. ``part=(k, n)`` lets n
processes (one per GPU or machine) share one output folder: process k does shards i with
i % n == k (stale temp files are then left for a later single-process rerun to remove). Every random choice is
a function of (seed, utterance id). Bad items are skipped with a counted reason, never raised.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import AudioError, MetisError
from .prepare_io import (  # noqa: F401 - public names re-exported from here
    AUDIO_EXTS,
    AudioReader,
    Item,
    append_ledger,
    check_settings,
    clean_temps,
    fingerprint,
    format_summary,
    list_items,
    read_ledger,
    shard_name,
    summarize,
    write_json_atomic,
)
from .task_data import TASKS, TaskRecipe, crop_prompt, degrade_se, item_rng, mix_tse, pair_items, perturb_timbre, room_bank

__all__ = ["PrepareConfig", "Item", "list_items", "prepare", "read_ledger", "summarize", "format_summary"]

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


# ------------------------------------------------------------------------------ run
def _phone_vocab_fingerprint(cfg: PrepareConfig) -> str:
    """Fingerprint of the phone vocabulary the tokenizer of ``cfg.model`` / ``cfg.phone_vocab`` uses."""
    from ..pipeline import Metis

    m = Metis.from_pretrained("tts", cfg.model, device="cpu", lazy=True, phone_vocab=cfg.phone_vocab)
    return m._net("phones").vocab.fingerprint()


def prepare(cfg: PrepareConfig, stop_after: Optional[int] = None, log=print) -> dict:
    """Run (or resume) a preparation; returns the summary (also saved as ``summary.json``).

    ``stop_after``: stop after writing that many shards in this call (a simulated kill;
    the summary then has ``complete: false``).
    """
    if cfg.task not in TASKS:
        raise MetisError(f"unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
    if cfg.shard_items < 1:
        raise MetisError("shard_size must be at least 1")
    if not (0 <= cfg.min_duration < cfg.max_duration):
        raise MetisError("need 0 <= min_duration < max_duration")
    k, n_parts = (int(x) for x in cfg.part)
    if not (n_parts >= 1 and 0 <= k < n_parts):
        raise MetisError(f"part {k}/{n_parts}: need 0 <= k < n")
    if cfg.visual is not None and cfg.task != "l2s":
        raise MetisError("--visual (a visual encoder) is only used by --task l2s")
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    items, list_skips = list_items(cfg.input)
    if not items and not list_skips:
        raise MetisError(f"{cfg.input}: no audio found")
    video_task = cfg.task in VIDEO_TASKS
    if video_task:
        from .prepare_video import VideoWorker as worker_cls, check_video_config
    else:
        worker_cls = _Worker
    settings = dict(cfg.content(), input=str(cfg.input), items=len(items), fingerprint=fingerprint(items))
    if cfg.wants_phones:  # phone ids mean nothing without their vocabulary (bundle lineage checks it)
        settings["phone_vocab"] = _phone_vocab_fingerprint(cfg)
    if video_task:
        settings.update(check_video_config(cfg, items))
    check_settings(out, settings)
    if n_parts == 1:  # other parts may be writing right now: their temp files are not stale
        clean_temps(out)
    done = read_ledger(out)
    size = cfg.shard_items
    n_shards = max(1, -(-len(items) // size))
    by_id = {it.uid: it for it in items}
    # duration known from the manifest: filter before pairing, so nobody is paired with a
    # file that will be dropped anyway
    pre_skip: Dict[str, str] = {}
    for it in items:
        if it.duration is not None and it.duration < cfg.min_duration:
            pre_skip[it.uid] = "too short"
        elif it.duration is not None and it.duration > cfg.max_duration:
            pre_skip[it.uid] = "too long"
    usable = [it for it in items if it.uid not in pre_skip]
    partners, pair_skip = pair_items([it.uid for it in usable], [it.speaker for it in usable], cfg.task, cfg.seed)
    pre_skip.update(pair_skip)

    todo = [i for i in range(k, n_shards, n_parts)
            if not (i in done and (done[i]["file"] is None or (out / done[i]["file"]).is_file()))]
    run_seconds = 0.0
    written = 0
    if todo and items:
        worker = worker_cls(cfg, by_id, partners)
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(len(items[i * size : (i + 1) * size]) for i in todo),
                       desc=f"prepare {cfg.task}", unit="utt", dynamic_ncols=True)
        try:
            for si in todo:
                if stop_after is not None and written >= stop_after:
                    break
                chunk = items[si * size : (si + 1) * size]
                rec = _run_shard(worker, cfg, out, si, chunk, pre_skip, bar)
                if si == 0:  # listing-time skips are counted once, with the first shard
                    for uid, audio, reason in list_skips:
                        rec["skipped"][reason] = rec["skipped"].get(reason, 0) + 1
                        rec["skipped_items"].append([uid, audio, reason])
                append_ledger(out, rec)
                run_seconds += rec["seconds"]
                written += 1
        finally:
            worker.reader.close()
            if bar is not None:
                bar.close()
    wall = time.perf_counter() - t0
    summary = summarize(out, n_shards)
    summary.update(
        task=cfg.task, model=str(cfg.model), input=str(cfg.input),
        this_run={"shards": written, "seconds_of_audio": round(run_seconds, 2), "wall_s": round(wall, 2),
                  "audio_s_per_s": round(run_seconds / wall, 3) if wall > 0 else None},
    )
    write_json_atomic(out / "summary.json", summary)
    if log is not None:
        log(format_summary(summary))
    return summary


def _run_shard(worker: _Worker, cfg: PrepareConfig, out: Path, si: int, chunk: Sequence[Item],
               pre_skip: Dict[str, str], bar) -> dict:
    skipped: collections.Counter = collections.Counter()
    skipped_items: List[list] = []

    def skip(it: Item, reason: str, path: Optional[str] = None):
        skipped[reason] += 1
        skipped_items.append([it.uid, path or it.audio, reason])

    utts, metas = [], []
    group = max(1, cfg.batch_size * 4)  # waveforms of one group only are held in memory
    for g in range(0, len(chunk), group):
        plans: List[dict] = []
        for it in chunk[g : g + group]:
            try:
                if it.uid in pre_skip:
                    raise _Skip(pre_skip[it.uid])
                plans.append(worker.plan(it))
            except _Skip as e:
                skip(it, str(e), e.path)
                if bar is not None:
                    bar.update(1)
            except Exception as e:  # noqa: BLE001 - never crash mid-run on one item
                skip(it, f"error ({type(e).__name__})")
                if bar is not None:
                    bar.update(1)
        for p, u, reason in worker.tokenize(plans) if plans else []:
            it = p["item"]
            if u is None:
                skip(it, reason)
            else:
                utts.append(u)
                m = {"id": it.uid, "audio": it.audio, "speaker": it.speaker, "seconds": round(p["seconds"], 3),
                     "frames": int(u["semantic"].shape[0])}
                if "prompt_len" in u:
                    m["prompt_len"] = int(u["prompt_len"][0])
                m.update(p["info"])
                metas.append(m)
            if bar is not None:
                bar.update(1)
    name = shard_name(si)
    file = None
    if utts:
        worker.write_shard(out / f"{name}.safetensors", utts)
        file = f"{name}.safetensors"
    elif (out / f"{name}.safetensors").exists():  # left by an earlier, killed attempt
        (out / f"{name}.safetensors").unlink()
    write_json_atomic(out / f"{name}.json", {"shard": si, "items": metas})
    return {
        "shard": si, "file": file, "n_items": len(chunk), "kept": len(utts),
        "seconds": round(sum(m["seconds"] for m in metas), 3), "frames": sum(m["frames"] for m in metas),
        "speakers": sorted({m["speaker"] for m in metas if m["speaker"]}),
        "skipped": dict(skipped), "skipped_items": skipped_items,
    }


