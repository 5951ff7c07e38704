"""Iterative masked decoding: schedule, re-masking rule, reproducibility, batching."""

import math

import pytest
import torch

from metis_speech.config import S2AConfig, Stage1Config
from metis_speech.decoding import (
    DecodeSettings,
    guidance_combine,
    masked_decode,
    s2a_generate,
    stage1_generate,
    top_k_filter,
)
from metis_speech.models.s2a import S2AModel
from metis_speech.models.stage1 import Stage1Model


def _randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def omni():
    cfg = Stage1Config(hidden_size=64, num_layers=2, num_heads=4, codebook_size=96, use_phone_cond=True, adapter="gated", cond_dim=12)
    return _randomise(Stage1Model(cfg))


@pytest.fixture(scope="module")
def s2a():
    return _randomise(S2AModel(S2AConfig(hidden_size=64, num_layers=2, num_heads=4, num_quantizers=3, codebook_size=40, cond_codebook_size=96)), 1)


def test_top_k_count_matches_reference_float64():
    logits = torch.randn(1, 2, 200)
    kept = torch.isfinite(top_k_filter(logits, 0.98)).sum(-1)
    assert kept.tolist() == [[5, 5]]  # ceil((1-0.98)*200) = 5 in float64, not 4
    assert torch.isfinite(top_k_filter(torch.randn(1, 1, 128), 0.98)).sum() == 3


def test_schedule_and_committed_tokens_never_remasked():
    T, V, steps = 37, 11, 7
    history = []

    def step(seq, masked, t):
        history.append((masked.clone(), seq.clone(), t))
        return torch.randn(1, T, V)

    out = masked_decode(step, torch.tensor([T]), DecodeSettings(steps=steps, guidance=0), torch.Generator().manual_seed(0))
    assert len(history) == steps
    assert [round(h[2], 6) for h in history] == [round(1 - i / steps, 6) for i in range(steps)]
    counts = [int(h[0].sum()) for h in history]
    expected = [T] + [int(math.floor(math.sin(math.pi / 2 * (1 - i / steps)) * T)) for i in range(1, steps)]
    assert counts == expected
    for (m_prev, s_prev, _), (m_next, s_next, _) in zip(history, history[1:]):
        assert bool((m_next & ~m_prev).sum() == 0)  # only still-masked positions are re-masked
        committed = ~m_prev
        assert torch.equal(s_next[committed], s_prev[committed])
    assert out.shape == (1, T) and int(out.max()) < V


def test_seed_reproducible_and_seed_sensitive(omni):
    s = DecodeSettings(steps=6, guidance=1.5, temperature=1.0)
    phones = [torch.tensor([3, 5, 9, 12])]
    prompt = [torch.tensor([1, 2, 3, 4, 5])]
    cond = [torch.randn(5 + 9, 12, generator=torch.Generator().manual_seed(3))]
    a = stage1_generate(omni, [9], prompt, phones, cond, s, torch.Generator().manual_seed(7))
    b = stage1_generate(omni, [9], prompt, phones, cond, s, torch.Generator().manual_seed(7))
    c = stage1_generate(omni, [9], prompt, phones, cond, s, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (9,)


def test_batch_equals_single_items_with_per_item_generators(omni):
    s = DecodeSettings(steps=5, guidance=2.0, temperature=0.9, batch_guidance=False)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 96, (n,), generator=g) for n in (4, 7)]
    phones = [torch.randint(0, 300, (n,), generator=g) for n in (6, 3)]
    lens = [8, 11]
    conds = [torch.randn(p.shape[0] + n, 12, generator=g) for p, n in zip(prompts, lens)]
    batch = stage1_generate(omni, lens, prompts, phones, conds, s, [torch.Generator().manual_seed(i) for i in (1, 2)])
    for i in range(2):
        single = stage1_generate(omni, [lens[i]], [prompts[i]], [phones[i]], [conds[i]], s, [torch.Generator().manual_seed(i + 1)])
        assert torch.equal(batch[i], single[0]), i


def test_batched_guidance_pass_matches_two_passes(omni):
    base = dict(steps=4, guidance=2.5, temperature=0.9)
    prompt = [torch.tensor([5, 6, 7])]
    phones = [torch.tensor([1, 2, 3, 4, 5, 6])]
    out = []
    for batched in (False, True):
        s = DecodeSettings(**base, batch_guidance=batched)
        out.append(stage1_generate(omni, [10], prompt, phones, None, s, torch.Generator().manual_seed(5))[0])
    assert torch.equal(out[0], out[1])


