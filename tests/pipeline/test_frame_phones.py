"""TTS with a ``frame_phones`` stage 1 (Stage1Config): the prompt's phones are aligned to its
semantic ids, the target's laid out by the duration predictor over the target length, and both
reach the network; a length too short for the text's phones is refused by name."""

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
    return b


def test_tts_gives_the_network_aligned_prompt_phones_and_laid_out_target_phones(frame_bundle, audio_files, monkeypatch):
    seen = {}
    real = pipeline.stage1_generate

    def spy(model, lens, prompts, phones, cond, settings, gens, frame_phones=None, **kw):
        seen.update(lens=list(lens), prompts=[p.clone() for p in prompts], phones=[p.clone() for p in phones],
                    frames=frame_phones)
        return real(model, lens, prompts, phones, cond, settings, gens, frame_phones=frame_phones, **kw)

    monkeypatch.setattr(pipeline, "stage1_generate", spy)
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


def test_tts_refuses_a_duration_too_short_for_the_phones(frame_bundle, audio_files):
    m = Metis.from_pretrained("tts", frame_bundle, device="cpu")
    with pytest.raises(MetisError, match="too short for"):
        m.tts("This sentence has far too many phones for its length.", audio_files["prompt"], "A test of my voice.",
              duration=0.2, language="en", seed=1, **FAST)
