"""Phone-to-frame alignment over semantic ids: a discrete left-to-right HMM.

Each phone of an utterance is one state that emits semantic ids from its own table
``p(id | phone)``; word boundaries and punctuation are states that may be skipped (zero frames),
and an optional silence state sits at each end. :func:`viterbi` finds the best path;
:func:`fit_emissions` learns the tables by hard EM (uniform segmentation first, then
re-alignment), which needs only pairs of (phone ids, semantic ids), no external alignment.

The semantic ids of a phonetic front end are clustered by phone (PNMI ~0.66 for the shipped
small model), so a context-independent table is enough to place every phone on its frames.
Durations from it train a duration predictor, and frame-level phone ids condition a stage-1
model that then needs no implicit text-to-frame alignment (``Stage1Config.frame_phones``).

Shapes: N phones, T frames, V semantic vocabulary, P phone vocabulary.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["viterbi", "align", "fit_emissions", "durations_to_frames", "predicted_durations", "skippable_ids", "MAX_SKIP"]

MAX_SKIP = 3  # longest run of skippable states one transition may jump over


def _states(phones: np.ndarray, silence_id: int, skippable: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """[silence ; phones ; silence] and their skippable flags (the two silences skippable)."""
    st = np.concatenate([[silence_id], phones, [silence_id]]).astype(np.int64)
    sk = np.concatenate([[True], skippable[phones], [True]])
    return st, sk


def viterbi(log_emit: np.ndarray, skippable: np.ndarray) -> np.ndarray:
    """Best left-to-right path. log_emit: (S, T) log p(frame t | state s); skippable: (S,) bool.

    A path starts in any state before the first non-skippable one, ends in any state after the
    last non-skippable one, moves by 0 or 1 state a frame, or further over skippable states.
    Returns the state of every frame, (T,) int. Raises ValueError when the T frames cannot
    hold the non-skippable states (one frame each at least).
    """
    S, T = log_emit.shape
    need = int((~skippable).sum())
    if T < need:
        raise ValueError(f"{T} frames cannot hold {need} phones")
    neg = -1e30
    # reach[k, j]: state j can be entered from j-k (the k-1 states between are skippable)
    reach = np.zeros((MAX_SKIP + 2, S), dtype=bool)
    for k in range(1, MAX_SKIP + 2):
        for j in range(k, S):
            reach[k, j] = bool(skippable[j - k + 1 : j].all())
    start_ok = np.array([bool(skippable[:j].all()) for j in range(S)])
    end_ok = np.array([bool(skippable[j + 1 :].all()) for j in range(S)])
    delta = np.where(start_ok, log_emit[:, 0], neg)
    back = np.zeros((T, S), dtype=np.int8)
    for t in range(1, T):
        best = delta.copy()
        arg = np.zeros(S, dtype=np.int8)
        for k in range(1, MAX_SKIP + 2):
            cand = np.full(S, neg)
            cand[k:] = delta[:-k]
            cand = np.where(reach[k], cand, neg)
            better = cand > best
            best = np.where(better, cand, best)
            arg = np.where(better, k, arg)
        delta = best + log_emit[:, t]
        back[t] = arg
    delta = np.where(end_ok, delta, neg)
    s = int(np.argmax(delta))
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    return path


def align(
    log_table: np.ndarray, phones: np.ndarray, semantic: np.ndarray, skippable: np.ndarray, silence_id: int
) -> np.ndarray:
    """Frames per state of ``[silence ; phones ; silence]``: (N + 2,) ints summing to T.

    log_table: (P, V) log p(id | phone); phones: (N,) phone ids; semantic: (T,) ids.
    """
    st, sk = _states(np.asarray(phones, dtype=np.int64), silence_id, skippable)
    path = viterbi(log_table[st][:, np.asarray(semantic, dtype=np.int64)], sk)
    return np.bincount(path, minlength=len(st))


def _uniform(n_states: int, skip: np.ndarray, T: int) -> np.ndarray:
    """Frames per state spread evenly over the non-skippable states."""
    idx = np.flatnonzero(~skip)
    dur = np.zeros(n_states, dtype=np.int64)
    if len(idx) == 0:
        dur[0] = T
        return dur
    edges = np.linspace(0, T, len(idx) + 1).round().astype(np.int64)
    dur[idx] = np.diff(edges)
    return dur


def fit_emissions(
    pairs: Sequence[Tuple[np.ndarray, np.ndarray]],
    phone_vocab: int,
    vocab: int,
    skippable: np.ndarray,
    silence_id: int,
    iterations: int = 4,
    smoothing: float = 0.5,
    progress: Optional[callable] = None,
) -> Tuple[np.ndarray, List[float], List[np.ndarray]]:
    """Hard-EM emission tables from (phones (N,), semantic (T,)) pairs.

    Returns the log table (P, V); per iteration, the mean log-likelihood per frame of the
    alignments it was counted from (rising as the tables sharpen); and the last alignment of
    every pair, frames per state of [silence ; phones ; silence] (N + 2,).
    """
    skippable = np.asarray(skippable, dtype=bool)
    durs = []
    for ph, sem in pairs:
        st, sk = _states(ph, silence_id, skippable)
        durs.append(_uniform(len(st), sk, len(sem)))
    scores: List[float] = []
    table = None
    for it in range(iterations + 1):
        counts = np.full((phone_vocab, vocab), smoothing, dtype=np.float64)
        for (ph, sem), dur in zip(pairs, durs):
            st, _ = _states(ph, silence_id, skippable)
            np.add.at(counts, (np.repeat(st, dur), np.asarray(sem, dtype=np.int64)), 1.0)
        table = np.log(counts / counts.sum(axis=1, keepdims=True))
        if it == iterations:
            break
        total, frames = 0.0, 0
        for i, (ph, sem) in enumerate(pairs):
            st, sk = _states(ph, silence_id, skippable)
            if len(sem) < int((~sk).sum()):
                continue
            dur = align(table, ph, sem, skippable, silence_id)
            durs[i] = dur
            total += float(table[np.repeat(st, dur), np.asarray(sem, dtype=np.int64)].sum())
            frames += len(sem)
        scores.append(total / max(frames, 1))
        if progress is not None:
            progress(it, scores[-1])
    return table.astype(np.float32), scores, durs


def durations_to_frames(phones: np.ndarray, durations: np.ndarray, fill: int) -> np.ndarray:
    """Frame-level phone ids: phone i repeated durations[i] times. ``durations`` may carry the
    two edge silences ((N + 2,), from :func:`align`), which become ``fill``."""
    phones = np.asarray(phones, dtype=np.int64)
    durations = np.asarray(durations, dtype=np.int64)
    if len(durations) == len(phones) + 2:
        phones = np.concatenate([[fill], phones, [fill]])
    if len(durations) != len(phones):
        raise ValueError(f"{len(durations)} durations for {len(phones)} phones")
    return np.repeat(phones, durations)


def skippable_symbol(symbol: str) -> bool:
    """Word boundaries and punctuation (no letter in the symbol) may take zero frames."""
    return not any(ch.isalpha() for ch in symbol)


def skippable_ids(symbol_to_id, size: int) -> np.ndarray:
    """(size,) bool: True at the ids of :func:`skippable_symbol` symbols of a phone vocabulary."""
    out = np.zeros(size, dtype=bool)
    for sym, i in symbol_to_id.items():
        if 0 <= int(i) < size and skippable_symbol(sym):
            out[int(i)] = True
    return out


def predicted_durations(log_frames: np.ndarray, skippable: np.ndarray, total: int) -> np.ndarray:
    """Integer frames per phone summing to ``total``: the predicted log(1 + frames) (N,) scaled to
    the total, cumulatively rounded, every non-skippable phone given at least one frame.

    Raises ValueError when ``total`` is smaller than the number of non-skippable phones.
    """
    skippable = np.asarray(skippable, dtype=bool)
    n = len(log_frames)
    need = int((~skippable).sum())
    if total < need:
        raise ValueError(f"{total} frames cannot hold {need} phones")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    d = np.expm1(np.clip(np.asarray(log_frames, dtype=np.float64), 0.0, 8.0))
    d = np.where(skippable, d, np.maximum(d, 1.0))
    if d.sum() <= 0:
        d = (~skippable).astype(np.float64)
    edges = np.round(np.cumsum(d) * (total / d.sum())).astype(np.int64)
    dur = np.diff(np.concatenate([[0], edges]))
    # a non-skippable phone rounded to 0 frames borrows one from the longest phone
    for i in np.flatnonzero((dur == 0) & ~skippable):
        j = int(np.argmax(dur))
        dur[j] -= 1
        dur[i] += 1
    return dur