def test_guidance_combine_rescale():
    hc, hu = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    out = guidance_combine(hc, hu, 2.0, 1.0)
    assert torch.allclose(out.std(), hc.std(), atol=1e-6)  # r = 1: std restored exactly
    per_item = guidance_combine(hc, hu, 2.0, 1.0, per_item=True)
    for b in range(2):
        assert torch.allclose(per_item[b].std(), hc[b].std(), atol=1e-6)
    assert torch.allclose(guidance_combine(hc, hu, 0.0, 0.75), hc, atol=1e-6)


def test_s2a_generate_layers_and_known_codes(s2a):
    s = DecodeSettings(guidance=2.5, temperature=1.5)
    sem = [torch.randint(0, 96, (12,)), torch.randint(0, 96, (9,))]
    prompt = [torch.randint(0, 40, (4, 3)), torch.randint(0, 40, (2, 3))]
    codes = s2a_generate(s2a, sem, prompt, [4, 2, 1], s, generator=torch.Generator().manual_seed(0))
    assert [c.shape for c in codes] == [(8, 3), (7, 3)]
    assert all(int(c.max()) < 40 for c in codes)
    known = [c[:, :1] for c in codes]
    again = s2a_generate(s2a, sem, prompt, [4, 2, 1], s, known_codes=known, generator=torch.Generator().manual_seed(1))
    for k, a in zip(known, again):
        assert torch.equal(a[:, :1], k)


def test_s2a_generate_reads_frame_phones_only_where_given():
    """An S2A with ``frame_phones``: frame phones all "none" give what no frame phones give; real
    ones (a trained, non-zero projection) change the codes; a length that is not the semantic
    ids' is refused; a model without frame phones ignores them."""
    cfg = S2AConfig(hidden_size=64, num_layers=2, num_heads=4, num_quantizers=3, codebook_size=40, cond_codebook_size=96,
                    frame_phones=True, phone_vocab_size=30, phone_pad_id=29)
    net = _randomise(S2AModel(cfg), 3)
    s = DecodeSettings(guidance=0.0, temperature=1.5)
    sem = [torch.randint(0, 96, (12,)), torch.randint(0, 96, (9,))]
    prompt = [torch.randint(0, 40, (4, 3)), torch.randint(0, 40, (2, 3))]
    none = [torch.full((12,), 29), torch.full((9,), 29)]
    phones = [torch.randint(0, 29, (12,)), torch.randint(0, 29, (9,))]

    def run(fp, model=net):
        return s2a_generate(model, sem, prompt, [4, 2, 1], s, generator=torch.Generator().manual_seed(0), frame_phones=fp)

    base = run(None)
    assert all(torch.equal(a, b) for a, b in zip(base, run(none)))
    assert not all(torch.equal(a, b) for a, b in zip(base, run(phones)))
    with pytest.raises(ValueError, match="frame_phones has 11 frames, the semantic ids 12"):
        run([phones[0][:11], phones[1]])
    plain = _randomise(S2AModel(S2AConfig(hidden_size=64, num_layers=2, num_heads=4, num_quantizers=3, codebook_size=40,
                                          cond_codebook_size=96)), 1)
    assert all(torch.equal(a, b) for a, b in zip(run(None, plain), run(phones, plain)))


