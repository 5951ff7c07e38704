"""Phone purity / PNMI of discrete ids against frame phone labels."""

import numpy as np
import pytest

from metis_speech.eval.purity import phone_purity


def test_ids_that_name_the_phones_are_pure():
    phones = np.repeat(np.arange(10), 20)
    r = phone_purity(phones * 3 + 7, phones)  # a relabelling of the phones
    assert r["pnmi"] == pytest.approx(1.0) and r["cluster_purity"] == pytest.approx(1.0)
    assert r["phone_purity"] == pytest.approx(1.0) and r["ids_used"] == 10


def test_ids_unrelated_to_phones_carry_nothing():
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 10, 20000)
    r = phone_purity(rng.integers(0, 10, 20000), phones)
    assert r["pnmi"] < 0.01 and r["cluster_purity"] < 0.15


def test_split_phones_keep_cluster_purity_but_lose_phone_purity():
    phones = np.repeat(np.arange(4), 100)
    ids = phones * 2 + np.tile([0, 1], 200)  # every phone spread over two ids
    r = phone_purity(ids, phones)
    assert r["cluster_purity"] == pytest.approx(1.0) and r["phone_purity"] == pytest.approx(0.5)
    assert r["pnmi"] == pytest.approx(1.0)


def test_ignored_labels_and_bad_input():
    phones = np.array([0, 0, 1, 1, 2, 2])
    r = phone_purity([5, 5, 6, 6, 9, 8], phones, ignore=[2])
    assert r["frames"] == 4 and r["pnmi"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in length"):
        phone_purity([1, 2], [1])
    with pytest.raises(ValueError, match="no frames"):
        phone_purity([1, 2], [0, 0], ignore=[0])
