"""``metis prepare``: folder / JSONL / tar input -> token shards, resumable, with a summary.

Audio: short espeak-ng clips (three speakers) plus a corrupt, a silent and a too-short file;
tokenizers: a tiny random bundle. Ids are noise, but shapes, counts, skips and resumption
are what is checked here.
"""

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from metis_speech.training.prepare import PrepareConfig, list_items, prepare, read_ledger

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

VOICES = ("en+m3", "en+f2", "en-us+m1")
SENTENCES = ("Number one is here.", "The second clip is short.", "A third one ends it.")


def speak(path: Path, voice: str, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", "190", "-w", str(path), text], check=True, capture_output=True)


def make_clips(root: Path, voices=VOICES, per_speaker: int = 3) -> Path:
    """root/<voice>/u<i>.wav + .txt transcripts, one speaker per voice."""
    for v in voices:
        for i in range(per_speaker):
            speak(root / v / f"u{i}.wav", v, SENTENCES[i % len(SENTENCES)])
            (root / v / f"u{i}.txt").write_text(SENTENCES[i % len(SENTENCES)] + "\n")
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, shared_dir):
    from metis_speech.bundle import random_bundle

    return random_bundle(tmp_path_factory.mktemp("bundle"), preset="tiny", tasks=(), phone_vocab=shared_dir / "g2p" / "vocab.json")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = make_clips(tmp_path_factory.mktemp("clips"))
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    sf.write(bad / "silent.wav", np.zeros(32000, dtype=np.float32), 16000)
    t = np.arange(3200) / 16000
    sf.write(bad / "short.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    for name in ("corrupt", "silent", "short"):
        (bad / f"{name}.txt").write_text("Some words.\n")
    speak(root / "untranscribed" / "u0.wav", "en+m3", "Nobody wrote this down.")  # no .txt
    return root


def shard_tensors(out: Path) -> dict:
    from safetensors.torch import load_file

    return {f.name: load_file(str(f)) for f in sorted(out.glob("*.safetensors"))}


def test_prepare_folder_through_cli(clips, bundle, tmp_path):
    from metis_speech.cli import main
    from metis_speech.training.data import TokenDataset

    out = tmp_path / "shards"
    rc = main(["prepare", str(clips), "--out", str(out), "--model", str(bundle), "--phones", "--language", "en",
               "--shard-size", "5", "--quiet", "--threads", "1"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["shards_done"] == s["shards_total"] == 3
    assert s["utterances"] == 9 and s["speakers"] == 3 and s["inputs_seen"] == 13
    assert s["skipped"] == {"corrupt or unreadable audio": 1, "missing transcript": 1, "silent": 1, "too short": 1}
    assert any(p.endswith("corrupt.wav") for p in s["skipped_examples"]["corrupt or unreadable audio"])
    assert 10 < s["seconds"] < 30 and abs(s["hours"] - s["seconds"] / 3600) < 1e-3
    ds = TokenDataset(path=out, require=("semantic", "acoustic", "phones"), vocab=1024, acoustic_vocab=256, phone_vocab=1024)
    assert len(ds) == 9 and not ds.skipped
    u = ds[0]
    T = u["semantic"].shape[0]
    assert 40 < T < 200 and u["acoustic"].shape == (T, 4) and u["phones"].numel() > 5
    meta = json.loads((out / "shard-00000.json").read_text())["items"]
    assert all(abs(m["frames"] / 50 - m["seconds"]) < 0.1 for m in meta)


def test_resume_after_kill_matches_uninterrupted(clips, bundle, tmp_path):
    from metis_speech.training.prepare_cli import main

    args = [str(clips), "--model", str(bundle), "--no-acoustic", "--shard-size", "3", "--quiet", "--threads", "1"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(args + ["--out", str(full)]) == 0
    cfg = PrepareConfig(input=str(clips), out=str(killed), model=str(bundle), acoustic=False, shard_size=3, progress=False)
    s = prepare(cfg, stop_after=2, log=None)
    assert not s["complete"] and s["shards_done"] == 2
    # what a kill mid-way can leave: a temp file, a shard without its ledger line, a cut line
    (killed / ".tmp-abc.safetensors").write_bytes(b"half")
    (killed / "shard-00002.safetensors").write_bytes(b"not a finished shard")
    with open(killed / "ledger.jsonl", "a") as f:
        f.write('{"shard": 3, "file": "shard-0')
    s = prepare(cfg, log=None)
    assert s["complete"] and s["this_run"]["shards"] == 3  # shards 2, 3, 4 redone
    assert not list(killed.glob(".tmp-*"))
    a, b = shard_tensors(full), shard_tensors(killed)
    assert a.keys() == b.keys() and len(a) == 4  # shard 0 holds only the bad files
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert np.array_equal(a[name][k].numpy(), b[name][k].numpy()), (name, k)
    ref = json.loads((full / "summary.json").read_text())
    for k in ("utterances", "seconds", "speakers", "skipped", "frames"):
        assert s[k] == ref[k]
    assert sorted(read_ledger(killed)) == list(range(5))
    # two processes sharing one folder (--part K/N) make the same shards
    parts = tmp_path / "parts"
    for k in (1, 0):
        assert main(args + ["--out", str(parts), "--part", f"{k}/2"]) == 0
    c = shard_tensors(parts)
    assert c.keys() == a.keys() and all(np.array_equal(c[n][k].numpy(), a[n][k].numpy()) for n in a for k in a[n])
    assert json.loads((parts / "summary.json").read_text())["complete"]
    # a rerun of a finished preparation does nothing; other settings are refused
    assert prepare(cfg, log=None)["this_run"]["shards"] == 0
    from metis_speech.errors import MetisError

    with pytest.raises(MetisError, match="other settings"):
        prepare(PrepareConfig(input=str(clips), out=str(killed), model=str(bundle), acoustic=False, shard_size=4), log=None)


def test_manifest_and_tar_inputs(clips, bundle, tmp_path):
    import io

    wavs = sorted(p for p in clips.rglob("*.wav") if p.parent.name in VOICES)
    rows = [{"audio": str(p.relative_to(clips)), "text": p.with_suffix(".txt").read_text().strip(),
             "speaker": p.parent.name, "language": "en"} for p in wavs]
    rows[0]["duration"] = 99.0  # filtered before reading
    man = clips / "train.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in rows + [{"audio": "gone.wav", "speaker": "x"}]) + "\n{not json\n")
    items, skips = list_items(man)
    assert len(items) == 10 and skips[0][2] == "bad manifest line"
    assert items[1].speaker == rows[1]["speaker"] and items[1].text and Path(items[1].audio).is_file()
    # Emilia layout: <key>.mp3|flac + <key>.json in each tar
    tdir = tmp_path / "tars"
    tdir.mkdir()
    for k in range(2):
        with tarfile.open(tdir / f"part{k}.tar", "w") as tf:
            for j, p in enumerate(wavs[k * 4 : k * 4 + 4]):
                key = f"EN_B{k}_{j:03d}"
                wav, sr = sf.read(p, dtype="float32")
                buf = io.BytesIO()
                sf.write(buf, wav, sr, format="FLAC")
                data = buf.getvalue()
                info = tarfile.TarInfo(f"{key}.flac")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                meta = json.dumps({"id": key, "text": rows[k * 4 + j]["text"], "speaker": p.parent.name,
                                   "language": "en", "duration": len(wav) / sr}).encode()
                info = tarfile.TarInfo(f"{key}.json")
                info.size = len(meta)
                tf.addfile(info, io.BytesIO(meta))
            info = tarfile.TarInfo("EN_orphan.json")  # a key without audio
            info.size = 2
            tf.addfile(info, io.BytesIO(b"{}"))
    out = tmp_path / "from_tar"
    s = prepare(PrepareConfig(input=str(tdir), out=str(out), model=str(bundle), acoustic=False, phones=True,
                              language="en", shard_size=3, progress=False), log=None)
    assert s["utterances"] == 8 and s["speakers"] == 3 and s["skipped"] == {"no audio in tar": 2}
    out2 = tmp_path / "from_manifest"
    s = prepare(PrepareConfig(input=str(man), out=str(out2), model=str(bundle), acoustic=False, max_duration=20.0,
                              shard_size=9, progress=False), log=None)
    assert s["utterances"] == 8 and s["skipped"] == {"bad manifest line": 1, "missing file": 1, "too long": 1}
