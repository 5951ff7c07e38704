"""Session fixtures for the evaluation tests: flite clips and a 4-item test set in tmp dirs."""

from __future__ import annotations

import json

import pytest

from metis_speech.audio import load_audio, save_audio

from .speech import SENTENCES, SR, VOICES, add_noise, mix, synth


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict:
    """{(voice, sentence_key): path} for every flite voice and sentence a, b."""
    root = tmp_path_factory.mktemp("voices")
    return {(v, k): synth(SENTENCES[k], v, root / f"{v}_{k}.wav") for v in VOICES for k in ("a", "b")}


@pytest.fixture(scope="session")
def mini_set(clips, tmp_path_factory) -> dict:
    """A 4-item test set (tts, vc, se, tse) plus a folder of 'generated' audio.

    Returns {"root", "testset", "generated"}; generated files are named <id>.wav.
    """
    root = tmp_path_factory.mktemp("mini_set")
    (root / "gen").mkdir()
    load = lambda v, k: load_audio(clips[(v, k)], SR)[0]  # noqa: E731
    slt_a, slt_b, rms_a, rms_b, awb_a, awb_b = load("slt", "a"), load("slt", "b"), load("rms", "a"), load("rms", "b"), load("awb", "a"), load("awb", "b")
    noisy = add_noise(rms_b, 5.0, seed=1)
    mixture = mix(awb_b, slt_a, 0.0)
    files = {
        "ref/tts1.wav": slt_a, "prompt/slt_b.wav": slt_b,
        "in/vc1.wav": awb_a, "ref/vc1.wav": rms_a,
        "in/se1.wav": noisy, "ref/se1.wav": rms_b,
        "in/tse1.wav": mixture, "ref/tse1.wav": awb_b, "prompt/awb_a.wav": awb_a,
        "gen/tts1.wav": slt_a,  # a perfect TTS system: the reference itself
        "gen/vc1.wav": rms_a,  # a perfect VC system
        "gen/se1.wav": add_noise(rms_b, 20.0, seed=2),  # an enhancer that removed most noise
        "gen/tse1.wav": add_noise(awb_b, 15.0, seed=3),  # an extractor that removed the interferer
    }
    for rel, wav in files.items():
        save_audio(root / rel, wav, SR)
    rms_prompt = "prompt/rms_b.wav"
    save_audio(root / rms_prompt, rms_b, SR)
    items = [
        {"id": "tts1", "task": "tts", "prompt": "prompt/slt_b.wav", "prompt_text": SENTENCES["b"], "text": SENTENCES["a"], "reference": "ref/tts1.wav", "speaker": "slt"},
        {"id": "vc1", "task": "vc", "input": "in/vc1.wav", "prompt": rms_prompt, "text": SENTENCES["a"], "reference": "ref/vc1.wav", "speaker": "rms"},
        {"id": "se1", "task": "se", "input": "in/se1.wav", "text": SENTENCES["b"], "reference": "ref/se1.wav", "speaker": "rms", "snr_db": 5.0, "noise_type": "white"},
        {"id": "tse1", "task": "tse", "input": "in/tse1.wav", "prompt": "prompt/awb_a.wav", "text": SENTENCES["b"], "reference": "ref/tse1.wav", "speaker": "awb", "snr_db": 0.0},
    ]
    testset = root / "testset.jsonl"
    testset.write_text("".join(json.dumps(it) + "\n" for it in items))
    return {"root": root, "testset": testset, "generated": root / "gen", "items": items}
