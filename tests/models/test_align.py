"""The phone aligner over semantic ids (models/align.py): it finds a planted alignment, learns
its tables from pairs alone, lets boundaries and punctuation take no frames, and lays out
predicted durations over a given length."""

import numpy as np
import pytest

from metis_speech.models.align import (
    align,
    durations_to_frames,
    fit_emissions,
    predicted_durations,
    skippable_ids,
    viterbi,
)

P, V, SIL = 12, 40, 11  # phone vocabulary (id 11 = silence / padding), semantic vocabulary
SKIP = np.zeros(P, dtype=bool)
SKIP[[0, SIL]] = True  # 0 = word boundary


def _planted(rng, n_utts=60):
    """Utterances whose phones 1..10 each emit mostly their own 4 ids; boundaries get 0 frames."""
    own = {p: rng.choice(V, 4, replace=False) for p in range(1, P - 1)}
    pairs, truth = [], []
    for _ in range(n_utts):
        words = [list(rng.integers(1, P - 1, size=rng.integers(2, 5))) for _ in range(rng.integers(2, 4))]
        phones = []
        for w in words:
            phones += w + [0]
        phones = np.array(phones[:-1])
        dur = np.where(phones == 0, 0, rng.integers(2, 7, size=len(phones)))
        lead, trail = rng.integers(0, 4), rng.integers(0, 4)
        sem = [rng.integers(V) for _ in range(lead)]  # silence: any id
        for p, d in zip(phones, dur):
            for _ in range(d):
                sem.append(rng.choice(own[p]) if rng.random() < 0.85 else rng.integers(V))
        sem += [rng.integers(V) for _ in range(trail)]
        pairs.append((phones, np.array(sem)))
        truth.append(np.concatenate([[lead], dur, [trail]]))
    return pairs, truth


def test_viterbi_follows_the_emissions_and_skips_only_what_may_be_skipped():
    # three states, the middle one skippable; frames 0-1 favour state 0, 2-3 state 2
    e = np.log(np.array([[0.9, 0.9, 0.05, 0.05], [0.05, 0.05, 0.05, 0.05], [0.05, 0.05, 0.9, 0.9]]))
    assert viterbi(e, np.array([False, True, False])).tolist() == [0, 0, 2, 2]
    assert viterbi(e, np.array([False, False, False])).tolist().count(1) >= 1  # not skippable: one frame at least
    with pytest.raises(ValueError, match="cannot hold"):
        viterbi(e[:, :2], np.array([False, False, False]))


def test_hard_em_learns_a_planted_alignment_from_pairs_alone():
    rng = np.random.default_rng(0)
    pairs, truth = _planted(rng)
    table, scores, durs = fit_emissions(pairs, P, V, SKIP, SIL, iterations=4)
    assert table.shape == (P, V) and scores[-1] > scores[0]
    exact = np.mean([np.mean(np.abs(np.cumsum(d) - np.cumsum(t)) <= 1) for d, t in zip(durs, truth)])
    assert exact > 0.9, exact  # boundaries within one frame
    # a pair aligned afresh with the learned table: boundaries get no frames, every phone one at least
    d = align(table, *pairs[0], SKIP, SIL)
    assert d.sum() == len(pairs[0][1]) and (d[1:-1][pairs[0][0] == 0] == 0).all() and (d[1:-1][pairs[0][0] != 0] > 0).all()
    frames = durations_to_frames(pairs[0][0], d, SIL)
    assert len(frames) == len(pairs[0][1]) and set(frames[: d[0]]) <= {SIL}


def test_predicted_durations_fill_the_length_and_keep_every_phone():
    skip = np.array([False, True, False, False])
    d = predicted_durations(np.log1p(np.array([4.0, 0.0, 8.0, 0.01])), skip, 30)
    assert d.sum() == 30 and d[1] == 0 and (d[[0, 2, 3]] >= 1).all() and d[2] > d[0]
    assert predicted_durations(np.zeros(3), np.zeros(3, bool), 3).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="cannot hold"):
        predicted_durations(np.zeros(4), skip, 2)


def test_skippable_ids_are_boundaries_and_punctuation():
    s = skippable_ids({"_": 0, ",": 1, "a": 2, "ɪ": 3, "ː": 4, "oʊ": 5, "…": 6}, 8)
    assert s.tolist() == [True, True, False, False, False, False, True, False]
