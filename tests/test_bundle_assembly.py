"""Bundles assembled from trained runs (``assemble_bundle``, ``metis bundle``): the semantic
codec trained on the base bundle's own SSL features, short runs of every network put
together and run end to end (TTS, SE), and each kind of mismatch named in a one-line error.

The runs are a few steps long on tiny networks: the bundle makes noise, not speech; what is
checked is that the networks fit, load and run, and that the checks catch what does not fit.
"""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from metis_speech.bundle import (
    assemble_bundle,
    load_ssl,
    random_bundle,
    read_manifest,
    ssl_fingerprint,
)
from metis_speech.cli import main
from metis_speech.config import load_preset
from metis_speech.errors import MetisError
from metis_speech.loading import build_model, save_checkpoint
from metis_speech.sources import ssl_from_source
from metis_speech.training.codec_train import synthetic_audio
from metis_speech.training.trainer import load_train_config, make_trainer
from tests.conftest import torch_threads

FAST = dict(steps=2, s2a_steps=[2, 1])
LOOP = {"max_steps": 2, "seed": 0, "log_every": 1, "checkpoint_every": 1000, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(d: dict, out, **train):
    cfg = load_train_config(dict(d, train=dict(LOOP, out=str(out), **train)))
    make_trainer(cfg).train()
    return out / "final"


def _wavs(root, n=4, seconds=1.2, sr=16000):
    root.mkdir(parents=True, exist_ok=True)
    for i, w in enumerate(synthetic_audio(n, seconds, sample_rate=sr, seed=3)):
        sf.write(str(root / f"u{i}.wav"), w.numpy(), sr)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_dir):
    """A random base bundle and 2-step runs of every network (codecs on audio, the rest on
    synthetic tokens of the tiny preset's vocabularies)."""
    with torch_threads(1):
        root = tmp_path_factory.mktemp("runs")
        base = random_bundle(root / "base", tasks=("tts", "se"), phone_vocab=shared_dir / "g2p" / "vocab.json")
        wavs = _wavs(root / "wavs")
        syn = {"synthetic": {"n": 16, "min_frames": 16, "max_frames": 32, "seed": 0}, "max_frames": 256}
        optim = {"lr": 1e-3, "warmup_steps": 1}
        r = {"base": base, "wavs": wavs, "root": root}
        r["semantic_codec"] = _train({"model": {"component": "semantic_codec"}, "data": {"path": str(wavs), "max_frames": 200},
                                      "optim": optim, "objective": {"ssl_source": str(base)}}, root / "sem")
        r["acoustic_codec"] = _train({"model": {"component": "acoustic_codec"}, "optim": optim,
                                      "data": {"synthetic": {"n": 4, "seconds": 0.5}, "max_frames": 40},
                                      "objective": {"segment_frames": 20, "disc_start": 1, "mpd_width": 0.0625, "mrd_width": 0.125,
                                                    "periods": [2, 3], "stft_resolutions": [[512, 128, 512]],
                                                    "mel_windows": [256], "mel_bins": [40]}}, root / "ac")
        r["s2a_full"] = _train({"model": {"component": "s2a_full"}, "data": syn, "optim": optim}, root / "s2a")
        r["s2a_1layer"] = _train({"model": {"component": "s2a_1layer"}, "data": syn, "optim": optim}, root / "s2a1")
        r["pretrain"] = _train({"model": {"component": "stage1_base"}, "data": syn, "optim": optim}, root / "pt")
        r["tts"] = _train({"model": {"component": "stage1_tts", "init_from": str(r["pretrain"])}, "data": syn, "optim": optim}, root / "tts")
        r["se"] = _train({"model": {"component": "stage1_adapter", "init_from": str(r["pretrain"])},
                          "finetune": {"mode": "lora", "lora_r": 4, "lora_alpha": 8}, "data": syn, "optim": optim}, root / "se")
    return r


# ------------------------------------------------------------------ SSL consistency
def test_semantic_codec_learns_the_bundles_own_ssl_features(runs):
    """objective.ssl_source = a bundle: the trainer's features are bit-identical to what
    Metis computes with that bundle, and final/ssl.json records the SSL's fingerprint."""
    from metis_speech import Metis

    base, wavs = runs["base"], runs["wavs"]
    d = {"model": {"component": "semantic_codec"}, "data": {"path": str(wavs), "max_frames": 200},
         "objective": {"ssl_source": str(base)}, "train": dict(LOOP, out=str(runs["root"] / "sem_check"))}
    tr = make_trainer(load_train_config(d))
    metis = Metis.from_pretrained("se", base, device="cpu", lazy=True)
    for i, path in enumerate(sorted(wavs.glob("*.wav"))):
        w, _ = sf.read(str(path), dtype="float32")
        assert torch.equal(tr.items[i], metis.ssl_features([w])[0])
    info = json.loads((runs["semantic_codec"] / "ssl.json").read_text())
    assert info["fingerprint"] == ssl_fingerprint(load_ssl(base / "ssl")) == ssl_fingerprint(ssl_from_source(base))
    assert info["source"] == str(base.resolve()) and info["hidden_size"] == 128
    # the SSL of another random bundle (same architecture) is told apart
    other = random_bundle(runs["root"] / "other", tasks=(), seed=1)
    assert ssl_fingerprint(load_ssl(other / "ssl")) != info["fingerprint"]


