"""Build a corpus: plan -> jobs (parallel, resumable) -> manifests, test sets, summary.

Output layout (all paths in a JSONL file are relative to that file's folder)::

    OUT/train.jsonl dev.jsonl test.jsonl   clean utterances, one JSON object a line
    OUT/wavs/<split>/<speaker>/<id>.wav    24 kHz mono PCM-16
    OUT/videos/<split>/<speaker>/<id>.mp4  silent 25 fps talking faces (with l2s)
    OUT/alignments/<split>.jsonl           {"id", "phones": [[label, start_s, end_s], ...]}
    OUT/noise/train.jsonl, rirs/train.jsonl  training noise clips and room responses (with se)
    OUT/tests/<task>.jsonl, tests/<task>/  the fixed test sets and their mixtures
    OUT/faces.json                         per-speaker face parameters and mouth boxes
    OUT/summary.json                       hours, utterances, speakers per split, ...

Resuming: a ledger (``OUT/.build/ledger.jsonl``) records each finished job's content key
and outputs; a file is trusted only if the ledger's latest entry for it has the current
job's key. Every file is written to a temporary name and renamed, and manifests are
written last, so an interrupted build never leaves a half-written file that a later run
or a reader would take for finished.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from .config import FPS, SAMPLE_RATE, CorpusConfig
from .jobs import job_key, run_job
from .plan import Plan, TestItem, Utt, make_plan
from .voices import HELD_OUT_PERSON, TEST_PERTURBATIONS, VOICES, Speaker

__all__ = ["build_corpus", "write_json_atomic", "write_jsonl_atomic"]


# --------------------------------------------------------------------------- atomic writes
def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        from .jobs import _public

        _public(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_jsonl_atomic(path: Path, rows: Iterable[Dict[str, object]]) -> None:
    _write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def write_json_atomic(path: Path, obj: object) -> None:
    _write_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


# --------------------------------------------------------------------------- ledger
class Ledger:
    """Append-only record of finished jobs: one ``{"key", "outputs", "meta"}`` a line."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / ".build" / "ledger.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.by_key: Dict[str, Dict[str, object]] = {}
        self.owner: Dict[str, str] = {}  # output path -> key of the job that last wrote it
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run
                self._add(rec)
        self._fh = open(self.path, "a")
        if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            self._fh.write("\n")  # end a torn last line so the next record starts clean

    def _add(self, rec: Dict[str, object]) -> None:
        self.by_key[rec["key"]] = rec
        for o in rec["outputs"]:
            self.owner[o] = rec["key"]

    def done(self, key: str, outs: List[str]) -> bool:
        return key in self.by_key and all(self.owner.get(o) == key and (self.out_dir / o).exists() for o in outs)

    def record(self, key: str, outs: List[str], meta: Dict[str, object]) -> None:
        rec = {"key": key, "outputs": outs, "meta": meta}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._add(rec)

    def meta(self, key: str) -> Dict[str, object]:
        return self.by_key[key]["meta"]

    def close(self) -> None:
        self._fh.close()


def _run(ledger: Ledger, specs: List[Dict[str, object]], jobs: int, desc: str) -> Dict[str, Dict[str, object]]:
    """Run the not-yet-finished ``specs``; returns key -> meta for all of them."""
    from tqdm import tqdm

    keyed = [(job_key(s), s) for s in specs]
    pending = [(k, s) for k, s in keyed if not ledger.done(k, s["outputs"])]
    unique = list({k: s for k, s in pending}.values())
    bar = tqdm(total=len(keyed), initial=len(keyed) - len(unique), desc=desc, unit="job", file=sys.stderr, dynamic_ncols=True, disable=None)
    try:
        if jobs <= 1 or len(unique) <= 1:
            for spec in unique:
                ledger.record(job_key(spec), spec["outputs"], run_job(str(ledger.out_dir), spec))
                bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
                futures = {ex.submit(run_job, str(ledger.out_dir), spec): spec for spec in unique}
                try:
                    from concurrent.futures import as_completed

                    for fut in as_completed(futures):
                        spec = futures[fut]
                        ledger.record(job_key(spec), spec["outputs"], fut.result())
                        bar.update(1)
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    return {k: ledger.meta(k) for k, _ in keyed}


# --------------------------------------------------------------------------- specs
def _utt_spec(u: Utt) -> Dict[str, object]:
    p = u.speaker.perturbation
    return {"kind": "utt", "voice": u.speaker.voice.key, "perturbation": [p.pitch, p.vtl, p.tempo], "text": u.text, "outputs": [u.path]}


def _video_spec(u: Utt, meta: Dict[str, object], seed: int) -> Dict[str, object]:
    return {
        "kind": "video", "speaker": u.speaker.name, "seed": seed, "render_seed": int(job_key({"id": u.id, "seed": seed}), 16) % 2**32,
        "phones": meta["phones"], "duration": meta["duration"], "outputs": [u.video_path],
    }


