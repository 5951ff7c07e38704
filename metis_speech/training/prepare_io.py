"""Input listing, the shard ledger and the summary of ``metis prepare`` (see :mod:`.prepare`).

:func:`list_items` reads a folder of audio files, a JSONL manifest or tar shards into
:class:`Item` s; :class:`AudioReader` reads one item's audio (file or tar member);
:func:`read_ledger` / :func:`append_ledger` / :func:`summarize` keep the resumable state
of an output folder (one ledger line per finished shard).
"""

from __future__ import annotations

import collections
import glob as _glob
import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import AudioError, MetisError

__all__ = ["Item", "list_items", "AudioReader", "read_ledger", "append_ledger", "write_json_atomic", "shard_name",
           "fingerprint", "check_settings", "clean_temps", "summarize", "format_summary", "AUDIO_EXTS"]

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
MAX_EXAMPLES = 20  # skipped files listed per reason in the summary

@dataclass
class Item:
    """One input utterance. ``audio``: a file path or ``tar://<tar path>#<member>``."""

    uid: str
    audio: str
    text: Optional[str] = None
    speaker: Optional[str] = None
    language: Optional[str] = None
    duration: Optional[float] = None
    video: Optional[str] = None  # manifest ``video``: a silent video of the speaking face (L2S)
    mouth_box: Optional[list] = None  # manifest ``mouth_box``: [x0, y0, x1, y1] pixels (as make-corpus writes it)
    # manifest ``phone_ids`` + ``phone_vocab`` (that vocabulary's fingerprint): phones computed
    # beforehand (``metis prepare`` then needs no G2P back end, e.g. on a machine without espeak-ng)
    phone_ids: Optional[list] = None
    phone_vocab: Optional[str] = None



# ------------------------------------------------------------------------------ input
def _safe_id(s: str) -> str:
    return str(s).strip().replace("\\", "/").strip("/").replace("/", "__")


def _read_sidecar_text(audio: Path) -> Optional[str]:
    for ext in (".txt", ".lab", ".normalized.txt", ".original.txt"):
        p = audio.with_suffix(ext)
        if p.is_file():
            t = p.read_text(errors="replace").strip()
            return t or None
    return None


def _num(x) -> Optional[float]:
    try:
        v = float(x)
        return v if np.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def _str(x) -> Optional[str]:
    return None if x is None or str(x).strip() == "" else str(x)


def _tar_paths(src: str) -> List[Path]:
    p = Path(src)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(p.glob("*.tar"))
    return sorted(Path(x) for x in _glob.glob(src))


