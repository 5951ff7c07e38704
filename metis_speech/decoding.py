"""Iterative masked decoding for stage 1 and S2A (METIS_SPEC.md §5).

S steps, t_i = 1 - i/S. Every target position starts masked. Each step runs the network
(conditional pass, plus an unconditional pass when guidance w > 0, combined on hidden
states with std rescaling), keeps the top ceil((1-filter_thres)·V) logits, samples with
Gumbel noise at temperature ``temperature·t_i`` (argmax at the last step), fills the masked
positions, and re-masks the floor(sin(π t_{i+1}/2)·T) least confident of the positions that
were masked (committed tokens are never re-masked).

Batches: items may have different prompt, phone and target lengths. Prompts and phones are
left-padded and targets right-padded, so that the relative positions seen by the rotary
attention are those of the item alone; padded positions are masked as keys. With
``rescale="batch"`` the guidance rescale uses one std over the whole batch, exactly as the
reference; the default ``"item"`` uses each item's own valid positions, so an item's
result does not depend on what it is batched with (identical for B = 1).

Randomness comes only from the ``generator`` (a ``torch.Generator``): the same seed gives
the same ids. The order of random draws matches the reference loop (one (B,T,V) uniform
tensor per sampling step, one (B,T) tensor for the confidence noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "DecodeSettings",
    "top_k_filter",
    "guidance_combine",
    "masked_decode",
    "stage1_generate",
    "s2a_generate",
]


@dataclass
class DecodeSettings:
    """Settings of one masked-decoding run (one stage, or one RVQ layer of S2A)."""

    steps: int = 25
    guidance: float = 2.5  # w; 0 disables the unconditional pass
    rescale: float = 0.75  # r in h = r·h·std(h_c)/std(h) + (1-r)·h
    temperature: float = 0.9
    filter_thres: float = 0.98  # keep the top ceil((1 - filter_thres)·V) logits
    rescale_scope: str = "item"  # "item" or "batch" (reference)
    batch_guidance: Optional[bool] = None  # True: "batched", False: "separate" (overrides guidance_mode)
    # how the conditional and unconditional passes run: "packed" (one forward, the two
    # sequences side by side in one row, attention kept within each: no padding), "batched"
    # (one forward, two rows, the shorter padded), "separate" (two forwards), or "auto"
    # (separate on CPU, batched on GPU: on this 2-core CPU the packed pass's dense attention
    # mask made the small model's attention the larger cost, so packing is opt-in there).
    # All give the same result up to float rounding.
    guidance_mode: str = "auto"

    def __post_init__(self):
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.steps > 1000:
            raise ValueError(f"steps={self.steps} is not a sensible number of decoding steps (1..1000)")
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        if not 0.0 <= self.rescale <= 1.0:
            raise ValueError(f"rescale must be in [0, 1], got {self.rescale}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 <= self.filter_thres < 1.0:
            raise ValueError(f"filter_thres must be in [0, 1), got {self.filter_thres}")
        if self.rescale_scope not in ("item", "batch"):
            raise ValueError("rescale_scope must be 'item' or 'batch'")
        if self.guidance_mode not in ("auto", "packed", "batched", "separate"):
            raise ValueError("guidance_mode must be 'auto', 'packed', 'batched' or 'separate'")


def top_k_count(filter_thres: float, vocab: int) -> int:
    """k = ceil((1 - filter_thres)·V) in float64, as the reference (V=200 -> 5, not 4)."""
    return max(1, math.ceil((1 - filter_thres) * vocab))


def top_k_filter(logits: torch.Tensor, filter_thres: float) -> torch.Tensor:
    """(B, T, V) -> same shape, everything but the top k set to -inf."""
    k = top_k_count(filter_thres, logits.shape[-1])
    val, ind = logits.topk(k, dim=-1)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter_(-1, ind, val)


Generators = Union[None, torch.Generator, Sequence[torch.Generator]]


def _draw(shape, dtype, generator: Optional[torch.Generator], device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.empty(shape, dtype=dtype, device=gen_device).uniform_(0, 1, generator=generator)
    return u.to(device)


def _uniform(shape, like: torch.Tensor, generator: Generators, lens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """U(0,1) noise of ``shape`` (B, T, ...). With one generator per item, item b draws only
    its own (T_b, ...) block, so its result does not depend on the rest of the batch."""
    if generator is None or isinstance(generator, torch.Generator):
        return _draw(shape, like.dtype, generator, like.device)
    out = torch.full(shape, 0.5, dtype=like.dtype, device=like.device)
    for b, g in enumerate(generator):
        n = int(lens[b]) if lens is not None else shape[1]
        out[b, :n] = _draw((n, *shape[2:]), like.dtype, g, like.device)
    return out


def _gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u + 1e-10) + 1e-10)


def _std(h: torch.Tensor, valid: Optional[torch.Tensor], per_item: bool) -> torch.Tensor:
    """Unbiased std over all (T, H) elements: one scalar (batch) or (B,1,1) (item)."""
    if not per_item:
        if valid is None:
            return h.std()
        return h[valid].std()
    if valid is None:
        return h.flatten(1).std(dim=1).view(-1, 1, 1)
    out = []
    for b in range(h.shape[0]):
        out.append(h[b][valid[b]].std())
    return torch.stack(out).view(-1, 1, 1)


def guidance_combine(
    h_cond: torch.Tensor,
    h_uncond: torch.Tensor,
    w: float,
    rescale: float,
    valid: Optional[torch.Tensor] = None,
    per_item: bool = False,
) -> torch.Tensor:
    """h = h_c + w(h_c - h_u), rescaled: r·h·std(h_c)/std(h) + (1-r)·h.

    h_*: (B, T, H); valid: (B, T) bool of real (non-padded) positions.
    """
    s_cond = _std(h_cond, valid, per_item)
    g = h_cond + w * (h_cond - h_uncond)
    s_g = _std(g, valid, per_item)
    return rescale * (g * s_cond / s_g) + (1 - rescale) * g


# -------------------------------------------------------------------- core loop
StepFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def masked_decode(
    step_logits: StepFn,
    target_lens: torch.Tensor,
    settings: DecodeSettings,
    generator: Generators = None,
    progress: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """Generic confidence-based iterative decoding.

    step_logits(seq (B,T) long, masked (B,T) bool, t float) -> logits (B,T,V), already
    guidance-combined. target_lens: (B,) valid target lengths (T = max). ``generator``: one
    ``torch.Generator`` for the batch, or one per item (batch-independent results).
    Returns (B, T) ids (0 at padded positions).
    """
    if generator is not None and not isinstance(generator, torch.Generator) and len(generator) != len(target_lens):
        raise ValueError(f"got {len(generator)} generators for a batch of {len(target_lens)}")
    device = target_lens.device
    B = target_lens.shape[0]
    T = int(target_lens.max())
    valid = torch.arange(T, device=device)[None, :] < target_lens[:, None]
    seq = torch.zeros(B, T, dtype=torch.long, device=device)
    masked = valid.clone()
    steps = settings.steps
    t_list = [1.0 - i / steps for i in range(steps)] + [0.0]
    for i in range(steps):
        t = t_list[i]
        logits = top_k_filter(step_logits(seq, masked, t).float(), settings.filter_thres)
        temp = settings.temperature * t
        if i == steps - 1 and steps > 1:
            sampled = logits.argmax(dim=-1)
        else:
            if steps == 1:
                temp = 0.2
            noise = _gumbel(_uniform(logits.shape, logits, generator, target_lens))
            sampled = (logits / max(temp, 1e-3) + noise).argmax(dim=-1)
        seq = torch.where(masked, sampled, seq)
        probs = logits.softmax(dim=-1).gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
        choice_temp = 1.0 * t
        scores = 1 - (choice_temp * _gumbel(_uniform(probs.shape, probs, generator, target_lens)) + probs)
        if progress is not None:
            progress(1)
        # number of positions to keep masked, per item, as the reference computes it (fp32)
        next_ratio = torch.sin(torch.tensor(t_list[i + 1], dtype=torch.float32) * np.pi / 2)
        n_next = (next_ratio * target_lens.float().cpu()).long().to(device)  # (B,)
        if int(n_next.max()) == 0:
            break
        scores = scores.masked_fill(~masked, -torch.finfo(scores.dtype).max)
        if bool((n_next == n_next[0]).all()):
            idx = scores.topk(int(n_next[0]), dim=-1).indices
            new_mask = torch.zeros_like(masked).scatter(1, idx, True)
        else:
            order = scores.argsort(dim=-1, descending=True)
            ranks = torch.empty_like(order).scatter_(1, order, torch.arange(T, device=device).expand(B, T))
            new_mask = ranks < n_next[:, None]
        masked = new_mask & valid
        seq = seq.masked_fill(masked, 0)
    return seq.masked_fill(~valid, 0)


def _guidance_mode(settings: DecodeSettings, device: torch.device) -> str:
    """How the guidance pair runs (see :class:`DecodeSettings`); "none" without guidance."""
    if settings.guidance <= 0:
        return "none"
    if settings.batch_guidance is not None:
        return "batched" if settings.batch_guidance else "separate"
    if settings.guidance_mode != "auto":
        return settings.guidance_mode
    return "separate" if device.type == "cpu" else "batched"


class _GuidedForward:
    """The transformer passes of one decoding run, with everything that does not change
    across its steps made once: rotary tables, attention masks (and, per step, the step
    embedding, shared by the conditional and unconditional passes).

    Conditional input (B, C+T, H) = [context ; target]; unconditional input (B, T, H) = the
    target alone. ``__call__`` returns (h_cond, h_uncond) over the target, (B, T, H) each
    (h_uncond None without guidance).
    """

    def __init__(self, est, mode: str, B: int, C: int, T: int, key_mask: torch.Tensor, tmask: torch.Tensor, dtype):
        self.est, self.mode, self.B, self.C, self.T = est, mode, B, C, T
        dev = key_mask.device
        H = est.hidden_size
        L = C + T
        if mode == "packed":  # one row: [context ; target | target], positions restart at the second
            pos = torch.cat([torch.arange(L, device=dev), torch.arange(T, device=dev)]).expand(B, L + T)
            seg = torch.cat([torch.zeros(L, dtype=torch.long, device=dev), torch.ones(T, dtype=torch.long, device=dev)])
            self.prep = est.prepare((B, L + T, H), dtype, dev, torch.cat([key_mask, tmask], 1), pos, seg)
        elif mode == "batched":  # two rows, the unconditional one right-padded to L
            m_u = torch.cat([tmask, tmask.new_zeros(B, C)], dim=1)
            self.prep = est.prepare((2 * B, L, H), dtype, dev, torch.cat([key_mask, m_u]))
        else:
            self.prep = est.prepare((B, L, H), dtype, dev, key_mask)
            self.prep_u = est.prepare((B, T, H), dtype, dev, tmask) if mode == "separate" else None

    def __call__(self, x: torch.Tensor, x_u: Optional[torch.Tensor], t: float):
        B, C, T = self.B, self.C, self.T
        tt = torch.full((B,), t, device=x.device, dtype=torch.float32)
        c = self.est.step_embedding(tt)  # (B, H), the same for both passes
        if self.mode == "packed":
            h = self.est(torch.cat([x, x_u], dim=1), tt, step_emb=c, prepared=self.prep)
            return h[:, C : C + T], h[:, C + T :]
        if self.mode == "batched":
            x_uu = torch.cat([x_u, x_u.new_zeros(B, C, x_u.shape[-1])], dim=1)
            h = self.est(torch.cat([x, x_uu]), torch.cat([tt, tt]), step_emb=torch.cat([c, c]), prepared=self.prep)
            return h[:B, C:], h[B:, :T]
        h_c = self.est(x, tt, step_emb=c, prepared=self.prep)[:, C:]
        if self.mode == "none":
            return h_c, None
        return h_c, self.est(x_u, tt, step_emb=c, prepared=self.prep_u)


def _pad_stack(seqs: Sequence[torch.Tensor], length: int, left: bool, value=0) -> Tuple[torch.Tensor, torch.Tensor]:
    """List of (n_i, ...) -> (B, length, ...) padded, and the (B, length) validity mask."""
    B = len(seqs)
    ref = seqs[0]
    out = ref.new_full((B, length, *ref.shape[1:]), value)
    valid = torch.zeros(B, length, dtype=torch.bool, device=ref.device)
    for b, s in enumerate(seqs):
        n = s.shape[0]
        if n == 0:
            continue
        if left:
            out[b, length - n :] = s
            valid[b, length - n :] = True
        else:
            out[b, :n] = s
            valid[b, :n] = True
    return out, valid


# -------------------------------------------------------------------- stage 1
@torch.no_grad()
def stage1_generate(
    model,
    target_lens: Sequence[int],
    prompt_ids: Optional[Sequence[torch.Tensor]] = None,
    phone_ids: Optional[Sequence[torch.Tensor]] = None,
    cond: Optional[Sequence[torch.Tensor]] = None,
    settings: Optional[DecodeSettings] = None,
    generator: Generators = None,
    progress: Optional[Callable[[int], None]] = None,
    frame_phones: Optional[Sequence[torch.Tensor]] = None,
) -> List[torch.Tensor]:
    """Generate target semantic ids for a batch.

    target_lens: B ints; prompt_ids: B tensors (Tp_b,) (empty allowed); phone_ids: B tensors
    (Np_b,); cond: B tensors (Tp_b + T_b, C) of frame conditions; frame_phones (models with
    ``frame_phones``): B tensors (Tp_b + T_b,) of phone ids per frame (``phone_pad_id`` = none),
    given to the conditional pass only (the unconditional one has no text). Returns B tensors (T_b,).
    """
    settings = settings or DecodeSettings()
    dev = model.mask_emb.weight.device
    dtype = model.mask_emb.weight.dtype
    B = len(target_lens)
    if B == 0:
        return []
    lens = torch.tensor([int(n) for n in target_lens], device=dev)
    if int(lens.min()) < 1:
        raise ValueError("every target length must be at least 1 frame")
    T = int(lens.max())
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    prompts = [p.to(dev).long() for p in prompt_ids] if prompt_ids is not None else [empty] * B
    phones = [p.to(dev).long() for p in phone_ids] if phone_ids is not None else [empty] * B
    if len(prompts) != B or len(phones) != B or (cond is not None and len(cond) != B):
        raise ValueError("prompt_ids, phone_ids and cond must have one entry per item")
    if frame_phones is not None and len(frame_phones) != B:
        raise ValueError("frame_phones must have one entry per item")

    # Context of item b = [phone prefix ; prompt (+ its frame condition)], left-padded as a
    # whole so that every relative position inside the item is as if it were alone.
    ctx_parts, adapted_t, phoned_t = [], [], []
    for b in range(B):
        n_p, n_t = int(prompts[b].shape[0]), int(lens[b])
        xp = model.embed_tokens(prompts[b][None])[0]  # (Tp_b, H)
        if frame_phones is not None:
            fp = frame_phones[b].to(dev).long()
            if fp.shape[0] != n_p + n_t:
                raise ValueError(f"item {b}: {fp.shape[0]} frame phones, expected prompt + target = {n_p + n_t}")
            e = model.frame_phone_embed(fp[None])[0].to(dtype)
            xp = xp + e[:n_p]
            phoned_t.append(e[n_p:])
        if cond is not None:
            c = cond[b].to(dev, dtype)
            if c.shape[0] != n_p + n_t:
                raise ValueError(
                    f"item {b}: frame condition has {c.shape[0]} frames, expected prompt + target = {n_p + n_t}"
                )
            a = model.adapt(c[None])[0]
            xp = xp + a[:n_p]
            adapted_t.append(a[n_p:])
        if phones[b].numel():
            xp = torch.cat([model.phone_prefix(phones[b][None])[0], xp], dim=0)
        ctx_parts.append(xp)
    C = max(int(x.shape[0]) for x in ctx_parts)
    if C:
        ctx, ctx_valid = _pad_stack(ctx_parts, C, left=True)
    else:
        ctx = torch.zeros(B, 0, model.cfg.hidden_size, device=dev, dtype=dtype)
        ctx_valid = torch.zeros(B, 0, dtype=torch.bool, device=dev)
    adapted_target = _pad_stack(adapted_t, T, left=False)[0] if adapted_t else None
    phoned_target = _pad_stack(phoned_t, T, left=False)[0] if phoned_t else None
    target_valid = torch.arange(T, device=dev)[None, :] < lens[:, None]
    key_mask = torch.cat([ctx_valid, target_valid], dim=1).to(dtype)
    tmask = target_valid.to(dtype)
    use_cfg = settings.guidance > 0
    per_item = settings.rescale_scope == "item"
    passes = _GuidedForward(model.diff_estimator, _guidance_mode(settings, torch.device(dev)), B, C, T, key_mask,
                            tmask, dtype)

    def step(seq: torch.Tensor, masked: torch.Tensor, t: float) -> torch.Tensor:
        cur = model.embed_tokens(seq, masked)
        if adapted_target is not None:
            cur = cur + adapted_target
        cur_c = cur if phoned_target is None else cur + phoned_target
        h_c, h_u = passes(torch.cat([ctx, cur_c], dim=1), cur, t)
        h = h_c
        if use_cfg:
            h = guidance_combine(h_c, h_u, settings.guidance, settings.rescale, target_valid, per_item)
        return model.to_logit(h)

    seq = masked_decode(step, lens, settings, generator, progress)
    return [seq[b, : int(lens[b])] for b in range(B)]


# -------------------------------------------------------------------- S2A
@torch.no_grad()
def s2a_generate(
    model,
    semantic_ids: Sequence[torch.Tensor],
    prompt_codes: Sequence[torch.Tensor],
    steps: Sequence[int],
    settings: Optional[DecodeSettings] = None,
    known_codes: Optional[Sequence[torch.Tensor]] = None,
    num_layers: Optional[int] = None,
    generator: Generators = None,
    progress: Optional[Callable[[int], None]] = None,
    frame_phones: Optional[Sequence[torch.Tensor]] = None,
    phone_guidance: float = 0.0,
    phone_guidance_layers: Optional[int] = None,
) -> List[torch.Tensor]:
    """Generate acoustic codes layer by layer, coarse to fine.

    semantic_ids: B tensors (Tp_b + T_b,) covering prompt and target; prompt_codes: B tensors
    (Tp_b, >=P), of which the first P = ``model.prompt_layers`` RVQ layers are read; steps: decoding steps per RVQ layer (length Q; entries for known layers are
    ignored); known_codes: B tensors (T_b, g) of already generated lower layers (e.g. layer 0
    from the 1-layer model); frame_phones (models with ``frame_phones``; ignored by others): B
    tensors (Tp_b + T_b,) of phone ids per frame (``phone_pad_id`` = none), or None.
    phone_guidance: w_p >= 0, guidance towards the frame phones (given frame phones and a model
    that reads them): each step also runs the model without the phones (the same prompt and
    semantic ids; trained that way for the share ``phone_drop`` of the samples) and takes
    h = h_p + w_p (h_p - h_nophones), rescaled as ``settings.rescale`` says; it is applied to the
    first ``phone_guidance_layers`` RVQ layers (None: all) and costs one more pass per step there.
    ``settings.steps`` is overridden per layer. Returns B tensors (T_b, num_layers).
    """
    settings = settings or DecodeSettings(temperature=1.5)
    if not (math.isfinite(phone_guidance) and phone_guidance >= 0):
        raise ValueError(f"phone_guidance must be >= 0, got {phone_guidance}")
    n_ok = isinstance(phone_guidance_layers, (int, np.integer)) and phone_guidance_layers >= 0
    if phone_guidance_layers is not None and not n_ok:
        raise ValueError(f"phone_guidance_layers must be a non-negative integer or None, got {phone_guidance_layers!r}")
    dev = model.mask_emb.weight.device
    dtype = model.mask_emb.weight.dtype
    Q = model.num_quantizers
    n_layers = Q if num_layers is None else int(num_layers)
    if len(steps) < n_layers:
        raise ValueError(f"need decoding steps for {n_layers} RVQ layers, got {len(steps)}")
    B = len(semantic_ids)
    if B == 0:
        return []
    P = model.prompt_layers
    prompts = [p.to(dev).long() for p in prompt_codes]
    for p in prompts:
        if p.shape[0] and p.shape[1] < P:
            raise ValueError(f"the acoustic prompt has {p.shape[1]} RVQ layers, the S2A reads {P}")
    prompts = [p[:, :P] for p in prompts]
    sems = [s.to(dev).long() for s in semantic_ids]
    Tps = [int(p.shape[0]) for p in prompts]
    lens_l = [int(s.shape[0]) - tp for s, tp in zip(sems, Tps)]
    if min(lens_l) < 1:
        raise ValueError("semantic ids must be longer than the acoustic prompt (no target frames)")
    lens = torch.tensor(lens_l, device=dev)
    T = int(lens.max())
    Tp = max(Tps)
    empty_q = torch.zeros(0, P, dtype=torch.long, device=dev)
    if Tp:
        prompt, prompt_valid = _pad_stack([p if p.numel() else empty_q for p in prompts], Tp, left=True)
        prompt_emb = model.embed_prompt(prompt)
    else:
        prompt_valid = torch.zeros(B, 0, dtype=torch.bool, device=dev)
        prompt_emb = torch.zeros(B, 0, model.cfg.hidden_size, device=dev, dtype=dtype)

    def stack(seqs, value=0):
        """Per item [prompt ; target] (Tp_b + T_b,) -> (B, Tp + T): prompts left-padded, targets right-padded."""
        tgt, _ = _pad_stack([s[tp:] for s, tp in zip(seqs, Tps)], T, left=False, value=value)
        if not Tp:
            return tgt
        pr, _ = _pad_stack([s[:tp] for s, tp in zip(seqs, Tps)], Tp, left=True, value=value)
        return torch.cat([pr, tgt], dim=1)

    sem = stack(sems)
    fp = None
    if frame_phones is not None and getattr(model.cfg, "frame_phones", False):
        if len(frame_phones) != B:
            raise ValueError("frame_phones must have one entry per item")
        fps = [f.to(dev).long() for f in frame_phones]
        for f, s_ in zip(fps, sems):
            if f.shape[0] != s_.shape[0]:
                raise ValueError(f"frame_phones has {f.shape[0]} frames, the semantic ids {s_.shape[0]}")
        fp = stack(fps, model.cfg.phone_pad_id)
    sem_cond = model.semantic_condition(sem, fp)
    # phone guidance: only where some frame has a phone (an all-none row would repeat the pass)
    guide_phones = fp is not None and phone_guidance > 0 and bool((fp != model.cfg.phone_pad_id).any())
    sem_cond_np = model.semantic_condition(sem) if guide_phones else None
    n_guided = n_layers if phone_guidance_layers is None else int(phone_guidance_layers)
    target_valid = torch.arange(T, device=dev)[None, :] < lens[:, None]
    x_mask = torch.cat([prompt_valid, target_valid], dim=1).to(dtype)

    codes = torch.zeros(B, T, n_layers, dtype=torch.long, device=dev)
    g = 0
    if known_codes is not None:
        kc, _ = _pad_stack([k.to(dev).long().view(k.shape[0], -1) for k in known_codes], T, left=False)
        g = kc.shape[-1]
        codes[..., :g] = kc[..., : min(g, n_layers)]
    use_cfg = settings.guidance > 0
    per_item = settings.rescale_scope == "item"
    passes = _GuidedForward(model.diff_estimator, _guidance_mode(settings, torch.device(dev)), B, Tp, T, x_mask,
                            target_valid.to(dtype), dtype)
    passes_np = None
    if guide_phones:
        passes_np = _GuidedForward(model.diff_estimator, "none", B, Tp, T, x_mask, target_valid.to(dtype), dtype)

    for layer in range(g, n_layers):
        lower = model.embed_lower(codes, layer)
        cond = sem_cond + model.layer_emb.weight[layer]
        cond_mlp = model.diff_estimator.cond_mlp(cond)  # constant over the steps of this layer
        cond_mlp_np = None
        if guide_phones and layer < n_guided:
            cond_mlp_np = model.diff_estimator.cond_mlp(sem_cond_np + model.layer_emb.weight[layer])
        layer_settings = DecodeSettings(**{**settings.__dict__, "steps": int(steps[layer])})

        def step(seq, masked, t, layer=layer, lower=lower, cond_mlp=cond_mlp, cond_mlp_np=cond_mlp_np):
            cur = model.embed_target(lower, seq, masked, layer)
            x0 = torch.cat([prompt_emb, cur], dim=1)
            h_c, h_u = passes(x0 + cond_mlp, cur + cond_mlp[:, Tp:], t)
            h = h_c
            if use_cfg:
                h = guidance_combine(h_c, h_u, settings.guidance, settings.rescale, target_valid, per_item)
            if cond_mlp_np is not None:
                h_np, _ = passes_np(x0 + cond_mlp_np, None, t)
                h = guidance_combine(h, h_np, phone_guidance, settings.rescale, target_valid, per_item)
            return model.to_logits[layer](h)

        codes[..., layer] = masked_decode(step, lens, layer_settings, generator, progress)
    return [codes[b, : int(lens[b])] for b in range(B)]