def test_semantic_codec_objective_rejects_unknown_settings(tmp_path):
    d = {"model": {"component": "semantic_codec"}, "data": {"synthetic": {"n": 4}}, "objective": {"ssl_sauce": "x"},
         "train": dict(LOOP, out=str(tmp_path / "x"))}
    with pytest.raises(MetisError, match="ssl_sauce"):
        make_trainer(load_train_config(d))


# ------------------------------------------------------------------ assembling
def test_cli_assembles_a_bundle_that_runs_tts_and_se(runs, tmp_path, capsys):
    from metis_speech import Metis
    from tests.pipeline.conftest import speechlike

    out = tmp_path / "bundle"
    rc = main(["bundle", "--out", str(out), "--base", str(runs["base"]),
               "--semantic-codec", str(runs["semantic_codec"]), "--acoustic-codec", str(runs["acoustic_codec"]),
               "--s2a", str(runs["s2a_full"]), "--s2a-1layer", str(runs["s2a_1layer"]),
               "--stage1", f"tts={runs['tts']}", "--stage1", f"se={runs['se']}", "--stage1", f"base={runs['pretrain']}"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert json.loads(cap.out.strip().splitlines()[-1])["untrained"] == ["ssl"]
    m = read_manifest(out)
    assert m["random"] is False and m["untrained"] == ["ssl"] and sorted(m["stage1"]) == ["base", "se", "tts"]
    prov = m["provenance"]
    assert prov["stage1/se"]["run"] == str((runs["root"] / "se").resolve()) and prov["stage1/se"]["step"] == 2
    assert prov["acoustic_decoder"]["path"].endswith("ac/final/decoder") and prov["ssl"]["random"] is True
    assert prov["semantic_codec"]["ssl_fingerprint"] == prov["ssl"]["fingerprint"]
    assert not (out / "stage1_se" / "lora.safetensors").exists()  # the merged weights only
    prompt = tmp_path / "prompt.wav"
    sf.write(str(prompt), speechlike(1.6), 16000)
    tts = Metis.from_pretrained("tts", out, device="cpu").tts("Hello there.", prompt=str(prompt), prompt_text="A test.",
                                                             language="en", duration=0.6, seed=0, **FAST)
    assert tts.sample_rate == 24000 and abs(tts.duration - 0.6) < 0.05 and np.isfinite(tts.wav).all()
    se = Metis.from_pretrained("se", out, device="cpu").se(str(prompt), seed=0, **FAST)
    assert abs(se.duration - 1.6) < 0.05 and np.isfinite(se.wav).all()
    # the bundle is what it says: the SE network is the run's merged final
    from safetensors.torch import load_file

    assert all(torch.equal(a, b) for a, b in zip(load_file(str(out / "stage1_se" / "model.safetensors")).values(),
                                                 load_file(str(runs["se"] / "model.safetensors")).values()))


def test_base_random_preset_and_dropping_untrained_tasks(runs, tmp_path, shared_dir):
    out = assemble_bundle(tmp_path / "b", "random:tiny", stage1={"tts": runs["tts"]}, drop_untrained=True,
                          phone_vocab=shared_dir / "g2p" / "vocab.json", check_lineage=False)
    m = read_manifest(out)
    assert sorted(m["stage1"]) == ["tts"] and "visual" not in m["components"] and "s2a_1layer" not in m["components"]
    assert m["provenance"]["s2a_full"]["from"] == "random:tiny" and "s2a_full" in m["untrained"]
    assert m["phone_vocab"] == "vocab.json"
    assert not list(tmp_path.glob(".scratch-*")) and not list(tmp_path.glob(".tmp-*"))  # nothing left behind


def test_the_bases_decoding_defaults_are_kept(runs, tmp_path):
    """A bundle tuned with its own decoding defaults (metis.json decoding.<preset>.<task>) keeps
    them when some of its networks are replaced; a base without them gives a bundle without."""
    from metis_speech.pipeline import bundle_defaults

    base = tmp_path / "base"
    shutil.copytree(runs["base"], base)
    f = base / "metis.json"
    decoding = {"default": {"tts": {"steps": 7, "s2a_steps": [3, 2]}}, "fast": {"se": {"steps": 2}}}
    f.write_text(json.dumps(dict(json.loads(f.read_text()), decoding=decoding)))
    out = assemble_bundle(tmp_path / "b", base, stage1={"tts": runs["tts"]})
    m = read_manifest(out)
    assert m["decoding"] == decoding
    assert bundle_defaults(m, "default", "tts").s2a_steps == (3, 2)
    plain = assemble_bundle(tmp_path / "p", runs["base"], stage1={"tts": runs["tts"]})
    assert "decoding" not in read_manifest(plain)


def _fake(directory, component, **overrides):
    """A random checkpoint of the tiny preset's ``component`` with fields replaced (a run's final/)."""
    from dataclasses import replace

    return save_checkpoint(build_model(replace(load_preset("tiny", component), **overrides)), directory)


@pytest.mark.parametrize("kind, kwargs, needle", [
    ("s2a vocab", lambda t: {"components": {"s2a_full": _fake(t / "s", "s2a_full", cond_codebook_size=512)}},
     "s2a_full reads 512 semantic ids (cond_codebook_size), the semantic codec has 1024"),
    ("s2a codes", lambda t: {"components": {"s2a_full": _fake(t / "s", "s2a_full", codebook_size=128)}},
     "s2a_full predicts 128 acoustic codes per layer, the acoustic codec has 256"),
    ("rvq depth", lambda t: {"components": {"s2a_full": _fake(t / "s", "s2a_full", num_quantizers=3)}},
     "s2a_full predicts 3 RVQ layers, the acoustic codec has 4"),
    ("prompt depth", lambda t: {"components": {"s2a_1layer": _fake(t / "s", "s2a_1layer", prompt_quantizers=6)}},
     "s2a_1layer reads 6 RVQ layers of its prompt (prompt_quantizers), the acoustic codec has 4"),
    ("stage1 vocab", lambda t: {"stage1": {"tts": _fake(t / "s", "stage1_tts", codebook_size=512)}},
     "stage-1 'tts' models 512 semantic ids, the semantic codec has 1024"),
    ("cond dim", lambda t: {"stage1": {"se": _fake(t / "s", "stage1_adapter", cond_dim=64)}},
     "stage-1 'se' adapter takes 64-dim features (cond_dim), the SSL gives 128"),
    ("ssl dim", lambda t: {"components": {"semantic_codec": _fake(t / "s", "semantic_codec", hidden_size=64)}},
     "the semantic codec takes 64-dim SSL features, the SSL gives 128"),
    ("task kind", lambda t: {"stage1": {"tts": _fake(t / "s", "stage1_base")}},
     "stage-1 'tts' has no phone prefix"),
    ("wrong network", lambda t: {"components": {"s2a_full": _fake(t / "s", "semantic_codec")}},
     "s2a_full from"),
])
def test_mismatches_are_named(runs, tmp_path, kind, kwargs, needle):
    with pytest.raises(MetisError) as e:
        assemble_bundle(tmp_path / "b", runs["base"], **kwargs(tmp_path))
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "b").exists()


def test_semantic_codec_of_another_ssl_is_refused(runs, tmp_path):
    """A codec trained on a different SSL's features fits by shape, but not by lineage."""
    other = random_bundle(tmp_path / "other", tasks=(), seed=5)
    with pytest.raises(MetisError, match="semantic codec was trained on features of SSL .* the bundle's SSL has fingerprint"):
        assemble_bundle(tmp_path / "b", other, {"semantic_codec": runs["semantic_codec"]}, {"tts": runs["tts"]})
    assemble_bundle(tmp_path / "b", other, {"semantic_codec": runs["semantic_codec"]}, {"tts": runs["tts"]}, check_lineage=False)
    # --ssl takes the matching front end from the run's bundle: accepted
    c = assemble_bundle(tmp_path / "c", other, {"ssl": runs["base"], "semantic_codec": runs["semantic_codec"]}, {"tts": runs["tts"]})
    prov = read_manifest(c)["provenance"]["ssl"]
    assert prov["path"] == str((runs["base"] / "ssl").resolve()) and prov["random"] is True  # still the random front end


def test_runs_trained_on_shards_of_other_codecs_are_refused(runs, tmp_path):
    """Stage 1 trained on shards that bundle A tokenized cannot go in a bundle with B's codec."""
    from metis_speech.training.prepare import PrepareConfig, prepare

    shards = tmp_path / "shards"
    prepare(PrepareConfig(input=str(runs["wavs"]), out=str(shards), model=str(runs["base"]), acoustic=False,
                          device="cpu", progress=False), log=None)
    pt = _train({"model": {"component": "stage1_base"}, "data": {"path": str(shards), "max_frames": 256}}, tmp_path / "pt")
    with pytest.raises(MetisError, match=r"stage-1 'base' was trained on data tokenized with .*base, whose semantic_codec differs"):
        assemble_bundle(tmp_path / "b", runs["base"], {"semantic_codec": runs["semantic_codec"]}, {"base": pt})
    out = assemble_bundle(tmp_path / "b", runs["base"], stage1={"base": pt})  # the codec it was tokenized with
    assert read_manifest(out)["provenance"]["stage1/base"]["tokenizers"] == [str(runs["base"])]


def test_cli_errors_are_one_line(runs, tmp_path, capsys):
    cases = [
        ["--base", str(tmp_path / "nope")],
        ["--base", str(runs["base"]), "--stage1", "tts"],
        ["--base", str(runs["base"]), "--stage1", f"sing={runs['tts']}"],
        ["--base", str(runs["base"]), "--s2a", str(tmp_path)],
        ["--base", str(runs["base"]), "--acoustic-codec", str(runs["s2a_full"])],
    ]
    for extra in cases:
        rc = main(["bundle", "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err, (extra, err)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["bundle", "--out", str(tmp_path / "full"), "--base", str(runs["base"])]) == 2
    assert "already exists" in capsys.readouterr().err


def test_stage1_trained_on_another_phone_vocabulary_is_refused(runs, tmp_path, shared_dir):
    """prepare.json records the phone vocabulary's fingerprint; a TTS stage 1 trained on those
    phone ids cannot go into a bundle whose vocabulary maps them differently."""
    import json

    from metis_speech.text.vocab import PhoneVocab
    from metis_speech.training.prepare import PrepareConfig, prepare

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(w), "text": "hello world", "speaker": "a", "language": "en"}) + "\n"
                                for w in sorted(runs["wavs"].glob("*.wav"))))
    shards = tmp_path / "shards"
    prepare(PrepareConfig(input=str(manifest), out=str(shards), model=str(runs["base"]), task="tts", acoustic=False,
                          device="cpu", progress=False), log=None)
    vocab_file = shared_dir / "g2p" / "vocab.json"
    fp = PhoneVocab.from_json(vocab_file).fingerprint()
    assert json.loads((shards / "prepare.json").read_text())["phone_vocab"] == fp
    tts = _train({"model": {"component": "stage1_tts"}, "data": {"path": str(shards), "max_frames": 512}}, tmp_path / "tts")
    assert read_manifest(assemble_bundle(tmp_path / "ok", runs["base"], stage1={"tts": tts}))["provenance"]["stage1/tts"]["phone_vocabs"] == [fp]
    table = json.loads(vocab_file.read_text())
    table = table.get("vocab", table)
    a, b = sorted(table)[:2]
    table[a], table[b] = table[b], table[a]  # same symbols and ids, two of them swapped
    other = tmp_path / "other_vocab.json"
    other.write_text(json.dumps({"vocab": table}))
    with pytest.raises(MetisError, match=r"stage-1 'tts' was trained on phone ids of another vocabulary"):
        assemble_bundle(tmp_path / "bad", runs["base"], stage1={"tts": tts}, phone_vocab=other)


def test_acoustic_decoder_lineage_is_its_quantizer(tmp_path):
    """The acoustic ids depend on the decoder's quantizer only, so an S2A tokenized with a codec
    fits a bundle whose decoder had a vocoder-only fine-tune (train_parts: decoder), and not one
    whose codebooks moved."""
    import torch

    from metis_speech.bundle import _Identity

    dec = build_model(load_preset("tiny", "acoustic_decoder"))
    save_checkpoint(dec, tmp_path / "a")
    with torch.no_grad():
        dec.model.head.out.weight.add_(1.0)  # the vocoder changes
    save_checkpoint(dec, tmp_path / "b")
    with torch.no_grad():
        dec.quantizer.quantizers[0].codebook.weight.add_(1.0)  # the ids change
    save_checkpoint(dec, tmp_path / "c")
    ident = _Identity()
    a, b, c = (ident.of("acoustic_decoder", tmp_path / n) for n in "abc")
    assert a == b != c
    assert ident.of("s2a_full", tmp_path / "a") != ident.of("s2a_full", tmp_path / "b")  # other networks: the whole file
