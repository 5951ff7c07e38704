"""Every task end to end through the Python API on a tiny random bundle (CPU)."""

import numpy as np
import pytest
import torch

from metis_speech.errors import AudioError, MetisError
from metis_speech.pipeline import Metis, pick_device
from tests.pipeline.conftest import FAST

HOP = 480  # tiny preset: 24 kHz, 50 Hz frames


@pytest.fixture(scope="module")
def models(tiny_bundle):
    cache = {}

    def get(task):
        if task not in cache:
            cache[task] = Metis.from_pretrained(task, tiny_bundle, device="cpu")
        return cache[task]

    return get


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device(None).type in ("cpu", "cuda", "mps")


def test_tts_duration_and_rate(models, audio_files):
    m = models("tts")
    out = m.tts("Hello there, friend.", audio_files["prompt"], "A test of my voice.", duration=1.0, language="en", seed=1, **FAST)
    assert out.sample_rate == 24000
    assert len(out.wav) == 50 * HOP
    assert out.semantic_ids.shape == (50,) and out.acoustic_ids.shape[0] == 50
    assert np.isfinite(out.wav).all() and np.abs(out.wav).max() <= 1.0


def test_tts_length_follows_text_and_splits_sentences(models, audio_files):
    m = models("tts")
    short = m.tts("Hi.", audio_files["prompt"], "A test of my voice here.", language="en", seed=0, **FAST)
    long = m.tts("This is a much longer sentence. And here is a second one, also long.", audio_files["prompt"],
                 "A test of my voice here.", language="en", seed=0, **FAST)
    assert long.duration > 3 * short.duration


def test_tts_same_seed_same_audio(models, audio_files):
    m = models("tts")
    a = m.tts("Same words.", audio_files["prompt"], "A test.", duration=0.5, language="en", seed=3, **FAST)
    b = m.tts("Same words.", audio_files["prompt"], "A test.", duration=0.5, language="en", seed=3, **FAST)
    assert np.array_equal(a.wav, b.wav)


@pytest.mark.parametrize("task", ["vc", "tse"])
def test_speech_conditioned_length_matches_input(models, audio_files, task):
    m = models(task)
    fn = m.vc if task == "vc" else m.tse
    out = fn(audio_files["source"], audio_files["prompt"], seed=0, **FAST)
    # 1.5 s source -> 75 frames at 50 Hz (+- one frame of fbank rounding)
    assert abs(len(out.semantic_ids) - 75) <= 1
    assert len(out.wav) == len(out.semantic_ids) * HOP


def test_se_needs_no_prompt_and_loads_only_what_it_needs(models, audio_files):
    m = models("se")
    assert "semantic_codec" not in m.loaded and "acoustic_encoder" not in m.loaded
    out = m.se(audio_files["stereo"], seed=0, **FAST)
    assert abs(out.duration - 1.2) < 0.05


def test_se_refine_filters_the_input_with_the_generated_speech(models, audio_files):
    """refine="wiener" / "lsa": the input (read at the output rate) filtered with the generated
    speech as (part of) the speech estimate, its full length; the ids stay the generated
    speech's; "none" is the generated speech; a bad mode is refused before any network runs."""
    from metis_speech.audio import load_audio
    from metis_speech.dsp import lsa_refine, wiener_refine

    m = models("se")
    assert m.defaults.refine == "none"  # the preset's default: the reference's output
    gen = m.se(audio_files["source"], seed=3, **FAST)
    assert m.se(audio_files["source"], seed=3, refine="none", **FAST).wav.tolist() == gen.wav.tolist()
    ref = m.se(audio_files["source"], seed=3, refine="wiener", **FAST)
    noisy, _ = load_audio(audio_files["source"], m.sample_rate)
    assert len(ref.wav) == len(noisy)
    np.testing.assert_allclose(ref.wav, wiener_refine(noisy, gen.wav, m.sample_rate, floor=m.refine_floor), atol=1e-6)
    assert np.array_equal(ref.semantic_ids, gen.semantic_ids)
    lsa = m.se(audio_files["source"], seed=3, refine="lsa", **FAST)
    want = lsa_refine(noisy, gen.wav, m.sample_rate, speech_weight=m.lsa_speech_weight, floor=m.lsa_floor)
    np.testing.assert_allclose(lsa.wav, want, atol=1e-6)
    assert np.array_equal(lsa.semantic_ids, gen.semantic_ids) and not np.allclose(lsa.wav, ref.wav, atol=1e-4)
    with pytest.raises(MetisError, match=r"refine must be one of \['none', 'wiener', 'lsa'\]"):
        m.se(audio_files["source"], refine="mask")