def test_s2a_phone_guidance_steers_towards_the_frame_phones_per_item():
    """Phone guidance: a second pass without the frame phones, h = h_p + w (h_p - h_none). It
    changes the codes only where it can act (phones given, w > 0, guided layers); each item of a
    padded batch gets what it gets alone; the guided layer-0 logits are the formula's; bad
    values are refused."""
    cfg = S2AConfig(hidden_size=64, num_layers=2, num_heads=4, num_quantizers=3, codebook_size=40, cond_codebook_size=96,
                    frame_phones=True, phone_vocab_size=30, phone_pad_id=29)
    net = _randomise(S2AModel(cfg), 3)
    s = DecodeSettings(guidance=0.0, temperature=1.5, rescale=0.0)
    sem = [torch.randint(0, 96, (12,)), torch.randint(0, 96, (9,))]
    prompt = [torch.randint(0, 40, (4, 3)), torch.randint(0, 40, (2, 3))]
    none = [torch.full((12,), 29), torch.full((9,), 29)]
    phones = [torch.randint(0, 29, (12,)), torch.randint(0, 29, (9,))]

    def run(fp, w=0.0, layers=None, items=(0, 1)):
        gens = [torch.Generator().manual_seed(i) for i in items]
        return s2a_generate(net, [sem[i] for i in items], [prompt[i] for i in items], [4, 2, 1], s, generator=gens,
                            frame_phones=None if fp is None else [fp[i] for i in items], phone_guidance=w,
                            phone_guidance_layers=layers)

    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a, b))  # noqa: E731
    plain = run(phones)
    guided = run(phones, 3.0)
    assert not same(plain, guided)
    assert same(run(none, 3.0), run(none))  # nothing to steer towards: no second pass
    assert same(run(phones, 3.0, layers=0), plain)
    assert same(run(None, 3.0), run(None))
    for i in (0, 1):  # padding in the batch does not leak into an item
        assert torch.equal(run(phones, 3.0, items=(i,))[0], guided[i])
    # layer 0's first step by hand: every target frame masked, logits = W(h_p + w (h_p - h_none))
    captured = {}
    orig = net.to_logits[0].forward

    def spy(h):
        captured.setdefault("h", h.detach().clone())
        return orig(h)

    net.to_logits[0].forward = spy
    try:
        s2a_generate(net, sem[:1], prompt[:1], [1, 1, 1], s, frame_phones=phones[:1], phone_guidance=2.0, num_layers=1)
    finally:
        del net.to_logits[0].forward
    T = sem[0].shape[0] - prompt[0].shape[0]
    with torch.no_grad():
        h_p, h_none = (net(sem[0][None], prompt[0][None], torch.zeros(1, T, 3, dtype=torch.long), torch.ones(1, T, dtype=torch.bool),
                           0, torch.ones(1), frame_phones=fp).hidden for fp in (phones[0][None], None))
    torch.testing.assert_close(captured["h"], h_p + 2.0 * (h_p - h_none), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="phone_guidance must be >= 0"):
        run(phones, -1.0)
    with pytest.raises(ValueError, match="phone_guidance_layers"):
        run(phones, 1.0, layers=-1)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"steps": 10**6}, "sensible"), ({"guidance": -1}, "guidance"),
     ({"rescale": 2}, "rescale"), ({"filter_thres": 1.0}, "filter_thres")],
)
def test_bad_settings_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DecodeSettings(**kwargs)


def test_condition_length_mismatch_is_explained(omni):
    with pytest.raises(ValueError, match="frame condition has 5 frames"):
        stage1_generate(omni, [6], [torch.tensor([1, 2])], None, [torch.randn(5, 12)], DecodeSettings(steps=2))


@pytest.mark.parametrize("mode", ["packed", "batched"])
def test_one_forward_guidance_pair_equals_two_forwards(omni, mode):
    """The guidance pair in one forward (packed side by side, or batched as two rows) gives
    the same ids as two separate forwards at the same seed, batch of two with padding."""
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 96, (n,), generator=g) for n in (5, 3)]
    phones = [torch.randint(0, 300, (n,), generator=g) for n in (4, 7)]
    lens = [9, 6]
    conds = [torch.randn(p.shape[0] + n, 12, generator=g) for p, n in zip(prompts, lens)]
    out = {}
    for m in ("separate", mode):
        s = DecodeSettings(steps=5, guidance=2.5, temperature=0.9, guidance_mode=m)
        gens = [torch.Generator().manual_seed(i) for i in (3, 4)]
        out[m] = stage1_generate(omni, lens, prompts, phones, conds, s, gens)
    for a, b in zip(out["separate"], out[mode]):
        assert torch.equal(a, b)


