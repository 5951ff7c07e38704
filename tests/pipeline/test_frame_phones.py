"""TTS with a ``frame_phones`` stage 1 (Stage1Config): the prompt's phones are aligned to its
semantic ids, the target's laid out by the duration predictor over the target length, and both
reach the network (and an S2A with ``frame_phones``, S2AConfig); a length too short for the
text's phones is refused by name."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from metis_speech import pipeline
from metis_speech.errors import MetisError
from metis_speech.loading import build_model, load_checkpoint, save_checkpoint
from metis_speech.models.align import skippable_ids
from metis_speech.pipeline import Metis
from metis_speech.text.vocab import load_vocab

from .conftest import FAST


@pytest.fixture(scope="module")
def frame_bundle(tiny_bundle, tmp_path_factory):
    b = tmp_path_factory.mktemp("fp") / "bundle"
    shutil.copytree(tiny_bundle, b)
    old = load_checkpoint(b / "stage1_tts")
    net = build_model(dataclasses.replace(old.cfg, frame_phones=True))
    net.load_state_dict(old.state_dict(), strict=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        net.align_table.copy_(torch.log_softmax(torch.randn(net.align_table.shape, generator=g), dim=-1))
        skip = skippable_ids(load_vocab(b / "vocab.json").symbol_to_id, net.cfg.phone_vocab_size)
        net.align_skip.copy_(torch.from_numpy(skip.astype(np.float32)))
        net.frame_phone_proj.weight.normal_(0, 0.02, generator=g)
    save_checkpoint(net, b / "stage1_tts")
    old = load_checkpoint(b / "s2a_full")
    s2a = build_model(dataclasses.replace(old.cfg, frame_phones=True, phone_vocab_size=net.cfg.phone_vocab_size,
                                          phone_pad_id=net.cfg.phone_pad_id))
    s2a.load_state_dict(old.state_dict(), strict=False)
    with torch.no_grad():
        s2a.frame_phone_proj.weight.normal_(0, 0.02, generator=g)
        s2a.align_table.copy_(torch.log_softmax(torch.randn(s2a.align_table.shape, generator=g), dim=-1))
        s2a.align_skip.copy_(torch.from_numpy(skip.astype(np.float32)))
    save_checkpoint(s2a, b / "s2a_full")
    return b


def test_tts_gives_the_network_aligned_prompt_phones_and_laid_out_target_phones(frame_bundle, audio_files, monkeypatch):
    seen = {}
    real, real_s2a = pipeline.stage1_generate, pipeline.s2a_generate

    def spy(model, lens, prompts, phones, cond, settings, gens, frame_phones=None, **kw):
        seen.update(lens=list(lens), prompts=[p.clone() for p in prompts], phones=[p.clone() for p in phones],
                    frames=frame_phones)
        return real(model, lens, prompts, phones, cond, settings, gens, frame_phones=frame_phones, **kw)

    def spy_s2a(model, *a, frame_phones=None, **kw):
        seen["s2a_frames"] = frame_phones
        return real_s2a(model, *a, frame_phones=frame_phones, **kw)

    monkeypatch.setattr(pipeline, "stage1_generate", spy)
    monkeypatch.setattr(pipeline, "s2a_generate", spy_s2a)
    m = Metis.from_pretrained("tts", frame_bundle, device="cpu")
    out = m.tts("Hello there, friend.", audio_files["prompt"], "A test of my voice.", language="en", seed=1, **FAST)
    assert out.wav.size > 0
    stage1 = m._net("stage1")
    pad, skip = stage1.cfg.phone_pad_id, stage1.align_skip.numpy() > 0.5
    (fp,) = seen["frames"]
    n, tp_len = seen["lens"][0], int(seen["prompts"][0].shape[0])
    assert fp.shape[0] == tp_len + n
    assert (fp[:tp_len] != pad).any()  # the prompt aligned to its transcript
    target = fp[tp_len:].tolist()
    assert pad not in target

    def runs(ids):  # the phones in order, boundaries and punctuation left out, repeats merged
        kept = [p for p in ids if not skip[p]]
        return [p for i, p in enumerate(kept) if i == 0 or kept[i - 1] != p]

    tp = m._net("phones")("Hello there, friend.", "en").ids
    assert seen["phones"][0].tolist()[-len(tp):] == tp
    assert runs(target) == runs(tp)  # every phone of the text on its frames, in order
    (s2a_fp,) = seen["s2a_frames"]  # the S2A reads the same frame phones over [prompt ; target]
    assert torch.equal(s2a_fp, fp)


def test_tts_refuses_a_duration_too_short_for_the_phones(frame_bundle, audio_files):
    m = Metis.from_pretrained("tts", frame_bundle, device="cpu")
    with pytest.raises(MetisError, match="too short for"):
        m.tts("This sentence has far too many phones for its length.", audio_files["prompt"], "A test of my voice.",
              duration=0.2, language="en", seed=1, **FAST)


def test_semantic_to_speech_places_a_transcript_on_the_frames(frame_bundle, tiny_bundle, audio_files, monkeypatch):
    """``semantic_to_speech(ids, text=...)``: the S2A's own table aligns the transcript's phones to
    the ids and every phone reaches the S2A in order (none on the prompt's frames); a transcript
    the frames cannot hold, an empty one, or an S2A that reads no text is refused by name."""
    seen = {}
    real_s2a = pipeline.s2a_generate

    def spy_s2a(model, *a, frame_phones=None, **kw):
        seen["frames"] = frame_phones
        return real_s2a(model, *a, frame_phones=frame_phones, **kw)

    monkeypatch.setattr(pipeline, "s2a_generate", spy_s2a)
    m = Metis.from_pretrained("se", frame_bundle, device="cpu")
    from metis_speech.audio import load_audio

    wav, _ = load_audio(audio_files["prompt"], m.ssl_sample_rate)
    ids = m.semantic_ids([wav])[0]
    out = m.semantic_to_speech(ids, audio_files["prompt"], seed=0, text="A test of my voice.", language="en")
    assert out.wav.size > 0
    (fp,) = seen["frames"]
    s2a = m._net("s2a")
    pad, skip = s2a.cfg.phone_pad_id, s2a.align_skip.numpy() > 0.5
    tp = int(fp.shape[0]) - int(ids.shape[0])
    assert tp > 0 and (fp[:tp] == pad).all()  # the prompt's frames: no phones
    phones = [p for p in m._net("phones")("A test of my voice.", "en").ids if not skip[p]]
    got = [p for p in fp[tp:].tolist() if p != pad and not skip[p]]
    assert [p for i, p in enumerate(got) if i == 0 or got[i - 1] != p] == \
        [p for i, p in enumerate(phones) if i == 0 or phones[i - 1] != p]
    with pytest.raises(MetisError, match="too few for the phones"):
        m.semantic_to_speech(ids[:4], text="A far longer transcript than four frames can ever hold.", language="en")
    with pytest.raises(MetisError, match="non-empty string"):
        m.semantic_to_speech(ids, text="  ")
    plain = Metis.from_pretrained("se", tiny_bundle, device="cpu")
    with pytest.raises(MetisError, match="takes no transcript"):
        plain.semantic_to_speech(ids, text="A test of my voice.", language="en")


def test_phone_guidance_comes_from_the_bundle_and_the_call(frame_bundle, audio_files, monkeypatch, tmp_path):
    """The S2A's phone guidance: the bundle's ``decoding.default.tts`` sets it (and the layers it
    covers), ``tts(phone_guidance=)`` overrides it; out-of-range values are refused by name."""
    import json

    b = tmp_path / "bundle"
    shutil.copytree(frame_bundle, b)
    man = json.loads((b / "metis.json").read_text())
    man.setdefault("decoding", {}).setdefault("default", {})["tts"] = {"s2a_phone_guidance": 1.5, "s2a_phone_guidance_layers": 1}
    (b / "metis.json").write_text(json.dumps(man))
    seen = []
    real_s2a = pipeline.s2a_generate

    def spy_s2a(model, *a, **kw):
        seen.append((kw.get("phone_guidance"), kw.get("phone_guidance_layers")))
        return real_s2a(model, *a, **kw)

    monkeypatch.setattr(pipeline, "s2a_generate", spy_s2a)
    m = Metis.from_pretrained("tts", b, device="cpu")
    args = ("Hello there, friend.", audio_files["prompt"], "A test of my voice.")
    m.tts(*args, language="en", seed=1, **FAST)
    assert seen and set(seen) == {(1.5, 1)}  # every S2A network of the bundle (1-layer and full)
    seen.clear()
    m.tts(*args, language="en", seed=1, phone_guidance=0.5, **FAST)
    assert seen and set(seen) == {(0.5, 1)}
    for bad in (-1, float("nan"), 50):
        with pytest.raises(MetisError, match="phone_guidance must be"):
            m.tts(*args, language="en", phone_guidance=bad, **FAST)
    se = Metis.from_pretrained("se", b, device="cpu")  # semantic_to_speech(text=): the model's TTS default
    from metis_speech.audio import load_audio

    ids = se.semantic_ids([load_audio(audio_files["prompt"], se.ssl_sample_rate)[0]])[0]
    seen.clear()
    se.semantic_to_speech(ids, seed=0, text="A test of my voice.", language="en")
    assert seen and set(seen) == {(1.5, 1)}
    seen.clear()
    se.semantic_to_speech(ids, seed=0, text="A test of my voice.", language="en", phone_guidance=0)
    assert seen and set(seen) == {(0, 1)}
    with pytest.raises(MetisError, match="phone_guidance must be"):
        se.semantic_to_speech(ids, text="A test of my voice.", phone_guidance=-2)
    man["decoding"]["default"]["tts"]["s2a_phone_guidance_layers"] = 1.5
    with pytest.raises(MetisError, match="s2a_phone_guidance_layers must be"):
        pipeline.bundle_defaults(man, "default", "tts")


class _FakeAligner:
    """align_phones / skippable_phones of a frame-phones stage 1, with fixed durations."""

    def __init__(self, durations, skip, fail=False):
        self.durations, self.skip, self.fail = np.asarray(durations), np.asarray(skip, dtype=bool), fail

    @property
    def skippable_phones(self):
        return self.skip

    def align_phones(self, phones, semantic):
        if self.fail:
            raise ValueError("frames cannot hold the phones")
        assert self.durations.sum() == len(semantic) and len(self.durations) == len(phones) + 2
        return self.durations


def test_prompt_tail_cuts_at_the_earliest_word_boundary_that_fits():
    # phones a _ b _ c (ids 0 1 2 1 3; id 1 is the skippable word boundary) over
    # [silence 2 ; a 10 ; _ 0 ; b 10 ; _ 1 ; c 10 ; silence 3] = 36 frames
    phones, sem = [0, 1, 2, 1, 3], torch.zeros(36, dtype=torch.long)
    al = _FakeAligner([2, 10, 0, 10, 1, 10, 3], [False, True, False, False])
    dur = Metis._align_prompt(al, phones, sem)
    assert dur.tolist() == [2, 10, 0, 10, 1, 10, 3]

    def tail(max_frames):
        return Metis._prompt_tail(al, phones, dur, len(sem), max_frames)

    assert tail(36) == (0, 0)  # short enough: the whole prompt
    assert tail(24) == (12, 2)  # after "a _": b _ c and the end silence, 24 frames
    assert tail(20) == (23, 4)  # only "c" fits (13 frames)
    assert tail(5) == (0, 0)  # no boundary leaves so little: the whole prompt
    bad = _FakeAligner([], [False, True], fail=True)
    assert Metis._align_prompt(bad, phones, sem) is None and Metis._align_prompt(al, [], sem) is None
    assert Metis._prompt_tail(bad, phones, None, len(sem), 20) == (0, 0)  # unalignable: whole


def test_max_prompt_s_gives_stage_1_and_the_s2a_the_prompt_s_last_words(frame_bundle, audio_files, monkeypatch, tmp_path):
    """``max_prompt_s``: stage 1 and the S2A both get the prompt's semantic / acoustic ids from
    the cut that _prompt_tail places, the prompt phones after it and the frame phones from it
    on; 0 gives the whole prompt; the bundle's ``decoding.default.tts`` sets the default; bad
    values are refused by name."""
    import json

    seen = {}
    real, real_s2a = pipeline.stage1_generate, pipeline.s2a_generate

    def spy(model, lens, prompts, phones, cond, settings, gens, frame_phones=None, **kw):
        seen.update(prompt=prompts[0].clone(), phones=phones[0].clone(), frames=frame_phones[0].clone(), n=lens[0])
        return real(model, lens, prompts, phones, cond, settings, gens, frame_phones=frame_phones, **kw)

    def spy_s2a(model, semantic, prompt_codes, *a, frame_phones=None, **kw):
        seen.update(s2a_sem=semantic[0].clone(), s2a_codes=prompt_codes[0].clone(), s2a_frames=frame_phones[0].clone())
        return real_s2a(model, semantic, prompt_codes, *a, frame_phones=frame_phones, **kw)

    monkeypatch.setattr(pipeline, "stage1_generate", spy)
    monkeypatch.setattr(pipeline, "s2a_generate", spy_s2a)
    m = Metis.from_pretrained("tts", frame_bundle, device="cpu")
    args = ("Hello there, friend.", audio_files["prompt"], "A test of my voice, read out slowly.")
    assert m.defaults.max_prompt_s == 0
    m.tts(*args, language="en", seed=1, **FAST)
    whole = dict(seen)
    pp = m._net("phones")("A test of my voice, read out slowly.", "en").ids
    assert whole["phones"].tolist()[: len(pp)] == pp
    m.tts(*args, language="en", seed=1, max_prompt_s=1.0, **FAST)
    st1 = m._net("stage1")
    f0, j0 = Metis._prompt_tail(st1, pp, Metis._align_prompt(st1, pp, whole["prompt"]), whole["prompt"].shape[0], 50)
    assert 0 < f0 and whole["prompt"].shape[0] - f0 <= 50  # the 2 s prompt is cut to its last second or less
    assert torch.equal(seen["prompt"], whole["prompt"][f0:])
    assert seen["phones"].tolist() == pp[j0:] + whole["phones"].tolist()[len(pp):]
    assert torch.equal(seen["frames"], whole["frames"][f0:]) and seen["n"] == whole["n"]  # same target length
    assert torch.equal(seen["s2a_frames"], seen["frames"])
    assert seen["s2a_codes"].shape[0] == whole["s2a_codes"].shape[0] - f0
    assert torch.equal(seen["s2a_sem"][: seen["prompt"].shape[0]], seen["prompt"])
    for bad in (-1, float("nan"), 100, True):
        with pytest.raises(MetisError, match="max_prompt_s must be"):
            m.tts(*args, language="en", max_prompt_s=bad, **FAST)
    b = tmp_path / "bundle"
    shutil.copytree(frame_bundle, b)
    man = json.loads((b / "metis.json").read_text())
    man.setdefault("decoding", {}).setdefault("default", {})["tts"] = {"max_prompt_s": 1.0}
    (b / "metis.json").write_text(json.dumps(man))
    m2 = Metis.from_pretrained("tts", b, device="cpu")
    assert m2.defaults.max_prompt_s == 1.0
    m2.tts(*args, language="en", seed=1, **FAST)
    assert torch.equal(seen["prompt"], whole["prompt"][f0:])
    m2.tts(*args, language="en", seed=1, max_prompt_s=0, **FAST)
    assert torch.equal(seen["prompt"], whole["prompt"])


def test_max_prompt_s_is_refused_where_stage_1_cannot_align(tiny_bundle, audio_files):
    m = Metis.from_pretrained("tts", tiny_bundle, device="cpu")
    with pytest.raises(MetisError, match="max_prompt_s needs a stage 1 that aligns phones"):
        m.tts("Hello there.", audio_files["prompt"], "A test.", language="en", max_prompt_s=1.0, **FAST)
    assert m.tts("Hello there.", audio_files["prompt"], "A test.", language="en", max_prompt_s=0, seed=0, **FAST).wav.size
    lazy = Metis.from_pretrained("tts", "random:tiny", device="cpu", lazy=True)  # official / random: refused up front
    with pytest.raises(MetisError, match="max_prompt_s needs a stage 1 that aligns phones"):
        lazy.tts("Hello there.", audio_files["prompt"], "A test.", language="en", max_prompt_s=1.0, **FAST)
    assert lazy.loaded == []  # before any network is loaded (official weights: before any download)
