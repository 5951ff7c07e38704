"""Token shards, dynamic batching and bad-item handling."""

import torch

from metis_speech.training.data import (
    FrameBatchSampler,
    MixtureBatchSampler,
    MixtureDataset,
    TokenDataset,
    collate,
    iterate_batches,
    synthetic_utterances,
    write_shard,
)


def test_shard_round_trip_and_bad_items(tmp_path):
    good = synthetic_utterances(10, min_frames=8, max_frames=20, seed=0, phones=True, num_quantizers=2, cond_dim=4)
    write_shard(tmp_path / "a.safetensors", good[:5])
    bad = [
        {"id": "empty", "semantic": torch.zeros(0, dtype=torch.long)},
        {"id": "short", "semantic": torch.arange(2), "phones": torch.arange(3)},
        {"id": "oov", "semantic": torch.full((10,), 5000)},
        {"id": "nophones", "semantic": torch.arange(10)},
        {"id": "offbyone", "semantic": torch.arange(10), "phones": torch.arange(3), "acoustic": torch.zeros(11, 2, dtype=torch.long)},
        {"id": "mismatch", "semantic": torch.arange(10), "phones": torch.arange(3), "acoustic": torch.zeros(20, 2, dtype=torch.long)},
    ]
    write_shard(tmp_path / "b.safetensors", good[5:] + bad)
    (tmp_path / "c.safetensors").write_bytes(b"\x00garbage")  # a corrupt shard
    ds = TokenDataset(tmp_path, require=("semantic", "phones"), min_frames=4, vocab=1024)
    sk = dict(ds.skipped)
    assert sk["unreadable shard"] == 1
    assert sk["empty or no semantic ids"] == 1 and sk["too short"] == 1
    assert sk["no phones"] == 2  # 'nophones' and 'oov'
    assert sk["acoustic length mismatch"] == 1
    assert len(ds) == 11  # 10 good + off-by-one (cut to the semantic length)
    items = [ds[i] for i in range(len(ds))]
    assert all(u is not None for u in items)
    off = [u for u in items if u["id"] == "offbyone"][0]
    assert off["acoustic"].shape == (10, 2)
    # ids out of range are caught when read, the batch goes on without them
    ds2 = TokenDataset(tmp_path, require=("semantic",), min_frames=4, vocab=1024)
    batches = list(iterate_batches(ds2, FrameBatchSampler(ds2.lengths, 100), 0))
    assert ds2.skipped["semantic id out of range"] == 1
    assert sum(b["semantic"].shape[0] for _, b in batches if b is not None) == len(ds2) - 1


def test_collate_pads_and_reports_lengths():
    us = synthetic_utterances(3, min_frames=5, max_frames=9, seed=1, phones=True, num_quantizers=3, cond_dim=2)
    b = collate(us + [None], phone_pad_id=1023)
    T = max(u["semantic"].shape[0] for u in us)
    assert b["semantic"].shape == (3, T) and b["acoustic"].shape == (3, T, 3) and b["cond"].shape == (3, T, 2)
    assert b["lengths"].tolist() == [u["semantic"].shape[0] for u in us]
    # left padding: each item's phones end at the last column (right before its frames)
    for i, u in enumerate(us):
        n = int(b["phone_lengths"][i])
        assert n == u["phones"].shape[0] and torch.equal(b["phones"][i, b["phones"].shape[1] - n :], u["phones"])
        assert (b["phones"][i, : b["phones"].shape[1] - n] == 1023).all()
    assert collate([None]) is None


def test_frame_batches_are_bounded_deterministic_and_sharded():
    lengths = [int(x) for x in torch.randint(10, 50, (200,), generator=torch.Generator().manual_seed(0))]
    s = FrameBatchSampler(lengths, 300, seed=3)
    e0 = s.epoch_batches(0)
    assert e0 == s.epoch_batches(0) and e0 != s.epoch_batches(1)
    assert sorted(i for b in e0 for i in b) == list(range(200))
    assert all(max(lengths[i] for i in b) * len(b) <= 300 for b in e0)
    r0 = FrameBatchSampler(lengths, 300, seed=3, rank=0, world_size=2).epoch_batches(0)
    r1 = FrameBatchSampler(lengths, 300, seed=3, rank=1, world_size=2).epoch_batches(0)
    assert len(r0) == len(r1) and not set(map(tuple, r0)) & set(map(tuple, r1))