def test_batch_equals_single(models, audio_files):
    m = models("se")
    batch = m.se([audio_files["source"], audio_files["stereo"]], seed=10, **FAST)
    single = m.se(audio_files["stereo"], seed=11, **FAST)
    assert isinstance(batch, list) and len(batch) == 2
    assert np.array_equal(batch[1].semantic_ids, single.semantic_ids)
    assert np.allclose(batch[1].wav, single.wav, atol=1e-5)


def test_text_guided_tse_with_omni(models, audio_files):
    m = models("omni")
    out = m.tse(audio_files["source"], audio_files["prompt"], text="the words of the target", seed=0, **FAST)
    assert abs(len(out.semantic_ids) - 75) <= 1
    with pytest.raises(MetisError, match="omni"):
        models("tse").tse(audio_files["source"], audio_files["prompt"], text="hello")


def test_array_input(models):
    from tests.pipeline.conftest import speechlike

    m = models("se")
    out = m.se((speechlike(1.0, 8000), 8000), seed=0, **FAST)
    assert abs(out.duration - 1.0) < 0.05


@pytest.mark.parametrize(
    "name,match",
    [("silent", "silent"), ("nan", "NaN"), ("corrupt", "not a readable audio"), ("empty", "empty"), ("missing", "no such file")],
)
def test_bad_audio(models, audio_files, tmp_path, name, match):
    path = audio_files.get(name, tmp_path / "missing.wav")
    with pytest.raises(AudioError, match=match) as e:
        models("se").se(path)
    assert "\n" not in str(e.value)


def test_prompt_limits(models, audio_files):
    m = models("vc")
    with pytest.raises(AudioError, match="at least 1 s"):
        m.vc(audio_files["source"], audio_files["short"])
    with pytest.warns(UserWarning, match="first 30 s"):
        out = m.vc(audio_files["source"], audio_files["long_prompt"], **FAST)
    assert abs(len(out.semantic_ids) - 75) <= 1


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(text="   "), "text is empty"), (dict(prompt_text=""), "prompt_text is empty"),
     (dict(duration=0), "duration"), (dict(duration=1e6), "duration"), (dict(text="!!! ..."), "no phones"),
     (dict(language="xx"), "language"), (dict(steps=0), "steps")],
)
def test_tts_bad_input(models, audio_files, kwargs, match):
    args = dict(text="Hello.", prompt=audio_files["prompt"], prompt_text="A test.", language="en", **FAST)
    args.update(kwargs)
    with pytest.raises((MetisError, ValueError), match=match):
        models("tts").tts(**args)


def test_wrong_task_and_source(models, tmp_path, audio_files):
    with pytest.raises(MetisError, match="loaded for 'se'"):
        models("se").vc(audio_files["source"], audio_files["prompt"])
    with pytest.raises(MetisError, match="neither 'hub' nor an existing directory"):
        Metis.from_pretrained("se", tmp_path / "nothing")
    with pytest.raises(MetisError, match="unknown task"):
        Metis.from_pretrained("sing", tmp_path)


def test_long_input_windows_carry_context(models, audio_files, monkeypatch):
    """A long input is cut into windows; each window's prompt ends with the previous
    window's last generated tokens, and the pieces add up to the input's length."""
    import metis_speech.pipeline as pl

    m = models("se")
    monkeypatch.setattr(m, "window_s", 0.5)
    monkeypatch.setattr(m, "context_s", 0.2)
    calls = []
    real = pl.stage1_generate

    def spy(model, lens, prompts, *a, **k):
        out = real(model, lens, prompts, *a, **k)
        calls.append(([p.clone() for p in prompts], [o.clone() for o in out]))
        return out

    monkeypatch.setattr(pl, "stage1_generate", spy)
    out = m.se(audio_files["source"], seed=0, **FAST)  # 1.5 s -> 3 windows of 0.5 s
    assert len(calls) == 3
    assert calls[0][0][0].numel() == 0  # SE: no prompt in the first window
    for (_, prev_out), (next_prompt, _) in zip(calls, calls[1:]):
        assert torch.equal(next_prompt[0], prev_out[0][-10:])  # 0.2 s = 10 frames of context
    assert abs(len(out.semantic_ids) - 75) <= 2
    assert len(out.wav) == len(out.semantic_ids) * HOP


