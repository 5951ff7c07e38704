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
