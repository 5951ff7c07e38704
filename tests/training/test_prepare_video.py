"""``metis prepare --task visual | l2s``: talking-face videos + audio -> visual-encoder pairs and
stage-1 L2S shards, resumably, with counted skips; then both trainers run on what was made.

Data: speakers A and B with two short synthetic talking-face videos each (the corpus face
renderer, 25 fps; the audio is a buzz whose loudness follows the jaw), plus bad items: a
missing video (A), a face-less grey video (B), a video 0.5 s shorter than its audio (B), a
single-utterance speaker (C) and an item without a video (D). Tokenizers and the visual
encoder: a tiny random bundle; ids are noise, shapes, counts, skips and resumption are
checked, and the conditions against inference's own ``l2s_condition``.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from metis_speech.training.prepare import PrepareConfig, prepare, read_ledger

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg/ffprobe not installed")

SR = 24000
PHONES = (("aa", "m", "iy"), ("ow", "p", "ae"), ("uw", "s", "aa"), ("ey", "b", "ao"))
VISUAL_SKIPS = {"audio/video length mismatch": 1, "missing video": 1, "no face found": 1, "no video": 1}
L2S_SKIPS = {"audio/video length mismatch": 1, "missing video": 1, "no face found": 1, "speaker has one utterance": 2}


def _talk(root: Path, speaker: str, name: str, k: int, seconds: float, video_seconds=None, face=True):
    """root/<speaker>/<name>.wav (+ .mp4): a face saying PHONES[k] and a buzz as loud as the jaw is open."""
    from metis_speech.corpus.face import face_for, mouth_track, render_frames, write_video

    d = root / speaker
    d.mkdir(parents=True, exist_ok=True)
    step = seconds / 5
    phones = [("pau", 0.0, step)] + [(p, (i + 1) * step, (i + 2) * step) for i, p in enumerate(PHONES[k])] + [("pau", 4 * step, seconds)]
    vs = video_seconds or seconds
    track = mouth_track(phones, vs)
    frames = render_frames(track, face_for(speaker), seed=k)
    if not face:
        frames[:] = 128
    write_video(d / f"{name}.mp4", frames)
    t = np.arange(int(seconds * SR)) / SR
    jaw = np.interp(t, (np.arange(len(track)) + 0.5) / 25, track[:, 0])
    f0 = 110 + 40 * k + 20 * np.sin(2 * np.pi * 1.5 * t)
    buzz = sum(np.sin(2 * np.pi * h * np.cumsum(f0) / SR) / h for h in range(1, 8))
    sf.write(d / f"{name}.wav", (0.3 * (0.05 + jaw) * buzz / 2).astype(np.float32), SR)
    return d / f"{name}.wav", d / f"{name}.mp4"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest in the make-corpus form (relative paths, mouth_box = [x0, y0, x1, y1])."""
    from metis_speech.corpus.face import face_for

    root = tmp_path_factory.mktemp("av")
    rows = []

    def add(uid, spk, k, seconds, video=True, box=True, **kw):
        wav, mp4 = _talk(root, spk, uid, k, seconds, **kw)
        row = {"id": uid, "audio": str(wav.relative_to(root)), "speaker": spk, "duration": seconds}
        if video:
            row["video"] = str(mp4.relative_to(root))
        if box:
            row["mouth_box"] = face_for(spk).mouth_box()
        rows.append(row)
        return row

    add("a0", "A", 0, 1.2)
    add("a1", "A", 1, 1.0, box=False)  # the mouth is found (Haar)
    add("a2", "A", 2, 1.1)["video"] = "A/gone.mp4"  # missing video; still a prompt for a0/a1
    add("b0", "B", 3, 1.3)
    add("b1", "B", 0, 1.1)
    add("b2", "B", 1, 0.8, box=False, face=False)  # no face in the video
    add("b3", "B", 2, 1.5, video_seconds=1.0)  # video shorter than the audio
    add("c0", "C", 3, 1.0)  # only utterance of C
    add("d0", "D", 0, 1.0, video=False)
    man = root / "train.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return man


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, shared_dir):
    from metis_speech.bundle import random_bundle

    return random_bundle(tmp_path_factory.mktemp("bundle"), preset="tiny", tasks=("l2s",),
                         phone_vocab=shared_dir / "g2p" / "vocab.json")