def test_l2s_video_to_speech(models, audio_files, face_video):
    path, box = face_video
    m = models("l2s")
    out = m.l2s(path, audio_files["prompt"], crop_box=box, seed=0, **FAST)
    assert len(out.semantic_ids) == 60  # 30 frames at 25 fps -> 60 frames at 50 Hz
    assert len(out.wav) == 60 * HOP


def test_l2s_bad_video(models, audio_files, tmp_path):
    from metis_speech.video import VideoError

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoError) as e:
        models("l2s").l2s(bad, audio_files["prompt"], crop_box=(0, 0, 10, 10))
    assert "bad.mp4" in str(e.value) and "\n" not in str(e.value)


def test_fast_preset_fewer_steps_and_used_by_the_api(tiny_bundle, audio_files):
    from metis_speech.pipeline import DEFAULTS, FAST as FAST_PRESET, PRESETS

    assert set(PRESETS) == {"default", "fast"} and PRESETS["default"] is DEFAULTS
    for task, d in DEFAULTS.items():
        f = FAST_PRESET[task]
        assert f.steps < d.steps and sum(f.s2a_steps) < sum(d.s2a_steps), task
        assert (f.guidance, f.temperature) == (d.guidance, d.temperature), task
    fast = Metis.from_pretrained("se", tiny_bundle, device="cpu", preset="fast")
    assert fast.defaults is FAST_PRESET["se"]
    assert fast._settings(None, None, None).steps == FAST_PRESET["se"].steps
    assert fast._settings(3, None, None).steps == 3  # an explicit setting still wins
    calls = []
    fast._acoustic.__func__  # the S2A defaults come from the preset too
    import metis_speech.pipeline as pl

    orig = pl.s2a_generate

    def spy(model, sem, prompts, steps, *a, **k):
        calls.append(list(steps))
        return orig(model, sem, prompts, steps, *a, **k)

    pl.s2a_generate = spy
    try:
        out = fast.se(str(audio_files["source"]), seed=0)
    finally:
        pl.s2a_generate = orig
    assert calls[-1][:2] == list(FAST_PRESET["se"].s2a_steps[:2])
    assert np.isfinite(out.wav).all()
    with pytest.raises(MetisError, match="preset"):
        Metis.from_pretrained("se", tiny_bundle, device="cpu", preset="fastest")


def test_int8_is_opt_in_and_runs(tiny_bundle, audio_files):
    plain = Metis.from_pretrained("se", tiny_bundle, device="cpu")
    assert plain.quantize is None
    assert any(type(m) is torch.nn.Linear for m in plain._net("stage1").modules())
    q = Metis.from_pretrained("se", tiny_bundle, device="cpu", quantize="int8")
    for name in ("stage1", "s2a"):
        assert not any(type(m) is torch.nn.Linear for m in q._net(name).modules()), name
    a = plain.se(str(audio_files["source"]), seed=0, **FAST)
    b = q.se(str(audio_files["source"]), seed=0, **FAST)
    assert a.wav.shape == b.wav.shape and np.isfinite(b.wav).all()
    with pytest.raises(MetisError, match="int8"):
        Metis.from_pretrained("se", tiny_bundle, device="cpu", quantize="int4")


def test_bf16_on_a_cpu_without_bf16_stores_half_and_computes_fp32(tiny_bundle, audio_files, monkeypatch):
    import metis_speech.models.precision as precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    m = Metis.from_pretrained("se", tiny_bundle, device="cpu", dtype="bf16")
    assert m.half_storage == torch.bfloat16 and m.dtype == torch.float32
    out = m.se(str(audio_files["source"]), seed=0, **FAST)
    assert np.isfinite(out.wav).all()