def list_items(source: Union[str, os.PathLike]) -> Tuple[List[Item], List[Tuple[str, str, str]]]:
    """Items of a folder / JSONL manifest / tar shards, and listing-time skips
    ``(id, audio, reason)`` (unreadable manifest lines, duplicate ids, tar keys without audio)."""
    src = str(source)
    p = Path(src)
    items: List[Item] = []
    skips: List[Tuple[str, str, str]] = []
    if p.is_file() and p.suffix in (".jsonl", ".json"):
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio = Path(str(row["audio"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                skips.append((f"line{n}", str(p), "bad manifest line"))
                continue
            if not audio.is_absolute():
                audio = p.parent / audio
            uid = _safe_id(row.get("id") or str(Path(str(row["audio"])).with_suffix("")))
            video = _str(row.get("video"))
            if video is not None and not Path(video).is_absolute():
                video = str(p.parent / video)
            items.append(Item(uid, str(audio), _str(row.get("text")), _str(row.get("speaker")),
                              _str(row.get("language")), _num(row.get("duration")), video, row.get("mouth_box"),
                              row.get("phone_ids"), _str(row.get("phone_vocab"))))
    elif p.is_dir() and not any(p.glob("*.tar")):
        for f in sorted(x for x in p.rglob("*") if x.suffix.lower() in AUDIO_EXTS and x.is_file()):
            rel = f.relative_to(p)
            spk = rel.parts[0] if len(rel.parts) > 1 else None
            items.append(Item(_safe_id(str(rel.with_suffix(""))), str(f), _read_sidecar_text(f), spk))
    else:
        tars = _tar_paths(src)
        if not tars:
            raise MetisError(f"{src}: not a folder of audio files, a .jsonl manifest or tar shards")
        for t in tars:
            try:
                with tarfile.open(t) as tf:
                    groups: Dict[str, dict] = collections.defaultdict(dict)
                    for m in tf.getmembers():
                        if not m.isfile():
                            continue
                        key, ext = os.path.splitext(m.name)
                        if ext.lower() == ".json":
                            groups[key]["json"] = m
                        elif ext.lower() in AUDIO_EXTS:
                            groups[key]["audio"] = m
                    for key in sorted(groups):
                        g = groups[key]
                        meta = {}
                        if "json" in g:
                            try:
                                meta = json.loads(tf.extractfile(g["json"]).read().decode("utf-8", "replace"))
                            except (json.JSONDecodeError, AttributeError):
                                meta = {}
                        uid = _safe_id(meta.get("id") or key)
                        if "audio" not in g:
                            skips.append((uid, f"tar://{t}#{key}", "no audio in tar"))
                            continue
                        items.append(Item(uid, f"tar://{t}#{g['audio'].name}", _str(meta.get("text")),
                                          _str(meta.get("speaker")), _str(meta.get("language")), _num(meta.get("duration"))))
            except (tarfile.TarError, OSError) as e:
                skips.append((t.name, str(t), f"unreadable tar ({type(e).__name__})"))
    seen, unique = set(), []
    for it in items:
        if not it.uid:
            skips.append((it.uid, it.audio, "empty id"))
        elif it.uid in seen:
            skips.append((it.uid, it.audio, "duplicate id"))
        else:
            seen.add(it.uid)
            unique.append(it)
    return unique, skips


class AudioReader:
    """Reads files and tar members (one open tar kept) as mono float32 at the native rate."""

    def __init__(self):
        self._tar: Optional[Tuple[str, tarfile.TarFile]] = None

    def close(self):
        if self._tar is not None:
            self._tar[1].close()
            self._tar = None

    def read(self, ref: str) -> Tuple[np.ndarray, int]:
        from ..audio import load_audio, to_mono

        if not ref.startswith("tar://"):
            return load_audio(ref)
        tpath, _, member = ref[len("tar://"):].rpartition("#")
        if self._tar is None or self._tar[0] != tpath:
            self.close()
            self._tar = (tpath, tarfile.open(tpath))
        try:
            data = self._tar[1].extractfile(member).read()
        except (KeyError, AttributeError, tarfile.TarError, OSError) as e:
            raise AudioError(f"{ref}: cannot read from the tar ({type(e).__name__})") from None
        import soundfile as sf

        try:
            wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
            wav = to_mono(wav)
        except Exception:  # noqa: BLE001 - let ffmpeg try (mp3 on old libsndfile, opus, ...)
            fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(member)[1])
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                wav, sr = load_audio(tmp)
            finally:
                os.unlink(tmp)
        if wav.size == 0 or not np.all(np.isfinite(wav)):
            raise AudioError(f"{ref}: empty or non-finite audio")
        return wav, int(sr)


# --------------------------------------------------------------------------- ledger
def read_ledger(out: Union[str, Path]) -> Dict[int, dict]:
    """Finished shards of an output folder: shard index -> ledger record (a cut last line is ignored)."""
    path = Path(out) / "ledger.jsonl"
    done: Dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                done[int(rec["shard"])] = rec
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return done


def append_ledger(out: Path, rec: dict) -> None:
    path = out / "ledger.jsonl"
    # a line cut by a kill would glue onto the next record: start on a fresh line
    lead = ""
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            lead = "" if f.read(1) == b"\n" else "\n"
    with open(path, "a") as f:
        f.write(lead + json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def fingerprint(items: Sequence[Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(f"{it.uid}\x00{it.audio}\x00{it.text}\x00{it.speaker}\n".encode())
        if it.video is not None:  # items without video hash as before (older preparations resume)
            h.update(f"{it.video}\x00{it.mouth_box}\n".encode())
    return h.hexdigest()[:16]


def check_settings(out: Path, settings: dict) -> None:
    path = out / "prepare.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        if old is not None and old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise MetisError(f"{out} holds a preparation with other settings ({', '.join(diff)}); "
                             "rerun with the same settings to resume, or choose another --out")
    write_json_atomic(path, settings)


def clean_temps(out: Path) -> int:
    n = 0
    for p in out.glob(".tmp-*"):
        try:
            p.unlink()
            n += 1
        except OSError:
            pass
    return n



def summarize(out: Union[str, Path], n_shards: Optional[int] = None) -> dict:
    """The summary of an output folder, from its ledger."""
    done = read_ledger(out)
    skipped: collections.Counter = collections.Counter()
    examples: Dict[str, list] = collections.defaultdict(list)
    speakers = set()
    seconds = frames = kept = n_items = 0
    for rec in done.values():
        seconds += rec["seconds"]
        frames += rec["frames"]
        kept += rec["kept"]
        n_items += rec["n_items"]
        speakers.update(rec["speakers"])
        skipped.update(rec["skipped"])
        for uid, audio, reason in rec["skipped_items"]:
            if len(examples[reason]) < MAX_EXAMPLES:
                examples[reason].append(audio)
    return {
        "complete": n_shards is not None and len(done) >= n_shards,
        "shards_done": len(done), "shards_total": n_shards,
        "utterances": kept, "inputs_seen": n_items, "hours": round(seconds / 3600, 4), "seconds": round(seconds, 2),
        "frames": frames, "speakers": len(speakers),
        "skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values()),
        "skipped_examples": dict(examples),
    }


def format_summary(s: dict) -> str:
    lines = [
        f"prepared {s['utterances']} utterances, {s['hours']:.3f} h ({s['seconds']:.1f} s), {s['speakers']} speakers, "
        f"{s['shards_done']}/{s['shards_total']} shards" + ("" if s["complete"] else " (incomplete: rerun to resume)"),
    ]
    r = s.get("this_run")
    if r and r["shards"]:
        lines.append(f"this run: {r['shards']} shards, {r['seconds_of_audio']:.1f} s of audio in {r['wall_s']:.1f} s "
                     f"({r['audio_s_per_s']} s of audio per second)")
    if s["skipped"]:
        lines.append(f"skipped {s['skipped_total']}: " + ", ".join(f"{k} {v}" for k, v in s["skipped"].items()))
        for reason, paths in s.get("skipped_examples", {}).items():
            lines.append(f"  {reason}: {paths[0]}" + (f" (+{s['skipped'][reason] - 1} more)" if s["skipped"][reason] > 1 else ""))
    return "\n".join(lines)