def _utt_row(u: Utt, meta: Dict[str, object], rel: str = "", video: bool = False,
             faces: Optional[Dict[str, dict]] = None) -> Dict[str, object]:
    row = {
        "id": u.id, "audio": rel + u.path, "text": u.text, "speaker": u.speaker.name, "voice": u.speaker.voice.label,
        "perturbation": u.speaker.perturbation.to_dict(), "duration": meta["duration"], "split": u.split,
        "sample_rate": SAMPLE_RATE, "person": u.speaker.voice.person,
    }
    if video:
        row["video"] = rel + u.video_path
        if faces and u.speaker.name in faces:  # [x0, y0, x1, y1] pixels holding the mouth in every frame
            row["mouth_box"] = faces[u.speaker.name]["mouth_box"]
    return row


def _zero_shot(spk: Speaker) -> str:
    return "held-out voice" if spk.voice.held_out else "held-out perturbation"


# --------------------------------------------------------------------------- the build
def build_corpus(cfg: CorpusConfig, log=print) -> Dict[str, object]:
    """Make (or finish) the corpus described by ``cfg``; returns the summary dict."""
    from .synth import check_tools

    cfg.validate()
    check_tools(need_video="l2s" in cfg.tasks)
    t0 = time.time()
    out = cfg.out_dir
    plan = make_plan(cfg)
    ledger = Ledger(out)
    try:
        summary = _build(plan, ledger, cfg, log)
    finally:
        ledger.close()
    summary["build_seconds"] = round(time.time() - t0, 1)
    write_json_atomic(out / "summary.json", summary)
    log(_format_summary(summary))
    return summary


def _build(plan: Plan, ledger: Ledger, cfg: CorpusConfig, log) -> Dict[str, object]:
    out, seed = cfg.out_dir, cfg.seed
    test_utts = plan.test_utts()
    all_utts = plan.train + plan.dev + test_utts
    log(f"planned {len(plan.train)} train, {len(plan.dev)} dev and {len(test_utts)} test utterances "
        f"(text: {', '.join(plan.sources)}); writing to {out}")
    specs = {u.id: _utt_spec(u) for u in all_utts}
    metas = _run(ledger, list(specs.values()), cfg.jobs, "speech")
    meta = {uid: metas[job_key(s)] for uid, s in specs.items()}

    # stage 2: everything made from the clean speech
    stage2: List[Dict[str, object]] = []
    video = "l2s" in cfg.tasks
    if video:
        l2s_refs = [it.utts["reference"] for it in plan.tests.get("l2s", [])]
        for u in plan.train + plan.dev + l2s_refs:
            stage2.append(_video_spec(u, meta[u.id], seed))
    for entry in plan.noise_bank:
        stage2.append({"kind": "noise", "babble_pool": "train", **{k: v for k, v in entry.items() if k != "id"}, "outputs": [f"noise/train/{entry['id']}.wav"]})
    for room in plan.rooms:
        stage2.append({"kind": "rir", "room": {k: v for k, v in room.items() if k != "id"}, "outputs": [f"rirs/train/{room['id']}.wav"]})
    item_specs: Dict[str, Dict[str, object]] = {}
    for item in plan.tests.get("tse", []):
        t, i = item.utts["target"], item.utts["interferer"]
        item_specs[item.id] = {
            "kind": "tse", "target": t.path, "interferer": i.path, "inputs": [job_key(specs[t.id]), job_key(specs[i.id])],
            "snr_db": item.details["snr_db"], "mix_seed": item.details["mix_seed"],
            "outputs": [f"tests/tse/{item.id}_mix.wav", f"tests/tse/{item.id}_ref.wav"],
        }
    for item in plan.tests.get("se", []):
        t = item.utts["target"]
        d = item.details
        item_specs[item.id] = {
            "kind": "se", "target": t.path, "inputs": [job_key(specs[t.id])], "snr_db": d["snr_db"], "noise_type": d["noise_type"],
            "noise_seed": d["noise_seed"], "room": d["room"], "babble_pool": "test", "babble_texts": d.get("babble_texts", []),
            "outputs": [f"tests/se/{item.id}_noisy.wav", f"tests/se/{item.id}_ref.wav"],
        }
    stage2 += list(item_specs.values())
    metas2 = _run(ledger, stage2, cfg.jobs, "noise, rooms, mixtures, videos") if stage2 else {}

    # manifests
    from .face import face_for

    speakers = sorted({u.speaker.name for u in all_utts})
    faces = {s: dict(face_for(s, seed).to_dict(), mouth_box=face_for(s, seed).mouth_box()) for s in speakers} if video else {}
    for split, utts in (("train", plan.train), ("dev", plan.dev), ("test", test_utts)):
        with_video = video and split != "test"
        write_jsonl_atomic(out / f"{split}.jsonl", [_utt_row(u, meta[u.id], video=with_video, faces=faces) for u in utts])
        write_jsonl_atomic(out / "alignments" / f"{split}.jsonl", [{"id": u.id, "phones": meta[u.id]["phones"]} for u in utts])
    if plan.noise_bank:
        write_jsonl_atomic(out / "noise" / "train.jsonl", [
            {"id": e["id"], "audio": f"train/{e['id']}.wav", "noise_type": e["noise_type"], "duration": e["seconds"], "split": "train", "sample_rate": SAMPLE_RATE}
            for e in plan.noise_bank
        ])
        write_jsonl_atomic(out / "rirs" / "train.jsonl", [
            {"id": r["id"], "audio": f"train/{r['id']}.wav", "split": "train", "sample_rate": SAMPLE_RATE, "room": {k: v for k, v in r.items() if k != "id"}}
            for r in plan.rooms
        ])
    if video:
        write_json_atomic(out / "faces.json", faces)
    for task, items in plan.tests.items():
        rows = [_test_row(it, meta, metas2, item_specs, faces) for it in items]
        write_jsonl_atomic(out / "tests" / f"{task}.jsonl", rows)
    return _summary(plan, meta, cfg)