def test_packed_forward_hidden_states_match_separate(omni):
    """One packed forward = the conditional and unconditional forwards, within float rounding."""
    from metis_speech.decoding import _GuidedForward

    est = omni.diff_estimator
    B, C, T, H = 2, 6, 5, 64
    g = torch.Generator().manual_seed(0)
    x, x_u = torch.randn(B, C + T, H, generator=g), torch.randn(B, T, H, generator=g)
    key_mask = torch.ones(B, C + T)
    key_mask[1, :2] = 0  # a left-padded context
    tmask = torch.ones(B, T)
    tmask[0, -1] = 0  # a right-padded target
    with torch.no_grad():
        sep = _GuidedForward(est, "separate", B, C, T, key_mask, tmask, torch.float32)(x, x_u, 0.6)
        for mode in ("packed", "batched"):
            got = _GuidedForward(est, mode, B, C, T, key_mask, tmask, torch.float32)(x, x_u, 0.6)
            valid = tmask.bool()
            for a, b in zip(sep, got):
                scale = float(a[valid].abs().max())
                assert float((a[valid] - b[valid]).abs().max()) <= 2e-6 * scale, mode
        ref_c = est(x, torch.full((B,), 0.6), key_mask)[:, C:]
        assert torch.equal(sep[0], ref_c)


def test_s2a_one_forward_guidance_pair_equals_two_forwards(s2a):
    sem = [torch.randint(0, 96, (12,), generator=torch.Generator().manual_seed(1)), torch.randint(0, 96, (9,))]
    prompt = [torch.randint(0, 40, (4, 3)), torch.randint(0, 40, (2, 3))]
    out = []
    for mode in ("separate", "packed", "batched"):
        s = DecodeSettings(guidance=2.5, temperature=1.5, guidance_mode=mode)
        gens = [torch.Generator().manual_seed(i) for i in (5, 6)]
        out.append(s2a_generate(s2a, sem, prompt, [4, 2, 1], s, generator=gens))
    for other in out[1:]:
        for a, b in zip(out[0], other):
            assert torch.equal(a, b)


def test_guidance_mode_auto_and_validation():
    from metis_speech.decoding import _guidance_mode

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _guidance_mode(DecodeSettings(), cpu) == "separate"
    assert _guidance_mode(DecodeSettings(guidance_mode="packed"), cpu) == "packed"
    assert _guidance_mode(DecodeSettings(), cuda) == "batched"
    assert _guidance_mode(DecodeSettings(guidance=0), cpu) == "none"
    assert _guidance_mode(DecodeSettings(batch_guidance=False), cpu) == "separate"
    with pytest.raises(ValueError, match="guidance_mode"):
        DecodeSettings(guidance_mode="fused")


def test_one_layer_s2a_can_read_the_whole_prompt():
    """``prompt_quantizers``: a 1-layer S2A that predicts layer 0 from every RVQ layer of its
    prompt (the official 1-layer model reads layer 0 only, which stays the default)."""
    from metis_speech.config import ConfigError

    kw = dict(hidden_size=64, num_layers=2, num_heads=4, num_quantizers=1, codebook_size=40, cond_codebook_size=96)
    assert S2AConfig(**kw).prompt_layers == 1 and len(S2AModel(S2AConfig(**kw)).token_emb) == 1
    one = _randomise(S2AModel(S2AConfig(**kw, prompt_quantizers=3)), 2)
    assert (one.num_quantizers, one.prompt_layers, len(one.token_emb), len(one.to_logits)) == (1, 3, 3, 1)
    s = DecodeSettings(guidance=0.0, temperature=0.0)
    sem = [torch.randint(0, 96, (12,), generator=torch.Generator().manual_seed(3))]
    prompt = torch.randint(0, 40, (4, 3), generator=torch.Generator().manual_seed(4))
    other = prompt.clone()
    other[:, 2] = (other[:, 2] + 7) % 40  # only the prompt's third layer differs

    def run(p):
        return s2a_generate(one, sem, [p], [3], s, generator=torch.Generator().manual_seed(0))[0]

    a, b = run(prompt), run(other)
    assert a.shape == (8, 1) and not torch.equal(a, b)
    # more layers than it reads are ignored; fewer are refused
    assert torch.equal(run(torch.cat([prompt, prompt[:, :1]], 1)), a)
    with pytest.raises(ValueError, match="2 RVQ layers, the S2A reads 3"):
        run(prompt[:, :2])
    # an item without a prompt in a batch with one
    out = s2a_generate(one, sem * 2, [prompt, torch.zeros(0, 3, dtype=torch.long)][::-1], [3], s)
    assert [o.shape for o in out] == [(12, 1), (8, 1)]
    with pytest.raises(ConfigError, match="prompt_quantizers must be an integer >= num_quantizers"):
        S2AConfig(**{**kw, "num_quantizers": 3}, prompt_quantizers=2)