def test_bundle_decoding_defaults(tiny_bundle, tmp_path, audio_files):
    """A bundle's metis.json can set its own decoding defaults per preset and task; they replace
    the preset's fields they name, explicit arguments still win, bad settings fail clearly."""
    import json
    import shutil

    from metis_speech.pipeline import DEFAULTS, FAST as FAST_PRESET, bundle_defaults

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "metis.json").read_text())
    m["decoding"] = {"default": {"se": {"steps": 3, "s2a_steps": [3, 2]}}}
    (b / "metis.json").write_text(json.dumps(m))
    se = Metis.from_pretrained("se", b, device="cpu", lazy=True)
    assert (se.defaults.steps, se.defaults.s2a_steps) == (3, (3, 2))
    assert se.defaults.guidance == DEFAULTS["se"].guidance  # fields not named keep the preset's
    assert se._settings(None, None, None).steps == 3 and se._settings(5, None, None).steps == 5
    assert Metis.from_pretrained("tts", b, device="cpu", lazy=True).defaults == DEFAULTS["tts"]  # other tasks untouched
    assert Metis.from_pretrained("se", b, device="cpu", lazy=True, preset="fast").defaults == FAST_PRESET["se"]
    assert bundle_defaults(None, "default", "tts") == DEFAULTS["tts"]
    with pytest.raises(MetisError, match=r"decoding\.default\.se: unknown setting\(s\) \['stepz'\]"):
        bundle_defaults({"decoding": {"default": {"se": {"stepz": 3}}}}, "default", "se")
    with pytest.raises(MetisError, match="steps"):
        bundle_defaults({"decoding": {"default": {"se": {"s2a_steps": ["x"]}}}}, "default", "se")
    assert bundle_defaults({"decoding": {"fast": {"se": {"refine": "wiener"}}}}, "fast", "se").refine == "wiener"
    assert bundle_defaults({"decoding": {"default": {"se": {"refine": "lsa"}}}}, "default", "se").refine == "lsa"
    with pytest.raises(MetisError, match=r"decoding\.default\.se: refine must be one of \['none', 'wiener', 'lsa'\], got 'mask'"):
        bundle_defaults({"decoding": {"default": {"se": {"refine": "mask"}}}}, "default", "se")


def test_tts_rate_ignores_prompt_silence(models, audio_files):
    """The target length follows the prompt's speaking rate over its speech: leading and
    trailing silence of the prompt does not slow the generated speech down."""
    import soundfile as sf

    from metis_speech.pipeline import speech_frames

    wav, sr = sf.read(audio_files["prompt"], dtype="float32")
    pad = np.zeros(sr, np.float32)
    assert speech_frames(np.concatenate([pad, wav, pad]), sr) == speech_frames(wav, sr) <= len(wav) * 50 // sr
    assert speech_frames(np.zeros(sr, np.float32), sr) == 50  # all silent: nothing to trim against
    m = models("tts")
    plain = m.tts("Hello there, friend.", (wav, sr), "A test of my voice.", language="en", seed=1, **FAST)
    padded = m.tts("Hello there, friend.", (np.concatenate([pad, wav, pad]), sr), "A test of my voice.", language="en",
                   seed=1, **FAST)
    assert abs(len(padded.wav) - len(plain.wav)) <= 2 * HOP


def test_speech_frames_caps_inner_pauses():
    """With ``max_pause_s``, a pause inside the speech (quiet by more than ``pause_db`` against
    the speech, here a noise floor 50 dB down) counts at most ``max_pause_s``; leading and
    trailing silence still counts nothing; without it, pauses count in full."""
    from metis_speech.pipeline import speech_frames
    from tests.pipeline.conftest import speechlike

    sr = 16000
    word = speechlike(0.4, sr, 140)
    gap = (np.random.default_rng(0).standard_normal(sr) * 10 ** (-50 / 20) * np.abs(word).max()).astype(np.float32)
    words = np.concatenate([word, gap, word, gap, word])  # 3 words with 1 s pauses
    assert speech_frames(words, sr) == 50 * 3 * 0.4 + 50 * 2 * 1.0
    capped = speech_frames(words, sr, max_pause_s=0.25)
    assert abs(capped - (50 * 3 * 0.4 + 50 * 2 * 0.25)) <= 3
    assert speech_frames(word, sr, max_pause_s=0.25) == speech_frames(word, sr)  # no pause: as before
    assert speech_frames(np.concatenate([np.zeros(sr, np.float32), words]), sr, max_pause_s=0.25) == capped


