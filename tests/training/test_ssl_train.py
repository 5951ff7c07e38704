"""The SSL front end trainer (model.component: ssl): phone targets from alignments, the
label-free HuBERT-style target, and an SSL directory that bundles load like w2v-BERT's."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TEXTS = ["The small model learns phones.", "A second sentence for the encoder.", "Every frame gets a label.",
         "Noise is added to half of them."]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """train.jsonl + alignments/train.jsonl (uniform phone spans, a pause at each end)."""
    root = tmp_path_factory.mktemp("sslcorpus")
    rows, align = [], []
    for i, t in enumerate(TEXTS):
        rel = Path("wavs") / f"u{i}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["espeak-ng", "-v", "en", "-w", str(root / rel), t], check=True, capture_output=True)
        d = sf.info(str(root / rel)).duration
        edges = np.linspace(0.1, d - 0.1, 9)
        phones = [["_", 0.0, 0.1]] + [[p, float(a), float(b)] for p, a, b in zip("abcdabcd", edges[:-1], edges[1:])]
        rows.append({"id": f"u{i}", "audio": str(rel), "text": t, "speaker": "en", "duration": d})
        align.append({"id": f"u{i}", "phones": phones})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "alignments").mkdir()
    (root / "alignments" / "train.jsonl").write_text("".join(json.dumps(a) + "\n" for a in align))
    return root


def _cfg(corpus, out, **objective):
    from metis_speech.recipes import recipe_path
    from metis_speech.training.trainer import load_train_config

    import yaml

    d = yaml.safe_load(recipe_path("small_ssl").read_text())
    d["model"]["preset"] = "tiny"
    d["data"].update(path=str(corpus / "train.jsonl"), max_frames=2000)
    d["objective"] = dict(d["objective"], workers=1, **objective)
    d["train"].update(max_steps=3, out=str(out), progress=False, checkpoint_every=100)
    return load_train_config(d)


def test_phone_targets_train_an_ssl_that_bundles_load(corpus, tmp_path):
    from metis_speech.bundle import load_ssl
    from metis_speech.training.ssl_train import frame_labels
    from metis_speech.training.trainer import make_trainer

    tr = make_trainer(_cfg(corpus, tmp_path / "run"))
    assert tr.labels == ["sil", "a", "b", "c", "d"]  # pauses ("_") are silence
    s = tr.train()
    assert s["step"] == 3 and np.isfinite(s["last"]["loss"])
    final = tmp_path / "run" / "final"
    assert json.loads((final / "labels.json").read_text())["target"] == "phones"
    ext = load_ssl(final)  # the same loader as the bundles' w2v-BERT
    w, sr = sf.read(str(corpus / "wavs" / "u0.wav"), dtype="float32")
    from metis_speech.audio import resample

    import torch

    with torch.no_grad():
        f = ext([resample(w, sr, 16000)], 16000)
    assert f.features.shape[-1] == 128 and np.isfinite(f.features.numpy()).all()
    # per-utterance normalisation statistics were measured on the training features
    assert ext.stat_mean is not None and (ext.stat_var > 0).all()
    # labels: the phone at each 20 ms frame centre
    lab = frame_labels([["a", 0.0, 0.05], ["b", 0.05, 0.1]], 6, {"sil": 0, "a": 1, "b": 2})
    assert lab.tolist() == [1, 1, 2, 2, 2, 0]  # centres 0.01 .. 0.11 s


def test_hubert_target_needs_no_alignments(corpus, tmp_path):
    from metis_speech.training.trainer import make_trainer

    tr = make_trainer(_cfg(corpus, tmp_path / "run", target="hubert", clusters=8, kmeans_frames=500))
    assert len(tr.labels) == 8
    tr.train()
    assert json.loads((tmp_path / "run" / "final" / "labels.json").read_text())["target"] == "hubert"


def test_bad_settings_are_clear_errors(corpus, tmp_path):
    from metis_speech.errors import MetisError
    from metis_speech.training.trainer import make_trainer

    with pytest.raises(MetisError, match="target must be 'phones' or 'hubert'"):
        make_trainer(_cfg(corpus, tmp_path / "a", target="words"))
    with pytest.raises(MetisError, match="no phone alignments"):
        make_trainer(_cfg(corpus, tmp_path / "b", alignments=str(tmp_path / "missing.jsonl")))
