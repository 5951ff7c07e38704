"""What the shipped small model does for its inputs, measured on voices it never trained on
(flite awb and slt sentences written for this test; examples/prompt.wav as the prompt).

The bounds sit between the first shipped model (tiny preset, random SSL front end, TTS and
SE only) and the shipped ones since, measured here with the same inputs and seeds:

=====================================  ===========  ==========  ==========  ==========  ==========  ==================
measure                                first model  H200 model  ddaf13d     e1e9661     this model  bound
=====================================  ===========  ==========  ==========  ==========  ==========  ==================
SE: STOI of 2 sentences at 5 dB        0.49         0.59        0.68        0.70        0.71        > 0.6 (input 0.82)
SE refine="wiener" (default before): STOI / PESQ-wb gain over the input, each sentence: +0.06 / +0.28 and
    +0.05 / +0.21 (0.813 -> 0.878, 1.03 -> 1.30; 0.820 -> 0.870, 1.03 -> 1.24)
SE refine="lsa" (default now): +0.072 / +0.40 and +0.060 / +0.40; bound > +0.02 / > +0.30
VC: SIM to prompt minus the source's   (no VC)      +0.23 (*)   +0.29       +0.30       +0.37       >= +0.15
TSE: SIM to the interferer, drop       (no TSE)     0.24        0.23        0.25        0.26        >= 0.15
TSE: SIM to the target                 (no TSE)     0.70        0.81        0.82        0.82        >= 0.75
=====================================  ===========  ==========  ==========  ==========  ==========  ==================

TTS (examples/prompt.wav; the README's sentence and the two above, seeds 0-2; pocketsphinx): mean
WER 1.01 for every model before frame phones (e8cd04d's weights), 0.81 with them (stage-1 TTS with
frame_phones, guidance 0, temperature 0.5), 0.76 with the S2A reading them too (22ee4d5), 0.47 with
the S2A's phone guidance at 8, 0.41 with only the prompt's last 3 s of words used (max_prompt_s;
this model's defaults); bound < 0.62. The README's sentence alone: 0.86, 0.86, 0.52, 0.48; bound < 0.70.

(*) one conversion; now the mean of 2 sentences x 2 seeds (+0.38 with VC's S2A guidance 0, the default since). ddaf13d has the log-mel acoustic
codec, the S2A re-trained on its ids and its own decoding settings (README); e1e9661 has
that S2A and stage-1 TTS trained further on a 1.89 h corpus; "this model" has e1e9661's networks
with the acoustic codec's decoder fine-tuned (recipe small_acoustic_decoder; same ids). Honest
reading: the generated SE speech is still less intelligible than its noisy input (STOI 0.71 vs
0.82); it removes the noise but loses words. So the shipped SE default now returns the input
filtered with that speech as its speech spectrum (refine="wiener"), which keeps the words;
now the input enhanced by an MMSE log-spectral amplitude gain whose a-priori SNR blends the
input's own estimate with that speech's (refine="lsa"): more noise gone, the words kept.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")

REPO = Path(__file__).resolve().parents[2]
PROMPT = REPO / "examples" / "prompt.wav"  # flite slt
SENTENCES = ["The harbour was calm when the fishing boats came back in the evening.",
             "Please remember to water the plants before you leave on Friday."]


def _flite(tmp: Path, voice: str, text: str, name: str) -> np.ndarray:
    from metis_speech.audio import load_audio

    f = tmp / f"{name}.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(f)], check=True)
    return load_audio(str(f), 16000)[0]


def _at16k(out) -> np.ndarray:
    from metis_speech.audio import resample

    return resample(np.asarray(out.wav, dtype=np.float32), out.sample_rate, 16000)


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voices")
    awb = [_flite(tmp, "awb", t, f"awb{i}") for i, t in enumerate(SENTENCES)]
    slt = _flite(tmp, "slt", "She folded the letter twice and put it in the pocket of her coat.", "slt")
    return {"awb": awb, "slt": slt, "dir": tmp}


def test_shipped_model_does_every_audio_task():
    from metis_speech.shipped import small_model_tasks

    assert {"tts", "se", "vc", "tse"} <= set(small_model_tasks())


def test_tts_says_more_of_the_words_than_before_phone_guidance():
    from metis_speech import Metis
    from metis_speech.eval.asr import transcribe
    from metis_speech.eval.text import wer

    tts = Metis.from_pretrained("tts", "small", device="cpu")
    prompt_text = "The bakery was quiet when the shop keeper arrived with the wicker chair."
    readme = "Hello, this is a small Metis speaking."
    errors = {}
    for text in [readme] + SENTENCES:
        for seed in (0, 1, 2):
            out = tts.tts(text, str(PROMPT), prompt_text, seed=seed)
            heard = transcribe(out.wav, out.sample_rate)
            errors.setdefault(text, []).append(wer(text, heard))
            print(f"TTS seed {seed}: {heard!r} (WER {errors[text][-1]:.2f})")
    every = [e for v in errors.values() for e in v]
    print("TTS mean WER", np.mean(every), "the README's sentence", np.mean(errors[readme]))
    assert np.mean(every) < 0.62
    assert np.mean(errors[readme]) < 0.70


def test_se_keeps_more_of_the_speech_than_the_previous_model(voices):
    """The generated speech (refine="none"): STOI above the bound of the table. The shipped
    default (refine="lsa": the input enhanced with the generated speech's help) beats its
    input on both STOI and PESQ for every sentence, PESQ by more than "wiener" did."""
    from metis_speech import Metis
    from metis_speech.eval.quality import pesq_wb, stoi

    se = Metis.from_pretrained("se", "small", device="cpu")
    assert se.defaults.refine == "lsa"
    generated, refined = [], []
    for i, clean in enumerate(voices["awb"]):
        rng = np.random.default_rng(i)
        noise = rng.standard_normal(clean.size).astype(np.float32)
        noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-5 / 20)  # 5 dB SNR
        noisy = clean + noise
        y = _at16k(se.se((noisy, 16000), seed=0, refine="none"))[: clean.size]
        generated.append(stoi(clean[: y.size], y))
        y = _at16k(se.se((noisy, 16000), seed=0))[: clean.size]
        refined.append((stoi(clean[: y.size], y) - stoi(clean, noisy), pesq_wb(clean[: y.size], y) - pesq_wb(clean, noisy)))
    print("SE STOI of the generated speech", generated, "refined output's STOI and PESQ gains over the input", refined)
    assert np.mean(generated) > 0.6
    assert all(ds > 0.02 and dp > 0.30 for ds, dp in refined)


def test_vc_moves_the_voice_to_the_prompt(voices):
    from metis_speech import Metis
    from metis_speech.audio import load_audio
    from metis_speech.eval.speaker import speaker_similarity

    prompt = load_audio(str(PROMPT), 16000)[0]
    vc = Metis.from_pretrained("vc", "small", device="cpu")
    gains = []  # both sentences, two seeds each: one conversion is too noisy a measure
    for i, src in enumerate(voices["awb"]):
        for seed in (0, 1):
            y = _at16k(vc.vc(str(voices["dir"] / f"awb{i}.wav"), prompt=str(PROMPT), seed=seed))
            gains.append(speaker_similarity(y, prompt, 16000) - speaker_similarity(src, prompt, 16000))
    print("VC SIM gains", gains)
    assert np.mean(gains) >= 0.15


def test_tse_removes_the_other_voice(voices):
    from metis_speech import Metis
    from metis_speech.eval.speaker import speaker_similarity

    target = voices["slt"]
    other = np.resize(voices["awb"][0], target.size)
    other = other * np.sqrt(np.mean(target**2) / np.mean(other**2))  # 0 dB
    mix = 0.5 * (target + other)
    tse = Metis.from_pretrained("tse", "small", device="cpu")
    y = _at16k(tse.tse((mix, 16000), prompt=str(PROMPT), seed=0))
    drop = speaker_similarity(mix, other, 16000) - speaker_similarity(y, other, 16000)
    to_target = speaker_similarity(y, target, 16000)
    print("TSE interferer SIM drop", drop, "SIM to target", to_target)
    assert drop >= 0.15 and to_target >= 0.75