def test_tts_length_stays_in_a_speaking_rate_range(models, audio_files):
    """A prompt of words read one by one (long pauses) or spoken very fast does not stretch or
    squeeze the sentence out of ``Metis.speaking_rate`` (phones per second); ``duration``
    and ``speed`` still win, and ``speaking_rate = None`` turns the bound off."""
    from metis_speech.pipeline import bounded_length, sounding_phones
    from tests.pipeline.conftest import speechlike

    assert bounded_length(700, 41, 50, (9.0, 20.0)) == 228 and bounded_length(10, 41, 50, (9.0, 20.0)) == 102
    assert bounded_length(200, 41, 50, (9.0, 20.0)) == 200 and bounded_length(700, 41, 50, None) == 700
    assert sounding_phones(["b", "ɔː", "l", ",", "_", "b", "oʊ", "."]) == 5
    m = models("tts")
    text = "Hello there, my good friend."
    n_ph = sounding_phones(m._net("phones")(text, "en").phones)
    sr = 16000
    word = speechlike(0.3, sr, 130)
    slow = np.concatenate([word, np.zeros(2 * sr, np.float32)] * 3 + [word])  # 4 words, 2 s apart
    out = m.tts(text, (slow, sr), "A test of my voice.", language="en", seed=1, **FAST)
    assert out.duration <= n_ph / m.speaking_rate[0] + 0.05
    fixed = m.tts(text, (slow, sr), "A test of my voice.", duration=3.0, language="en", seed=1, **FAST)
    assert abs(fixed.duration - 3.0) < 0.05
    assert m.tts(text, (slow, sr), "A test of my voice.", language="en", seed=1, speed=0.5, **FAST).duration > out.duration
    try:
        m.speaking_rate, m.max_pause_s = None, None  # the prompt's rate as it is: much longer
        free = m.tts(text, (slow, sr), "A test of my voice.", language="en", seed=1, **FAST)
    finally:
        del m.speaking_rate, m.max_pause_s  # back to the class defaults
    assert free.duration > 2 * out.duration


@pytest.mark.parametrize("task", ["tts", "vc", "se"])
def test_low_memory_holds_one_stage_and_gives_the_same_output(tiny_bundle, audio_files, task, monkeypatch):
    """``low_memory=True`` loads each stage's networks when the stage starts and drops them when
    it ends: stage 1 never runs beside the S2A or the codec decoder, and nothing stays loaded
    after the call. The output is the one of the normal mode at the same seed."""
    import metis_speech.pipeline as pl

    def call(m):
        src, prompt = str(audio_files["source"]), str(audio_files["prompt"])
        if task == "tts":
            return m.tts("Hello there.", prompt, "A prompt transcript.", seed=3, **FAST)
        return m.vc(src, prompt, seed=3, **FAST) if task == "vc" else m.se(src, seed=3, **FAST)

    normal = call(Metis.from_pretrained(task, tiny_bundle, device="cpu"))
    lean = Metis.from_pretrained(task, tiny_bundle, device="cpu", low_memory=True)
    assert lean.loaded == []  # nothing is loaded before the first call either
    held = {}
    for fn in ("stage1_generate", "s2a_generate"):
        orig = getattr(pl, fn)

        def spy(*a, _orig=orig, _fn=fn, **k):
            held.setdefault(_fn, set()).update(lean.loaded)
            return _orig(*a, **k)

        monkeypatch.setattr(pl, fn, spy)
    loads = []
    orig_load = lean._load
    monkeypatch.setattr(lean, "_load", lambda name: (loads.append(name), orig_load(name))[1])
    out = call(lean)
    # every network is loaded for its stage only: none just to read a sample rate or the RVQ
    # depth (those come from the configs); the codec decoder twice where it also quantises a prompt
    counts = {n: loads.count(n) for n in set(loads)}
    assert counts.pop("acoustic_decoder") == (1 if task == "se" else 2), loads
    assert set(counts.values()) == {1}, loads
    assert not held["stage1_generate"] & {"s2a", "s2a_1layer", "acoustic_decoder", "acoustic_encoder", "semantic_codec"}
    assert not held["s2a_generate"] & {"stage1", "ssl", "acoustic_encoder", "semantic_codec"}
    assert set(lean.loaded) <= {"phones"}
    assert out.sample_rate == normal.sample_rate and np.array_equal(out.wav, normal.wav)
    assert np.array_equal(out.semantic_ids, normal.semantic_ids)


