"""Fine-tuning data recipes: measured SNRs, a pitch-shifted VC copy, pairing, and shards of
every task that the stage-1 trainer accepts."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from metis_speech.corpus.noise import snr_db
from metis_speech.training.task_data import (
    TaskRecipe,
    degrade_se,
    item_rng,
    mix_tse,
    pair_items,
    perturb_timbre,
    pitch_hz,
    room_bank,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def speak(path: Path, voice: str, text: str, sr: int = 16000) -> np.ndarray:
    from metis_speech.audio import load_audio

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", "190", "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path, sr)[0]


def projected_snr(mixture: np.ndarray, clean: np.ndarray) -> float:
    """SNR of ``clean`` inside ``mixture`` measured from the two waveforms alone (least-squares gain)."""
    g = float(np.dot(mixture, clean) / np.dot(clean, clean))
    return snr_db(g * clean, mixture - g * clean)


@pytest.fixture(scope="module")
def voice_a(tmp_path_factory):
    return speak(tmp_path_factory.mktemp("a") / "a.wav", "en+m3", "Testing the degraded copies of this voice.", 24000)


def test_se_copy_has_the_stated_snr(voice_a):
    recipe = TaskRecipe(reverb_prob=0.0)
    for k in range(4):
        noisy, info = degrade_se(voice_a, item_rng(0, f"u{k}", "se"), recipe)
        assert recipe.se_snr[0] <= info["snr_db"] <= recipe.se_snr[1] and info["rt60"] is None
        assert np.allclose(noisy, info["speech"] + info["noise_wav"], atol=1e-6)
        assert abs(snr_db(info["speech"], info["noise_wav"]) - info["snr_db"]) < 0.01
        assert abs(projected_snr(noisy, voice_a) - info["snr_db"]) < 0.5  # from noisy and clean alone
    # with a room: the SNR is that of the reverberant speech to the noise
    rooms = room_bank(0, TaskRecipe(n_rooms=1, rt60=(0.3, 0.4)))
    noisy, info = degrade_se(voice_a, item_rng(0, "r", "se"), TaskRecipe(reverb_prob=1.0), rooms)
    assert info["rt60"] is not None and abs(snr_db(info["speech"], info["noise_wav"]) - info["snr_db"]) < 0.01
    assert len(noisy) == len(voice_a)
    again, info2 = degrade_se(voice_a, item_rng(0, "r", "se"), TaskRecipe(reverb_prob=1.0), rooms)
    assert np.array_equal(noisy, again) and info2["snr_db"] == info["snr_db"]  # deterministic


@needs_espeak
def test_tse_mixture_has_the_stated_snr(voice_a, tmp_path):
    other = speak(tmp_path / "b.wav", "en+f2", "Someone else talks over it.", 24000)
    for k in range(4):
        mix, info = mix_tse(voice_a, other, item_rng(1, f"u{k}", "tse"), TaskRecipe())
        assert -5 <= info["snr_db"] <= 5 and len(mix) == len(voice_a)
        assert abs(snr_db(info["target"], info["interferer"]) - info["snr_db"]) < 0.01
        assert abs(projected_snr(mix, voice_a) - info["snr_db"]) < 0.5


@needs_espeak
def test_vc_copy_differs_in_pitch(tmp_path):
    wav = speak(tmp_path / "c.wav", "en+m3", "The pitch of this voice goes somewhere else.", 16000)
    f_orig = pitch_hz(wav, 16000)
    for k in range(2):
        y, info = perturb_timbre(wav, 16000, item_rng(0, f"v{k}", "vc"), TaskRecipe())
        assert len(y) == len(wav) and 3 <= abs(info["pitch_semitones"]) <= 7
        shift = 12 * np.log2(pitch_hz(y, 16000) / f_orig)
        assert abs(shift - info["pitch_semitones"]) < 1.0, (shift, info)


def test_pairing_skips_single_speakers_and_is_deterministic():
    ids = ["a1", "a2", "a3", "b1", "b2", "c1", "x"]
    spk = ["A", "A", "A", "B", "B", "C", None]
    partners, skipped = pair_items(ids, spk, "tse", seed=3)
    assert skipped == {"c1": "speaker has one utterance", "x": "no speaker label"}
    for uid, p in partners.items():
        assert p["prompt"] != uid and spk[ids.index(p["prompt"])] == spk[ids.index(uid)]
        assert spk[ids.index(p["interferer"])] not in (None, spk[ids.index(uid)])
    assert pair_items(ids, spk, "tse", seed=3) == (partners, skipped)
    assert pair_items(ids, spk, "se", seed=3) == ({}, {})
    vc, skipped = pair_items(["a1", "a2"], ["A", "A"], "vc", seed=0)
    assert vc == {"a1": {"prompt": "a2"}, "a2": {"prompt": "a1"}} and not skipped
    _, skipped = pair_items(["a1", "a2"], ["A", "A"], "tse", seed=0)
    assert set(skipped.values()) == {"no other speaker for an interferer"}


# ------------------------------------------------------------------ end to end per task
@pytest.fixture(scope="module")
def task_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("task_clips")
    texts = ("One little test sentence.", "And here is another one.")
    for v in ("en+m3", "en+f2"):
        for i, t in enumerate(texts):
            speak(root / v / f"u{i}.wav", v, t)
            (root / v / f"u{i}.txt").write_text(t)
    speak(root / "solo" / "u0.wav", "en-us+m1", "Only one clip and no transcript.")
    return root


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory, shared_dir):
    from metis_speech.bundle import random_bundle

    return random_bundle(tmp_path_factory.mktemp("bundle"), preset="tiny", tasks=(), phone_vocab=shared_dir / "g2p" / "vocab.json")


EXPECTED_SKIPS = {
    "vc": {"speaker has one utterance": 1},
    "tse": {"speaker has one utterance": 1},
    "se": {},
    "tts": {"missing transcript": 1},
    "tse+phones": {"speaker has one utterance": 1},
}


@needs_espeak
@pytest.mark.parametrize("variant", ["vc", "tse", "se", "tts", "tse+phones"])
def test_task_shards_train(variant, task_clips, tiny_bundle, tmp_path, make_config):
    from metis_speech.training.data import TokenDataset
    from metis_speech.training.prepare_cli import main
    from metis_speech.training.trainer import Trainer, load_train_config

    task, with_phones = variant.split("+")[0], variant.endswith("+phones")
    out = tmp_path / task
    rc = main([str(task_clips), "--out", str(out), "--model", str(tiny_bundle), "--task", task, "--no-acoustic",
               "--language", "en", "--shard-size", "3", "--seed", "5", "--quiet", "--reverb-prob", "1.0"]
              + (["--phones"] if with_phones else []))
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    kept = 5 - sum(EXPECTED_SKIPS[variant].values())
    assert s["utterances"] == kept and s["skipped"] == EXPECTED_SKIPS[variant]
    metas = [(f.with_suffix(".safetensors"), m) for f in sorted(out.glob("shard-*.json"))
             for m in json.loads(f.read_text())["items"]]
    require = ("semantic",) + (("phones",) if task == "tts" or with_phones else ()) + (("cond",) if task != "tts" else ())
    ds = TokenDataset(path=out, require=require, vocab=1024, phone_vocab=1024)
    assert len(ds) == kept and not ds.skipped
    from safetensors import safe_open

    for f, m in metas:
        with safe_open(str(f), "pt") as h:
            sem = h.get_tensor(f"{m['id']}/semantic")
            keys = set(h.keys())
            T = sem.shape[0]
            assert T == m["frames"]
            if task == "tts":
                assert f"{m['id']}/cond" not in keys and h.get_tensor(f"{m['id']}/phones").numel() > 5
                continue
            cond = h.get_tensor(f"{m['id']}/cond")
            assert cond.shape == (T, 128) and bool(cond.float().isfinite().all())
            if task in ("vc", "tse"):
                # [prompt ; target]: the prompt is another utterance of the same speaker
                plen = int(h.get_tensor(f"{m['id']}/prompt_len")[0])
                assert plen == m["prompt_len"] and 0 < plen < T and m["prompt"] != m["id"]
                assert m["prompt"].split("__")[0] == m["id"].split("__")[0]
                assert abs((T - plen) / 50 - m["seconds"]) < 0.1
                if with_phones:  # [prompt transcript ; target transcript], the prompt used whole
                    from metis_speech.text import PhoneTokenizer

                    tok = PhoneTokenizer(str(tiny_bundle / "vocab.json"))
                    text = lambda uid: (task_clips / uid.replace("__", "/")).with_suffix(".txt").read_text()
                    want = tok(text(m["prompt"]), "en").ids + tok(text(m["id"]), "en").ids
                    assert h.get_tensor(f"{m['id']}/phones").tolist() == want
            else:
                assert f"{m['id']}/prompt_len" not in keys and abs(T / 50 - m["seconds"]) < 0.1
        if task == "tse":
            assert -5 <= m["snr_db"] <= 5 and m["interferer"].split("__")[0] != m["id"].split("__")[0]
        if task == "se":
            assert -5 <= m["snr_db"] <= 20 and m["rt60"] is not None
            # the stated SNR is the one the recipe makes for this item (a function of seed and id)
            from metis_speech.audio import load_audio

            clean, _ = load_audio(m["audio"], 24000)
            _, info = degrade_se(clean, item_rng(5, m["id"], "se"), TaskRecipe(reverb_prob=1.0), room_bank(5, TaskRecipe()))
            assert info["snr_db"] == m["snr_db"]
            assert abs(snr_db(info["speech"], info["noise_wav"]) - m["snr_db"]) < 0.01
    # the stage-1 trainer takes the shards as they are
    component = "stage1_tts" if task == "tts" else "stage1_omni" if with_phones else "stage1_adapter"
    d = make_config(component, tmp_path / "run", steps=3)
    d["data"] = {"path": str(out), "max_frames": 2048}
    summary = Trainer(load_train_config(d)).train()
    assert summary["step"] == 3 and np.isfinite(summary["last"]["loss"]) and not summary["skipped"]