def _test_row(item: TestItem, meta, metas2, item_specs, faces) -> Dict[str, object]:
    """One line of tests/<task>.jsonl (paths relative to tests/)."""
    rel = "../"
    spk = item.speaker
    u = item.utts
    row: Dict[str, object] = {"id": item.id, "task": item.task}
    if item.task in ("tse", "se"):
        s = item_specs[item.id]
        row["input"] = s["outputs"][0][len("tests/"):]
        row["reference"] = s["outputs"][1][len("tests/"):]
        target = u["target"]
    elif item.task == "vc":
        row["input"] = rel + u["source"].path
        target = u["reference"]
    elif item.task == "l2s":
        row["input"] = rel + u["reference"].video_path
        target = u["reference"]
    else:
        target = u["reference"]
    if item.task != "se":
        row["prompt"] = rel + u["prompt"].path
        row["prompt_text"] = u["prompt"].text
    row["text"] = target.text
    if "reference" not in row:
        row["reference"] = rel + target.path
    row.update({
        "speaker": spk.name, "voice": spk.voice.label, "perturbation": spk.perturbation.to_dict(), "zero_shot": _zero_shot(spk),
        "duration": meta[target.id]["duration"], "sample_rate": SAMPLE_RATE,
    })
    if item.task == "vc":
        row["source_speaker"] = u["source"].speaker.name
    if item.task == "tse":
        row["snr_db"] = item.details["snr_db"]
        row["interferer"] = u["interferer"].speaker.name
        row["interferer_text"] = u["interferer"].text
    if item.task == "se":
        d = item.details
        row.update({"snr_db": d["snr_db"], "noise_type": d["noise_type"], "noise_seen": d["noise_seen"], "room": d["room"]})
    if item.task == "l2s":
        from .face import frame_count

        row.update({"fps": FPS, "n_frames": frame_count(meta[target.id]["duration"]), "mouth_box": faces[spk.name]["mouth_box"]})
    return row


def _split_stats(utts: List[Utt], meta) -> Dict[str, object]:
    secs = sum(meta[u.id]["duration"] for u in utts)
    return {
        "utterances": len(utts), "hours": round(secs / 3600, 4), "minutes": round(secs / 60, 2),
        "speakers": len({u.speaker.name for u in utts}), "voices": len({u.speaker.voice.key for u in utts}),
        "persons": sorted({u.speaker.voice.person for u in utts if not u.speaker.voice.engine == "espeak"}),
    }


def _summary(plan: Plan, meta, cfg: CorpusConfig) -> Dict[str, object]:
    from .noise import TEST_ONLY_NOISE_TYPES

    return {
        "seed": cfg.seed, "minutes_requested": cfg.minutes, "tasks": cfg.tasks, "test_items": cfg.test_items, "jobs": cfg.jobs,
        "sample_rate": SAMPLE_RATE, "text_sources": plan.sources,
        "splits": {"train": _split_stats(plan.train, meta), "dev": _split_stats(plan.dev, meta), "test": _split_stats(plan.test_utts(), meta)},
        "test_sets": {task: len(items) for task, items in plan.tests.items()},
        "noise_clips": len(plan.noise_bank), "rooms": len(plan.rooms),
        "held_out": {
            "voices": [v.label for v in VOICES if v.held_out], "person": HELD_OUT_PERSON,
            "perturbations": [p.name for p in TEST_PERTURBATIONS], "noise_types": list(TEST_ONLY_NOISE_TYPES),
        },
    }


def _format_summary(s: Dict[str, object]) -> str:
    lines = [f"{'split':<6} {'hours':>8} {'utts':>7} {'speakers':>9}"]
    for split, st in s["splits"].items():
        lines.append(f"{split:<6} {st['hours']:>8.3f} {st['utterances']:>7} {st['speakers']:>9}")
    if s["test_sets"]:
        lines.append("test sets: " + ", ".join(f"{t} {n}" for t, n in s["test_sets"].items()))
    lines.append(f"built in {s.get('build_seconds', 0):.0f} s")
    return "\n".join(lines)