def test_semantic_to_speech_renders_ids_with_or_without_a_prompt(models, audio_files):
    m = models("se")
    out = m.se(audio_files["source"], seed=0, **FAST)
    ids = out.semantic_ids
    alone = m.semantic_to_speech(ids, seed=0, s2a_steps=FAST["s2a_steps"])
    assert len(alone.wav) == len(ids) * HOP and alone.acoustic_ids.shape[0] == len(ids)
    assert np.array_equal(alone.semantic_ids, ids)
    again = m.semantic_to_speech(list(ids), seed=0, s2a_steps=FAST["s2a_steps"])
    assert np.array_equal(again.wav, alone.wav)
    voiced = models("vc").semantic_to_speech(torch.from_numpy(ids)[None], audio_files["prompt"], seed=0,
                                             s2a_steps=FAST["s2a_steps"])
    assert len(voiced.wav) == len(ids) * HOP  # the prompt is context, not output
    assert not np.array_equal(voiced.acoustic_ids, alone.acoustic_ids)


def test_semantic_to_speech_keeps_known_lower_layers(models):
    m = models("se")
    ids = np.arange(12) % 50
    free = m.semantic_to_speech(ids, seed=0, s2a_steps=FAST["s2a_steps"]).acoustic_ids
    given = (free[:, :2] + 1) % 2  # ids the S2A would not have drawn for the first two layers
    out = m.semantic_to_speech(ids, seed=0, s2a_steps=FAST["s2a_steps"], known_codes=given)
    assert np.array_equal(out.acoustic_ids[:, :2], given) and out.acoustic_ids.shape == free.shape
    one = m.semantic_to_speech(ids, seed=0, s2a_steps=FAST["s2a_steps"], known_codes=torch.from_numpy(given[:, 0]))
    assert np.array_equal(one.acoustic_ids[:, 0], given[:, 0])
    q = free.shape[1]
    for bad, match in [(given[:5], r"\(12, 1\.\."), (np.zeros((12, q + 1), int), r"\(12, 1\.\."),
                       (given + 10**6, r"ids must be in \[0, "), (given.astype(float), "integers"),
                       ("abc", "integers")]:
        with pytest.raises(MetisError, match=match):
            m.semantic_to_speech(ids, known_codes=bad)


@pytest.mark.parametrize("ids, match", [
    ([], "non-empty"),
    ([[1, 2], [3, 4]], "1-D"),
    ([0.5, 1.5], "integers"),
    ([0, 5, 10**6], r"\[0, "),
    ([-1, 2], r"\[0, "),
    ("abc", "1-D|integers"),
])
def test_semantic_to_speech_bad_ids(models, ids, match):
    with pytest.raises(MetisError, match=match):
        models("se").semantic_to_speech(ids)


def test_semantic_to_speech_bad_prompt_and_steps(models, audio_files, tmp_path):
    m = models("vc")
    with pytest.raises(MetisError, match="s2a_steps"):
        m.semantic_to_speech([1, 2, 3], s2a_steps=[0])
    with pytest.raises(MetisError):
        m.semantic_to_speech([1, 2, 3], tmp_path / "missing.wav")


def test_one_layer_s2a_that_reads_the_whole_prompt_gets_it(tiny_bundle, tmp_path, audio_files, monkeypatch):
    """A bundle whose 1-layer S2A has ``prompt_quantizers`` gets every RVQ layer of the prompt
    (the official 1-layer model gets layer 0 only); the full S2A still gets its own count."""
    import shutil
    from dataclasses import replace

    import metis_speech.pipeline as pipeline
    from metis_speech.loading import build_model, load_config, save_checkpoint

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    q = load_config(b / "s2a_full" / "config.json").num_quantizers
    cfg = replace(load_config(b / "s2a_1layer" / "config.json"), prompt_quantizers=q)
    save_checkpoint(build_model(cfg), b / "s2a_1layer")
    seen = []
    real = pipeline.s2a_generate

    def spy(model, semantic, prompts, *a, **k):
        seen.append((model.num_quantizers, {int(p.shape[1]) for p in prompts}))
        return real(model, semantic, prompts, *a, **k)

    monkeypatch.setattr(pipeline, "s2a_generate", spy)
    m = Metis.from_pretrained("tts", b, device="cpu")
    out = m.tts("Hello there.", audio_files["prompt"], "a prompt", seed=0, **FAST)
    assert out.wav.size > 0 and np.isfinite(out.wav).all()
    assert seen == [(1, {q}), (q, {q})]
