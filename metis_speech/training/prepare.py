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
are built by :mod:`.prepare_video`. Listing, ledger and summary live in :mod:`.prepare_io`, the
settings and the audio worker in :mod:`.prepare_worker` (below both this driver and
:mod:`.prepare_video`).

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
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import MetisError
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
from .prepare_video import VideoWorker, check_video_config
from .prepare_worker import COND_DTYPES, SILENT_RMS, SSL_SR, VIDEO_TASKS, PrepareConfig, _Skip, _Worker  # noqa: F401
from .task_data import TASKS, TaskRecipe, pair_items  # noqa: F401 - TaskRecipe re-exported with PrepareConfig

__all__ = ["PrepareConfig", "Item", "list_items", "prepare", "read_ledger", "summarize", "format_summary"]


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
    worker_cls = VideoWorker if video_task else _Worker
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