@pytest.fixture(scope="module")
def visual_shards(corpus, bundle, tmp_path_factory):
    from metis_speech.cli import main

    from tests.conftest import torch_threads

    out = tmp_path_factory.mktemp("visual")
    with torch_threads(1):
        assert main(["prepare", str(corpus), "--out", str(out), "--task", "visual", "--model", str(bundle), "--shard-size", "4",
                     "--quiet", "--threads", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def visual_run(visual_shards, tmp_path_factory):
    """The tiny visual encoder trained for 12 steps on the prepared pairs."""
    from metis_speech.training.trainer import load_train_config, make_trainer
    from tests.conftest import torch_threads

    out = tmp_path_factory.mktemp("visual_run")
    cfg = load_train_config("visual_encoder_corpus_tiny")
    cfg.data.path = str(visual_shards)
    cfg.data.min_utt_frames = 4
    cfg.optim.lr, cfg.optim.warmup_steps = 3e-3, 3
    cfg.train.max_steps, cfg.train.log_every, cfg.train.out, cfg.train.progress = 12, 1, str(out), False
    with torch_threads(1):
        tr = make_trainer(cfg)
        tr.train()
    return out, tr


def _tensors(out: Path) -> dict:
    from safetensors.torch import load_file

    t = {}
    for f in sorted(out.glob("shard-*.safetensors")):
        t.update(load_file(str(f)))
    return t


def _video_frames(corpus: Path, uid: str) -> int:
    from metis_speech.video import read_video

    row = next(json.loads(l) for l in corpus.read_text().splitlines() if json.loads(l)["id"] == uid)
    return len(read_video(corpus.parent / row["video"])[0])


def test_visual_pairs_from_videos(corpus, visual_shards):
    s = json.loads((visual_shards / "summary.json").read_text())
    assert s["complete"] and s["shards_done"] == s["shards_total"] == 3
    assert s["utterances"] == 5 and s["speakers"] == 3 and s["skipped"] == VISUAL_SKIPS
    assert s["skipped_examples"]["missing video"][0].endswith("gone.mp4")
    t = _tensors(visual_shards)
    assert sorted({k.split("/")[0] for k in t}) == ["a0", "a1", "b0", "b1", "c0"]
    for uid in ("a0", "a1", "c0"):
        crops, sem = t[f"{uid}/crops"], t[f"{uid}/semantic"]
        n = _video_frames(corpus, uid)
        assert crops.shape == (n, 96, 96) and crops.dtype == torch.uint8 and sem.shape == (2 * n,)
        assert 0 <= int(sem.min()) and int(sem.max()) < 1024
        assert crops.float().std() > 5  # a mouth, not a blank
    meta = {m["id"]: m for f in visual_shards.glob("shard-*.json") for m in json.loads(f.read_text())["items"]}
    assert meta["a1"]["mouth"] == "found" and meta["a0"]["mouth"] == "box"


def test_visual_encoder_learns_from_prepared_pairs(visual_run):
    from metis_speech.loading import load_checkpoint
    from metis_speech.models.visual import VisualEncoder
    from metis_speech.training.trainer import read_log

    out, tr = visual_run
    assert len(tr.items) == 5 and not tr.skipped
    losses = [r["loss"] for r in read_log(out)]
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    # threshold: the 5 utterances (~140 video frames) are memorised: from ~ln(1024) = 6.9 nats to below
    # half in 12 steps (measured: 6.2 -> 1.4)
    assert first > 5.5 and last < 0.5 * first, (first, last)
    assert isinstance(load_checkpoint(out / "final"), VisualEncoder)


def test_l2s_shards_condition_as_inference(corpus, bundle, visual_run, tmp_path):
    """--visual (the trained encoder): counts, skips, layout; model-source encoder: cond == inference's."""
    from metis_speech.loading import load_checkpoint
    from metis_speech.models.visual import l2s_condition
    from metis_speech.training.data import TokenDataset
    from metis_speech.video import video_to_crops

    out = tmp_path / "l2s"
    cfg = PrepareConfig(input=str(corpus), out=str(out), task="l2s", model=str(bundle), visual=str(visual_run[0]),
                        shard_size=4, progress=False)
    s = prepare(cfg, log=None)
    assert s["complete"] and s["utterances"] == 4 and s["speakers"] == 2 and s["skipped"] == L2S_SKIPS
    assert 3 < s["this_run"]["seconds_of_audio"] < 6
    ds = TokenDataset(path=out, require=("semantic", "cond", "acoustic"), vocab=1024, acoustic_vocab=256)
    assert len(ds) == 4 and not ds.skipped
    for i in range(4):
        u = ds[i]
        n = _video_frames(corpus, u["id"])
        tp, T = u["prompt_len"], u["semantic"].shape[0]
        assert T == tp + 2 * n and u["cond"].shape == (T, 768) and u["acoustic"].shape == (T, 4)
        assert tp > 20  # the whole other utterance (shorter than recipe.prompt_s)
        assert torch.all(u["cond"][:tp] == 0) and u["cond"][tp:].abs().mean() > 0.01
    meta = {m["id"]: m for f in out.glob("shard-*.json") for m in json.loads(f.read_text())["items"]}
    assert meta["a0"]["prompt"] in ("a1", "a2") and meta["b0"]["prompt"] in ("b1", "b2", "b3")
    # the bundle's own visual encoder (no --visual): cond is l2s_condition(encoder(crops)) as in Metis.l2s
    small = tmp_path / "small.jsonl"
    small.write_text("".join(l + "\n" for l in corpus.read_text().splitlines()[:2]))
    shutil.copytree(corpus.parent / "A", tmp_path / "A")
    out2 = tmp_path / "l2s_src"
    assert prepare(PrepareConfig(input=str(small), out=str(out2), task="l2s", model=str(bundle), acoustic=False,
                                 cond_dtype="float32", progress=False), log=None)["utterances"] == 2
    t = _tensors(out2)
    enc = load_checkpoint(bundle / "visual")
    row = json.loads(small.read_text().splitlines()[0])
    x0, y0, x1, y1 = row["mouth_box"]
    crops = video_to_crops(tmp_path / row["video"], (x0, y0, x1 - x0, y1 - y0))
    with torch.no_grad():
        ref = l2s_condition(enc(torch.from_numpy(crops)[None])[0], int(t["a0/prompt_len"][0]))
    assert t["a0/cond"].shape == ref.shape and torch.allclose(t["a0/cond"], ref, atol=1e-5)


def test_l2s_resume_after_kill_matches_uninterrupted(corpus, bundle, visual_run, tmp_path):
    from metis_speech.training.prepare_cli import main

    full, killed = tmp_path / "full", tmp_path / "killed"
    args = [str(corpus), "--task", "l2s", "--model", str(bundle), "--visual", str(visual_run[0] / "final"),
            "--no-acoustic", "--shard-size", "3", "--quiet", "--threads", "1"]
    assert main(args + ["--out", str(full)]) == 0
    cfg = PrepareConfig(input=str(corpus), out=str(killed), task="l2s", model=str(bundle),
                        visual=str(visual_run[0] / "final"), acoustic=False, shard_size=3, progress=False)
    s = prepare(cfg, stop_after=1, log=None)
    assert not s["complete"] and s["shards_done"] == 1
    (killed / "shard-00001.safetensors").write_bytes(b"cut by a kill")  # no ledger line: redone
    s = prepare(cfg, log=None)
    assert s["complete"] and s["this_run"]["shards"] == 2 and sorted(read_ledger(killed)) == [0, 1, 2]
    a, b = _tensors(full), _tensors(killed)
    assert a.keys() == b.keys() and len(a) == 4 * 3
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert s["skipped"] == L2S_SKIPS
    from metis_speech.errors import MetisError

    with pytest.raises(MetisError, match="other settings.*visual"):  # another encoder: not the same data
        prepare(PrepareConfig(input=str(corpus), out=str(killed), task="l2s", model=str(bundle), acoustic=False,
                              shard_size=3, progress=False), log=None)


def test_l2s_without_a_visual_encoder_is_one_line_error(corpus, tmp_path, shared_dir, capsys):
    from metis_speech.bundle import random_bundle
    from metis_speech.cli import main

    plain = random_bundle(tmp_path / "b", preset="tiny", tasks=(), phone_vocab=shared_dir / "g2p" / "vocab.json")
    capsys.readouterr()
    base = ["prepare", str(corpus), "--task", "l2s", "--model", str(plain), "--quiet"]
    assert main(base + ["--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --task l2s needs a visual encoder") and "--visual" in err and "\n" not in err
    assert main(base + ["--out", str(tmp_path / "o2"), "--visual", str(tmp_path / "nowhere")]) == 2
    assert "not a visual-encoder checkpoint" in capsys.readouterr().err
    assert main(["prepare", str(corpus), "--out", str(tmp_path / "o3"), "--visual", str(tmp_path), "--quiet"]) == 2
    assert "only used by --task l2s" in capsys.readouterr().err
    audio_only = tmp_path / "audio.jsonl"
    audio_only.write_text(json.dumps({"audio": str(corpus.parent / "A" / "a0.wav")}) + "\n")
    assert main(["prepare", str(audio_only), "--out", str(tmp_path / "o4"), "--task", "visual", "--quiet"]) == 2
    assert "no item has a video" in capsys.readouterr().err


def test_stage1_l2s_trains_on_prepared_shards_and_loads(corpus, bundle, visual_run, tmp_path):
    """Stage-1 L2S (full fine-tune, tiny shrunk) on the l2s shards; a bundle of it + the trained
    visual encoder runs Metis.from_pretrained("l2s", bundle).l2s on a video."""
    from metis_speech import Metis
    from metis_speech.bundle import read_manifest, write_manifest
    from metis_speech.training.trainer import load_train_config, make_trainer, read_log

    shards = tmp_path / "l2s"
    prepare(PrepareConfig(input=str(corpus), out=str(shards), task="l2s", model=str(bundle), visual=str(visual_run[0]),
                          progress=False), log=None)
    cfg = load_train_config("stage1_l2s_tiny")
    cfg.model.init_from = None
    cfg.model.overrides = {"hidden_size": 64, "num_layers": 2, "num_heads": 4}
    cfg.data.path, cfg.data.min_utt_frames = str(shards), 4
    cfg.train.max_steps, cfg.train.log_every, cfg.train.out, cfg.train.progress = 6, 1, str(tmp_path / "run"), False
    make_trainer(cfg).train()
    assert len(read_log(tmp_path / "run")) == 6 and all(np.isfinite(r["loss"]) for r in read_log(tmp_path / "run"))
    own = tmp_path / "own"
    shutil.copytree(bundle, own)
    shutil.rmtree(own / "visual")
    shutil.copytree(tmp_path / "run" / "final", own / "stage1_l2s_trained")
    shutil.copytree(visual_run[0] / "final", own / "visual")
    m = read_manifest(own)
    write_manifest(own, m["components"], {"l2s": "stage1_l2s_trained"}, m["phone_vocab"])
    model = Metis.from_pretrained("l2s", own)
    row = json.loads(corpus.read_text().splitlines()[0])
    x0, y0, x1, y1 = row["mouth_box"]
    out = model.l2s(str(corpus.parent / row["video"]), str(corpus.parent / "B" / "b0.wav"),
                    crop_box=(x0, y0, x1 - x0, y1 - y0), seed=0, steps=2, s2a_steps=[2, 1])
    assert len(out.semantic_ids) == 2 * _video_frames(corpus, "a0") and np.isfinite(out.wav).all()


def test_l2s_recipes_fit_the_presets():
    from metis_speech.config import load_preset
    from metis_speech.training.trainer import load_train_config

    for name, preset in (("stage1_l2s_tiny", "tiny"), ("stage1_l2s", "official")):
        cfg = load_train_config(name)
        assert cfg.model.component == "stage1_l2s" and cfg.model.preset == preset and cfg.finetune.mode == "full"
        s1 = load_preset(preset, "stage1_l2s")
        assert s1.adapter == "mlp" and s1.cond_dim == load_preset(preset, "visual_encoder").out_dim == 768
    vis = load_train_config("visual_encoder_corpus_tiny")
    assert vis.model.component == "visual_encoder" and vis.data.path and vis.data.synthetic is None