def test_mixture_batches_follow_the_weights_deterministically():
    g = torch.Generator().manual_seed(0)
    sizes, weights = [200, 60, 20], [1.0, 2.0, 1.0]
    lengths = [int(x) for x in torch.randint(10, 50, (sum(sizes),), generator=g)]
    sources = [s for s, n in enumerate(sizes) for _ in range(n)]
    s = MixtureBatchSampler(lengths, sources, weights, 300, seed=3)
    e0 = s.epoch_batches(0)
    assert e0 == MixtureBatchSampler(lengths, sources, weights, 300, seed=3).epoch_batches(0) and e0 != s.epoch_batches(1)
    assert all(max(lengths[i] for i in b) * len(b) <= 300 for b in e0)
    assert len({sources[i] for i in e0[0] + e0[1] + e0[2]}) > 1  # batches mix sources
    total = sum(lengths)
    for e in range(3):
        seen = s.frames_seen(e + 1, 0) - s.frames_seen(e, 0)  # one whole epoch
        assert abs(int(seen.sum()) - total) < 3 * 50
        for k, w in enumerate(weights):
            assert abs(seen[k] - total * w / sum(weights)) < 50  # within one utterance
    # the small source is repeated, the large one subsampled (a different subset each epoch)
    big = [set(i for b in s.epoch_batches(e) for i in b if sources[i] == 0) for e in range(2)]
    assert len(big[0]) < sizes[0] and big[0] != big[1]
    # counts: a fresh sampler (a resumed run) gives the same numbers; mid-epoch positions add up
    n0 = len(e0)
    fresh = MixtureBatchSampler(lengths, sources, weights, 300, seed=3)
    assert (fresh.frames_seen(2, 5) == s.frames_seen(2, 5)).all()
    mid = s.frames_seen(0, 4)
    assert int(mid.sum()) == sum(lengths[i] for b in e0[:4] for i in b)
    assert (s.frames_seen(0, n0) == s.frames_seen(1, 0)).all()
    # ranks: disjoint, same number of batches, counts cover all ranks
    r = [MixtureBatchSampler(lengths, sources, weights, 300, seed=3, rank=k, world_size=2) for k in range(2)]
    b0, b1 = r[0].epoch_batches(0), r[1].epoch_batches(0)
    assert len(b0) == len(b1) > 0 and b0 == r[0].global_batches(0)[0::2] and b1 == r[0].global_batches(0)[1::2]
    assert int(r[0].frames_seen(0, 2).sum()) == sum(lengths[i] for b in b0[:2] + b1[:2] for i in b)


def test_mixture_dataset_requires_per_source():
    tts = synthetic_utterances(6, seed=1, phones=True, id_prefix="tts-")
    se = synthetic_utterances(5, seed=2, cond_dim=4, id_prefix="se-")
    del tts[0]["phones"]  # a TTS item without its transcript
    se[1].pop("cond")
    mix = MixtureDataset(
        [TokenDataset(items=tts, require=("semantic", "phones")), TokenDataset(items=se, require=("semantic", "cond"))],
        ["tts", "se"],
        [2.0, 1.0],
    )
    assert len(mix) == 9 and mix.sources == [0] * 5 + [1] * 4 and len(mix.lengths) == 9
    assert dict(mix.skipped) == {"tts: no phones": 1, "se: no cond": 1}
    assert mix[0]["id"] == "tts-000001" and mix[5]["id"] == "se-000000" and "cond" in mix[5]
    b = collate([mix[i] for i in range(len(mix))])
    assert b["cond_mask"].tolist() == [False] * 5 + [True] * 4 and b["phone_lengths"][5:].eq(0).all()
