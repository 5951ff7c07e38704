"""The small-model driver end to end on a 6-utterance espeak-ng corpus (``--budget tiny``):
every step runs, a stop and a lost ``final/`` are resumed, the final bundle holds the trained
networks and loads, and the example outputs exist. Quality is not checked (2-4 steps each)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

UTTERANCES = [
    ("en+m3", "The small model is trained on this corpus."),
    ("en+m3", "Every network learns from the same recordings."),
    ("en+f2", "A second voice reads a longer sentence here."),
    ("en+f2", "Codecs come first, then the token models."),
    ("en-us+m1", "The third speaker closes the training set."),
    ("en-us+m1", "Short runs only check that the plumbing works."),
]
DEV = [("en+f2", "This is a sentence of the development set."), ("en+m3", "And here is another one.")]
TEST = [("en-us+m1", "A held out reference of the test set."), ("en+f2", "The last one is held out too.")]


def make_corpus(root: Path) -> Path:
    """root/train.jsonl (6 items), dev.jsonl (2) and test.jsonl (2) as `metis make-corpus` writes them."""
    for split, utts in (("train", UTTERANCES), ("dev", DEV), ("test", TEST)):
        lines = []
        for i, (voice, text) in enumerate(utts):
            rel = Path("wavs") / split / f"{split}{i}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(root / rel), text], check=True, capture_output=True)
            lines.append(json.dumps({"id": f"{split}{i}", "audio": str(rel), "text": text, "speaker": voice,
                                     "duration": sf.info(str(root / rel)).duration}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_driver_runs_every_step_and_resumes(corpus, tmp_path, capsys, monkeypatch):
    from metis_speech.bundle import load_ssl, read_manifest, ssl_fingerprint
    from metis_speech.text import PhoneTokenizer
    from metis_speech.text.vocab import PhoneVocab
    from metis_speech.training.small_model import STEPS, TRAIN_STEPS, main

    work = tmp_path / "work"
    args = ["--corpus", str(corpus), "--work", str(work), "--budget", "tiny", "--preset", "tiny"]  # project-own vocabulary
    assert main(args + ["--lane", "stage1", "--stop-after", "stage1_pretrain"]) == 0
    out = capsys.readouterr().out
    assert "stopping after stage1_pretrain" in out
    s = json.loads((work / "summary.json").read_text())
    assert list(s["steps"]) == ["vocab", "phones", "ssl", "base", "semantic_codec", "bundle_v0", "prepare_stage1",
                                "stage1_pretrain"]
    # no alignments in this corpus: the SSL front end was trained label-free (HuBERT-style), and
    # the base bundle carries it
    labels = json.loads((work / "runs" / "ssl" / "final" / "labels.json").read_text())
    assert labels["target"] == "hubert"
    assert ssl_fingerprint(load_ssl(work / "base" / "ssl")) == ssl_fingerprint(load_ssl(work / "runs" / "ssl" / "final"))
    # phones were computed once, into the work folder's manifest (prepare then needs no G2P)
    rows = [json.loads(x) for x in (work / "train.jsonl").read_text().splitlines()]
    assert all(r["phone_ids"] and r["phone_vocab"] == PhoneVocab.from_json(work / "vocab.json").fingerprint() for r in rows)
    # the vocabulary holds every phone of the transcripts, and nothing else but marks
    vocab = PhoneVocab.from_json(work / "vocab.json")
    phones = {p for _, t in UTTERANCES for p in PhoneTokenizer(vocab).phones(t, "en")[0]}
    assert phones <= set(vocab.symbol_to_id) and len(vocab) == s["steps"]["vocab"]["symbols"] < len(phones) + 10
    # the codec learnt the base bundle's own SSL features
    info = json.loads((work / "runs" / "semantic_codec" / "final" / "ssl.json").read_text())
    assert info["fingerprint"] == ssl_fingerprint(load_ssl(work / "base" / "ssl"))
    # stage 1 needed no acoustic codec; its shards hold none
    assert not (work / "runs" / "acoustic_codec").exists()
    assert "acoustic" not in s["steps"]["prepare_stage1"]["codebook_use"]
    # the corpus's test references became held-out shards, and stage 1 logged its loss on them
    val_rows = [json.loads(x) for x in (work / "val.jsonl").read_text().splitlines()]
    assert [r["text"] for r in val_rows] == [t for _, t in TEST] and all(r["phone_ids"] for r in val_rows)
    held = s["steps"]["prepare_stage1"]["held_out"]
    assert held["utterances"] == 2 and held["complete"] and held["hours"] > 0
    assert (work / "data" / "stage1_val" / "summary.json").is_file()
    assert s["steps"]["stage1_pretrain"]["losses"]["val_loss_last"] > 0

    # the other lane: the acoustic codec and S2A, recorded beside the first lane's steps
    assert main(args + ["--lane", "s2a", "--max-steps", "s2a=3"]) == 0
    out = capsys.readouterr().out
    assert "bundle_v0: starting" not in out and "s2a: done" in out
    s = json.loads((work / "summary.json").read_text())
    assert "stage1_pretrain" in s["steps"] and "s2a" in s["steps"]
    assert s["steps"]["s2a"]["max_steps"] == 3  # the override
    assert s["steps"]["prepare_s2a"]["held_out"]["utterances"] == 2 and s["steps"]["s2a"]["losses"]["val_loss_last"] > 0

    # a run whose final/ was lost (killed while saving) continues from its checkpoint
    shutil.rmtree(work / "runs" / "acoustic_codec" / "final")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "semantic_codec: complete, skipped" in out and "base: complete, skipped" in out
    assert "acoustic_codec: resuming from step_00000004" in out and "stage1_tts: starting" in out
    s = json.loads((work / "summary.json").read_text())
    assert list(s["steps"]) == list(STEPS) and all(r["status"] == "done" for r in s["steps"].values())
    for name in TRAIN_STEPS:
        losses = s["steps"][name]["losses"]
        assert losses["loss_last"] is not None and losses["steps_logged"] > 0, name
    assert s["steps"]["stage1_tts"]["losses"]["token_perplexity_last"] > 1
    use = s["steps"]["prepare_s2a"]["codebook_use"]
    assert use["semantic"]["distinct"] >= 1 and len(use["acoustic"]) == 4
    assert s["steps"]["prepare_s2a"]["utterances"] == 6 and s["steps"]["prepare_se"]["utterances"] == 6
    assert s["steps"]["s2a_1layer"]["max_steps"] == 2  # the budget's

    m = read_manifest(work / "bundle")
    assert PhoneVocab.from_json(work / "bundle" / m["phone_vocab"]).fingerprint() == vocab.fingerprint()
    assert m["random"] is False and sorted(m["stage1"]) == ["base", "se", "tse", "tts", "vc"] and m["untrained"] == []
    assert m["provenance"]["stage1/tts"]["tokenizers"] == [str(work / "bundle_v0")]
    assert m["provenance"]["s2a_full"]["tokenizers"] == [str(work / "bundle_v1")]
    assert m["provenance"]["semantic_codec"]["run"] == str((work / "runs" / "semantic_codec").resolve())
    ex = json.loads((work / "examples" / "examples.json").read_text())
    for f in ("tts.wav", "se_enhanced.wav", "se_noisy.wav", "codec_resynthesis.wav", "prompt.wav"):
        assert sf.info(str(work / "examples" / f)).samplerate == 24000
    assert ex["tts"]["seconds"] > 0 and ex["se"]["seconds"] > 0

    # everything complete: a rerun does nothing but ship the bundle where asked
    assert main(args + ["--ship", str(tmp_path / "shipped"), "--ship-without", "base"]) == 0
    out = capsys.readouterr().out
    assert out.count("complete, skipped") == len(STEPS)
    shipped = read_manifest(tmp_path / "shipped")
    assert shipped["training"]["budget"] == "tiny" and shipped["training"]["corpus"] == corpus.name  # no corpus summary.json
    # no machine paths ship: provenance names runs relative to the work folder
    assert str(tmp_path) not in json.dumps(shipped)
    assert shipped["provenance"]["s2a_full"]["run"] == "runs/s2a"
    assert shipped["training"]["steps"]["s2a"]["max_steps"] == 3
    assert shipped["stage1"] == {k: v for k, v in m["stage1"].items() if k != "base"}
    from safetensors import safe_open
    with safe_open(str(tmp_path / "shipped" / "s2a_full" / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}

    from metis_speech import shipped as ship_mod
    from metis_speech.info import shipped_summary
    monkeypatch.setattr(ship_mod, "SMALL_MODEL_DIR", tmp_path / "shipped")
    text = shipped_summary()
    assert "tasks: se, tse, tts, vc; preset tiny" in text and "MB" in text


def test_driver_errors_are_one_line(tmp_path, capsys):
    from metis_speech.training.small_model import main

    assert main(["--corpus", str(tmp_path), "--work", str(tmp_path / "w"), "--budget", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "train.jsonl" in err and err.count("\n") == 1


def test_a_step_whose_input_is_missing_is_refused_or_awaited(corpus, tmp_path, shared_dir, capsys, monkeypatch):
    from metis_speech.errors import MetisError
    from metis_speech.training import small_model
    from metis_speech.training.small_model import SmallModel, main

    work = tmp_path / "work"
    args = ["--corpus", str(corpus), "--work", str(work), "--budget", "tiny", "--phone-vocab", str(shared_dir / "g2p" / "vocab.json")]
    # the lanes share only the semantic codec's outputs, which one lane makes
    from metis_speech.training.small_model import DEPENDS, LANES, STEPS
    lane_steps = [n for lane in LANES.values() for n in lane]
    assert len(lane_steps) == len(set(lane_steps))  # no step in two lanes
    assert set(lane_steps) | {"bundle", "examples"} == set(STEPS)
    for lane in LANES.values():  # within a lane, inputs come earlier in STEPS order
        assert all(STEPS.index(d) < STEPS.index(n) for n in lane for d in DEPENDS[n])

    assert main(args + ["--only", "stage1_tts"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "stage1_tts needs prepare_stage1, stage1_pretrain, which are not complete" in err and err.count("\n") == 1
    assert main(args + ["--only", "no_such_step"]) == 2
    assert "unknown step(s) no_such_step" in capsys.readouterr().err

    # with a wait (a lane), a missing input made by the other process is polled for
    drv = SmallModel(corpus, work, "tiny", shared_dir / "g2p" / "vocab.json", log=lambda m: None)
    polls = []
    monkeypatch.setattr(small_model.time, "sleep", lambda s: polls.append(s))
    monkeypatch.setattr(SmallModel, "complete", lambda self, name: len(polls) >= 3)
    drv._inputs_ready("bundle_v1", ["bundle_v1", "prepare_s2a"], wait_s=5.0)
    assert polls == [5.0, 5.0, 5.0]
    # an input of this very process that is missing is an error even with a wait
    monkeypatch.setattr(SmallModel, "complete", lambda self, name: False)
    with pytest.raises(MetisError, match="needs bundle_v0, acoustic_codec, which are not complete"):
        drv._inputs_ready("bundle_v1", ["acoustic_codec", "bundle_v1"], wait_s=5.0)


@pytest.mark.parametrize("value, match", [("s2a=x", "expected NAME=N"), ("codec=5", "not a training step"),
                                          ("s2a=0", "must be positive")])
def test_bad_max_steps_is_one_line(corpus, tmp_path, capsys, value, match):
    from metis_speech.training.small_model import main

    assert main(["--corpus", str(corpus), "--work", str(tmp_path / "w"), "--max-steps", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --max-steps") and match in err and err.count("\n") == 1
