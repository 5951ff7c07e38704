"""Training objectives of stage 1 and S2A (METIS_SPEC.md §4), for padded batches.

Axes: B batch, T frames (padded), Np phones (padded), Q RVQ layers, H hidden, V vocabulary.

Each objective is an ``nn.Module`` that wraps the network, so that a distributed wrapper
(DDP through Accelerate) sees one ``forward`` call per step. Randomness is split in two:
:meth:`sample` draws the masking plan (t, prompt, mask, layer) from a passed
``torch.Generator`` on the CPU, and :meth:`forward` is deterministic given the batch and the
plan. A resumed run restores the generator and gets the same plan.

Stage 1, per sample b with valid length T_b:
  t ~ U(0,1) clamped to >= 1e-5; p = max(sin(πt/2), min_mask_ratio);
  with probability ``prompt_prob`` a prefix prompt of length
  U{min(T_b // 4, 5), ..., ceil(0.4·T_b) - 1} (never masked), else none;
  each valid non-prompt frame masked with probability p, at least one (the first frame after
  the prompt when the draw gave none);
  input = mask_emb at masked frames, cond_emb(id) elsewhere, + adapter(cond) for a frame
  condition, phone prefix in front for TTS;
  loss = cross-entropy over masked valid frames (mean over frames of the batch).

Mixed batches (omni training on a task mixture): an item without a frame condition
(``cond_mask`` False) gets no adapter output at all, exactly as inference without ``cond``
(the adapter of a zero input is not zero: its biases); an item without phones has phone
length 0, so the whole prefix is masked out as keys for it (with rotary positions its
attention is then that of the item alone); an item without a fixed prompt (``prompt_len``
0) gets a random prompt like an unlabelled item.

Samples drawn without a prompt are the "unconditional" ones that make guidance possible; at
inference the unconditional pass drops the prompt AND the phones but keeps the frame condition
(§5), so by default (``drop_phones_with_prompt``) those samples also lose their phone prefix
here. The reference MaskGCT T2S code draws the prompt/no-prompt choice once per batch and keeps
the phones; we draw it per sample, and ``drop_phones_with_prompt=False`` restores the phones.

With ``frame_phones`` (small models, Stage1Config): each utterance is aligned to its phones by
the model's alignment table (Viterbi over its semantic ids, ``models/align.py``); every frame
gets its phone's embedding (none on the prompt frames with probability ``prompt_phone_drop``,
none at all for samples that lose their phone prefix), and the duration predictor learns the
aligned frames per phone (MSE on log(1 + frames), reported as ``duration_loss``).

S2A, per batch: one RVQ layer l drawn with weights falling linearly with depth
(w_q ∝ Q - q over the allowed layers; layer 0 only when ``predict_layer_1``); per sample a
prompt of 25-50 % of T_b with probability ``prompt_prob``; the chosen layer masked with
probability sin(πt/2) outside the prompt (at least one); target input = Σ_{q<l} token_emb
+ (mask_emb | token_emb[l]) + (Q-1-l)·mask_emb, prompt input = Σ_q token_emb over all layers;
condition = cond_emb(semantic) + layer_emb(l) through cond_mlp; cross-entropy on the masked
frames of layer l. With ``frame_phones`` (S2AConfig) an utterance with phones is aligned as for
stage 1 and its frame phones join the condition, except for a ``phone_drop`` share of samples
(which learn the tasks without a transcript) and the prompt frames of a ``prompt_phone_drop`` share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AlignmentCache",
    "ObjectiveOutput",
    "Stage1Objective",
    "S2AObjective",
    "build_objective",
    "duration_loss",
    "sample_prompt_lengths",
    "sample_masks",
    "s2a_layer_weights",
]

Batch = Dict[str, torch.Tensor]


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar, mean CE over masked valid positions
    accuracy: torch.Tensor  # scalar, top-1 accuracy over the same positions
    n_masked: torch.Tensor  # scalar long, positions in the loss
    n_frames: torch.Tensor  # scalar long, valid frames in the batch
    logits: Optional[torch.Tensor] = None  # (B, T, V)
    # further losses trained beside the masked-token one (e.g. ``duration_loss``), each a
    # scalar added to ``loss`` for the backward pass; ``loss`` itself stays the cross-entropy
    aux: Optional[Dict[str, torch.Tensor]] = None

    @property
    def total(self) -> torch.Tensor:
        """What the optimiser minimises: ``loss`` + every ``aux`` loss."""
        return self.loss if not self.aux else self.loss + sum(self.aux.values())


def _uniform(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator)


def sample_prompt_lengths(
    lengths: torch.Tensor,
    prompt_prob: float,
    low_frac: Optional[float],
    high_frac: float,
    generator: torch.Generator,
    low_cap: Optional[int] = None,
) -> torch.Tensor:
    """Per-sample prompt lengths (B,) long from each sample's own valid length.

    Stage 1: low = min(T // 4, low_cap=5), high = 0.4·T (exclusive, as ``torch.randint``).
    S2A: low = low_frac·T, high = high_frac·T. A sample gets no prompt with probability
    1 - prompt_prob, and always leaves at least one frame outside the prompt.
    """
    lengths = lengths.long().cpu()
    B = lengths.shape[0]
    u_keep = _uniform((B,), generator)
    u_len = _uniform((B,), generator)
    T = lengths.double()
    if low_cap is not None:
        low = torch.minimum(lengths // 4, torch.full_like(lengths, low_cap)).double()
    else:
        low = torch.floor(T * float(low_frac))
    high = torch.maximum(torch.floor(T * high_frac), low + 1)  # exclusive upper bound
    plen = torch.floor(low + u_len.double() * (high - low)).long()
    plen = torch.minimum(plen, lengths - 1).clamp(min=0)
    return torch.where(u_keep < prompt_prob, plen, torch.zeros_like(plen))


def sample_masks(
    lengths: torch.Tensor, prompt_len: torch.Tensor, ratio: torch.Tensor, T: int, generator: torch.Generator
) -> torch.Tensor:
    """Bernoulli(ratio_b) mask (B, T) bool over valid non-prompt frames, >= 1 per sample."""
    B = lengths.shape[0]
    pos = torch.arange(T)[None, :]
    valid = pos < lengths[:, None]
    candidate = valid & (pos >= prompt_len[:, None])
    u = _uniform((B, T), generator)
    masked = (u < ratio[:, None]) & candidate
    none = ~masked.any(dim=1)
    if bool(none.any()):
        rows = none.nonzero(as_tuple=True)[0]
        masked[rows, prompt_len[rows].clamp(max=T - 1)] = True  # prompt_len < T_b always
    return masked


def _ce(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, n_frames) -> ObjectiveOutput:
    sel_logits = logits[masked].float()  # (N, V)
    sel_targets = targets[masked]
    loss = F.cross_entropy(sel_logits, sel_targets)
    with torch.no_grad():
        acc = (sel_logits.argmax(-1) == sel_targets).float().mean()
    return ObjectiveOutput(loss, acc, masked.sum(), n_frames, logits)


def duration_loss(pred: torch.Tensor, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE of predicted log(1 + frames) (B, N) against frames per phone (B, N), over ``valid`` (B, N)."""
    err = (pred.float() - torch.log1p(frames.float())) ** 2
    return (err * valid).sum() / valid.sum().clamp(min=1)


def _unwrap(model: nn.Module) -> nn.Module:
    """The stage-1/S2A network inside a peft LoraModel (``.model``) or the network itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and hasattr(inner, "cfg") else model


class AlignmentCache:
    """Frame phones of training utterances for a ``frame_phones`` network (stage 1 or S2A).

    Each utterance is aligned to its phones once by the network's alignment table (Viterbi
    over its semantic ids, ``models/align.py``) and the result kept: the table does not change
    during training.
    """

    def __init__(self):
        self._aligned: Dict[bytes, Optional[np.ndarray]] = {}  # (phones, semantic) -> frames per state

    def durations(self, net: nn.Module, phones: np.ndarray, semantic: np.ndarray) -> Optional[np.ndarray]:
        """Frames per state of [silence ; phones ; silence] (N + 2,), None when the frames
        cannot hold the phones."""
        key = phones.tobytes() + b"|" + semantic.tobytes()
        if key not in self._aligned:
            try:  # an unfitted table is a RuntimeError and propagates
                self._aligned[key] = net.align_phones(phones, semantic)
            except ValueError:  # frames too few for the phones
                self._aligned[key] = None
        return self._aligned[key]

    def plan(self, net: nn.Module, batch: Batch, keep: torch.Tensor, drop_prompt: torch.Tensor,
             prompt_len: torch.Tensor) -> Batch:
        """Plan keys ``frame_phones`` (B, T) long (``phone_pad_id`` = none: samples not in
        ``keep`` (B,) bool, and the prompt frames of those in ``drop_prompt``), ``durations``
        (B, Np) float frames per phone and ``dur_valid`` (B, Np) bool (every aligned sample)."""
        from ..models.align import durations_to_frames

        pad = net.cfg.phone_pad_id
        sem, lengths = batch["semantic"].cpu(), batch["lengths"].long().cpu()
        phones, plens = batch["phones"].cpu(), batch["phone_lengths"].long().cpu()
        B, T = sem.shape
        Np = phones.shape[1]
        frames = torch.full((B, T), pad, dtype=torch.long)
        durs = torch.zeros(B, Np)
        valid = torch.zeros(B, Np, dtype=torch.bool)
        for b in range(B):
            n = int(plens[b])
            if n == 0:
                continue
            ph = phones[b, Np - n :].numpy().astype(np.int64)
            d = self.durations(net, ph, sem[b, : int(lengths[b])].numpy().astype(np.int64))
            if d is None:
                continue
            durs[b, Np - n :] = torch.from_numpy(d[1:-1].astype(np.float32))
            valid[b, Np - n :] = True
            if bool(keep[b]):
                fp = torch.from_numpy(durations_to_frames(ph, d, pad))
                frames[b, : fp.shape[0]] = fp
                if bool(drop_prompt[b]):
                    frames[b, : int(prompt_len[b])] = pad
        return {"frame_phones": frames, "durations": durs, "dur_valid": valid}


class Stage1Objective(nn.Module):
    """Masked semantic-token modelling (pre-training and every fine-tuning task).

    Batch keys: ``semantic`` (B, T) long, ``lengths`` (B,); optional ``phones`` (B, Np) long
    with ``phone_lengths`` (B,) (0 = no phones), ``cond`` (B, T, C) float with ``cond_mask``
    (B,) bool (absent = every item has its condition), ``prompt_len`` (B,) long (fixed
    prompts; 0 = none fixed). Plan keys (from :meth:`sample`): ``t`` (B,), ``prompt_len``
    (B,), ``masked`` (B, T) bool, ``keep_phones`` (B,) bool.
    """

    def __init__(self, model: nn.Module, drop_phones_with_prompt: bool = True):
        super().__init__()
        self.model = model
        self.drop_phones_with_prompt = drop_phones_with_prompt
        self.aligned = AlignmentCache()

    @property
    def net(self) -> nn.Module:
        return _unwrap(self.model)

    def sample(self, batch: Batch, generator: torch.Generator) -> Batch:
        cfg = self.net.cfg
        lengths = batch["lengths"].long().cpu()
        B, T = batch["semantic"].shape
        t = _uniform((B,), generator).clamp(min=1e-5)
        ratio = torch.sin(t * math.pi / 2).clamp(min=cfg.min_mask_ratio)
        prompt_len = sample_prompt_lengths(lengths, cfg.prompt_prob, None, 0.4, generator, low_cap=5)
        if "prompt_len" in batch:
            # shards with a real prompt (VC/TSE): keep it exactly where a random prompt was
            # drawn (probability prompt_prob), none otherwise (unconditional samples for guidance);
            # items without a fixed prompt (0, in a mixed batch) keep their random one
            given = batch["prompt_len"].long().cpu()
            fixed = torch.where(prompt_len > 0, given, torch.zeros_like(given))
            prompt_len = torch.where(given > 0, fixed, prompt_len)
        masked = sample_masks(lengths, prompt_len, ratio, T, generator)
        keep_phones = (prompt_len > 0) | (not self.drop_phones_with_prompt)
        plan = {"t": t, "prompt_len": prompt_len, "masked": masked, "keep_phones": keep_phones}
        if cfg.frame_phones and batch.get("phones") is not None:
            drop_prompt = _uniform((B,), generator) < cfg.prompt_phone_drop
            plan.update(self.aligned.plan(self.net, batch, keep_phones, drop_prompt, prompt_len))
        return plan

    def forward(self, batch: Batch, plan: Batch) -> ObjectiveOutput:
        net = self.net
        ids = batch["semantic"]
        device = ids.device
        B, T = ids.shape
        lengths = batch["lengths"].to(device)
        x_mask = (torch.arange(T, device=device)[None, :] < lengths[:, None]).float()
        masked = plan["masked"].to(device)
        t = plan["t"].to(device)
        x = net.embed_tokens(ids, masked)
        if batch.get("cond") is not None and net.has_adapter:
            adapted = x + net.adapt(batch["cond"].to(x.dtype))  # (B, T, H)
            has = batch.get("cond_mask")
            x = adapted if has is None else torch.where(has.to(device)[:, None, None], adapted, x)
        prefix = prefix_mask = None
        if batch.get("phones") is not None and net.cfg.use_phone_cond:
            phones = batch["phones"]
            Np = phones.shape[1]
            # left-padded (collate): item b's phones are the last phone_lengths[b] positions
            prefix_mask = (torch.arange(Np, device=device)[None, :] >= Np - batch["phone_lengths"].to(device)[:, None]).float()
            prefix_mask = prefix_mask * plan["keep_phones"].to(device).float()[:, None]
            prefix = net.phone_prefix(phones)
        aux = None
        if plan.get("frame_phones") is not None:
            x = x + net.frame_phone_embed(plan["frame_phones"].to(device))
            dv = plan["dur_valid"].to(device)
            aux = {"duration_loss": duration_loss(net.duration(batch["phones"], dv), plan["durations"].to(device), dv)}
        step_emb = net.diff_estimator.step_embedding(t)
        hidden = net.transformer(x, t, x_mask, prefix, prefix_mask, step_emb=step_emb)
        logits = net.to_logit(hidden)
        out = _ce(logits, ids, masked & x_mask.bool(), lengths.sum())
        out.aux = aux
        return out


def s2a_layer_weights(num_quantizers: int, predict_layer_1: bool) -> torch.Tensor:
    """Probabilities (Q,) of predicting each RVQ layer: ∝ Q - q, layer 0 excluded unless
    ``predict_layer_1``."""
    w = torch.arange(num_quantizers, 0, -1, dtype=torch.float64)
    if not predict_layer_1:
        if num_quantizers < 2:
            raise ValueError("an S2A model with one RVQ layer must have predict_layer_1 = true")
        w[0] = 0.0
    return w / w.sum()


class S2AObjective(nn.Module):
    """Masked acoustic-token modelling of one RVQ layer per batch.

    Batch keys: ``semantic`` (B, T) long, ``acoustic`` (B, T, Q) long, ``lengths`` (B,);
    optional ``phones`` (B, Np) with ``phone_lengths`` (B,). Plan keys: ``layer`` (1,) long,
    ``t`` (B,), ``prompt_len`` (B,), ``masked`` (B, T) bool; ``frame_phones`` (B, T) for a
    ``frame_phones`` model given phones.
    """

    def __init__(self, model: nn.Module, prompt_range=(0.25, 0.5)):
        super().__init__()
        self.model = model
        self.prompt_range = tuple(prompt_range)
        self.aligned = AlignmentCache()

    @property
    def net(self) -> nn.Module:
        return _unwrap(self.model)

    def sample(self, batch: Batch, generator: torch.Generator) -> Batch:
        cfg = self.net.cfg
        lengths = batch["lengths"].long().cpu()
        B, T = batch["semantic"].shape
        w = s2a_layer_weights(cfg.num_quantizers, cfg.predict_layer_1)
        layer = torch.multinomial(w.float(), 1, generator=generator)
        t = _uniform((B,), generator).clamp(min=1e-5)
        ratio = torch.sin(t * math.pi / 2)
        lo, hi = self.prompt_range
        prompt_len = sample_prompt_lengths(lengths, cfg.prompt_prob, lo, hi, generator)
        masked = sample_masks(lengths, prompt_len, ratio, T, generator)
        plan = {"layer": layer, "t": t, "prompt_len": prompt_len, "masked": masked}
        if cfg.frame_phones and batch.get("phones") is not None:
            keep = _uniform((B,), generator) >= cfg.phone_drop
            drop_prompt = _uniform((B,), generator) < cfg.prompt_phone_drop
            plan["frame_phones"] = self.aligned.plan(self.net, batch, keep, drop_prompt, prompt_len)["frame_phones"]
        return plan

    def forward(self, batch: Batch, plan: Batch) -> ObjectiveOutput:
        net = self.net
        sem = batch["semantic"]
        codes = batch["acoustic"]
        device = sem.device
        B, T = sem.shape
        layer = int(plan["layer"].reshape(-1)[0])
        lengths = batch["lengths"].to(device)
        pos = torch.arange(T, device=device)[None, :]
        x_mask = (pos < lengths[:, None]).float()
        is_prompt = pos < plan["prompt_len"].to(device)[:, None]
        masked = plan["masked"].to(device)
        t = plan["t"].to(device)
        lower = net.embed_lower(codes, layer)
        target = net.embed_target(lower, codes[..., layer], masked, layer)
        x = torch.where(is_prompt.unsqueeze(-1), net.embed_prompt(codes), target)
        fp = plan.get("frame_phones")
        hidden = net.transformer(x, net.condition(sem, layer, None if fp is None else fp.to(device)), t, x_mask)
        logits = net.to_logits[layer](hidden)
        return _ce(logits, codes[..., layer], masked & x_mask.bool(), lengths.sum())


def build_objective(model: nn.Module, **kwargs) -> nn.Module:
    """The objective matching ``model`` (a Stage1Model / S2AModel, possibly LoRA-wrapped)."""
    from ..config import S2AConfig, Stage1Config

    cfg = _unwrap(model).cfg
    if isinstance(cfg, Stage1Config):
        return Stage1Objective(model, **kwargs)
    if isinstance(cfg, S2AConfig):
        return S2AObjective(model, **kwargs)
    raise ValueError(f"no training objective for a {type(cfg).__name__}")
