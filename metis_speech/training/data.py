"""Token datasets for stage 1 and S2A: cached shards, a synthetic generator, dynamic batching.

Shard format (one directory, any number of ``*.safetensors`` files, read in sorted order):
each file holds, for every utterance ``<id>`` in it,

=====================  =========  =======  =============================================
key                    shape      dtype    meaning
=====================  =========  =======  =============================================
``<id>/semantic``      (T,)       int      semantic ids at 50 Hz (required)
``<id>/acoustic``      (T, Q)     int      acoustic RVQ ids at 50 Hz (S2A)
``<id>/phones``        (Np,)      int      phone ids of the transcript (TTS)
``<id>/cond``          (T, C)     float    frame condition (SSL features of the noisy /
                                           mixed / source copy for SE/TSE/VC, visual for L2S)
=====================  =========  =======  =============================================

and the file metadata ``{"format": "metis-tokens", "version": "1"}``. Semantic length is
the authority: acoustic / cond frames that differ by one frame are cut or repeat-padded to
it; larger differences make the utterance invalid. :func:`write_shard` writes one file
atomically (temp file + rename), so a half-written shard is never read.

Bad items are skipped with a counted reason (``dataset.skipped``), never raised mid-epoch:
unreadable shards, empty or too short/long utterances, missing fields the objective needs,
length mismatches, ids outside the vocabulary.

Task mixtures (omni training): :class:`MixtureDataset` joins several sources (each its own
TokenDataset with its own ``require``), and :class:`MixtureBatchSampler` gives every epoch
a frame budget per source proportional to its weight (see there); batches mix sources, and
:func:`collate` pads items that lack phones / a frame condition / a fixed prompt.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "TokenDataset",
    "MixtureDataset",
    "FrameBatchSampler",
    "MixtureBatchSampler",
    "collate",
    "write_shard",
    "synthetic_utterances",
    "SHARD_FORMAT",
]

SHARD_FORMAT = {"format": "metis-tokens", "version": "1"}
FIELDS = ("semantic", "acoustic", "phones", "cond", "prompt_len")
Utterance = Dict[str, Union[str, torch.Tensor]]


def write_shard(path: Union[str, Path], utterances: Iterable[Utterance]) -> Path:
    """Write utterances (dicts with ``id`` and tensor fields) to one shard, atomically."""
    from ..checkpoint import save_weights

    tensors = {}
    for u in utterances:
        uid = str(u["id"])
        if "/" in uid:
            raise ValueError(f"utterance id {uid!r} must not contain '/'")
        for f in FIELDS:
            if u.get(f) is not None:
                tensors[f"{uid}/{f}"] = torch.as_tensor(np.asarray(u[f]))
    return save_weights(tensors, path, metadata=SHARD_FORMAT)


def _fit_length(x: torch.Tensor, T: int) -> Optional[torch.Tensor]:
    """Cut or repeat-pad x (T', ...) to T frames when |T' - T| <= 1; None otherwise."""
    n = x.shape[0]
    if n == T:
        return x
    if abs(n - T) > 1 or n == 0:
        return None
    return x[:T] if n > T else torch.cat([x, x[-1:]], dim=0)


class TokenDataset(torch.utils.data.Dataset):
    """Utterances from a shard directory (``path``) or from memory (``items``).

    ``require``: fields every kept utterance must have (e.g. ``("semantic", "acoustic")``
    for S2A, ``("semantic", "phones")`` for TTS). ``vocab`` / ``acoustic_vocab`` /
    ``phone_vocab``: id ranges to enforce (checked when an item is read). ``__getitem__``
    returns None for an item found bad at read time; :func:`collate` drops it.
    """

    def __init__(
        self,
        path: Optional[Union[str, Path]] = None,
        items: Optional[Sequence[Utterance]] = None,
        require: Sequence[str] = ("semantic",),
        min_frames: int = 4,
        max_frames: Optional[int] = None,
        vocab: Optional[int] = None,
        acoustic_vocab: Optional[int] = None,
        phone_vocab: Optional[int] = None,
        acoustic_layers: Optional[int] = None,
    ):
        if (path is None) == (items is None):
            raise ValueError("give exactly one of path= and items=")
        self.require = tuple(require)
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.vocab, self.acoustic_vocab, self.phone_vocab = vocab, acoustic_vocab, phone_vocab
        self.acoustic_layers = acoustic_layers  # fewest RVQ layers an utterance's acoustic ids must have
        self.skipped: collections.Counter = collections.Counter()
        self._items: List[Tuple] = []  # (source, id, T)
        self._memory = None
        if items is not None:
            self._memory = list(items)
            for i, u in enumerate(self._memory):
                shapes = {f: tuple(u[f].shape) for f in FIELDS if u.get(f) is not None}
                self._admit(("mem", i), str(u.get("id", i)), shapes)
        else:
            self._index(Path(path))

    # ------------------------------------------------------------ indexing
    def _index(self, root: Path) -> None:
        from safetensors import safe_open

        files = sorted(f for f in root.glob("*.safetensors") if not f.name.startswith(".")) if root.is_dir() else [root]
        if not files:
            raise FileNotFoundError(f"{root}: no *.safetensors shards")
        for f in files:
            try:
                with safe_open(str(f), framework="pt") as h:
                    groups: Dict[str, Dict[str, tuple]] = collections.defaultdict(dict)
                    for k in h.keys():
                        uid, _, field = k.rpartition("/")
                        if field in FIELDS:
                            groups[uid][field] = tuple(h.get_slice(k).get_shape())
            except Exception:  # noqa: BLE001 - any unreadable shard is skipped, counted
                self.skipped["unreadable shard"] += 1
                continue
            for uid, shapes in groups.items():
                self._admit(("file", str(f)), uid, shapes)

    def _admit(self, source, uid: str, shapes: Dict[str, tuple]) -> None:
        if "semantic" not in shapes or len(shapes["semantic"]) != 1 or shapes["semantic"][0] == 0:
            self.skipped["empty or no semantic ids"] += 1
            return
        T = shapes["semantic"][0]
        for f in self.require:
            if f not in shapes or shapes[f][0] == 0:
                self.skipped[f"no {f}"] += 1
                return
        if T < self.min_frames:
            self.skipped["too short"] += 1
            return
        if self.max_frames is not None and T > self.max_frames:
            self.skipped["too long"] += 1
            return
        for f in ("acoustic", "cond"):
            if f in shapes and (len(shapes[f]) != 2 or abs(shapes[f][0] - T) > 1):
                self.skipped[f"{f} length mismatch"] += 1
                return
        if self.acoustic_layers and "acoustic" in shapes and shapes["acoustic"][1] < self.acoustic_layers:
            self.skipped[f"fewer than {self.acoustic_layers} acoustic RVQ layers"] += 1
            return
        self._items.append((source, uid, T))

    # -------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._items)

    @property
    def lengths(self) -> List[int]:
        return [T for _, _, T in self._items]

    def _read(self, i: int) -> Dict[str, torch.Tensor]:
        (kind, where), uid, _ = self._items[i]
        if kind == "mem":
            u = self._memory[where]
            return {f: torch.as_tensor(u[f]) for f in FIELDS if u.get(f) is not None}
        from safetensors import safe_open

        with safe_open(where, framework="pt") as h:
            keys = set(h.keys())
            return {f: h.get_tensor(f"{uid}/{f}") for f in FIELDS if f"{uid}/{f}" in keys}

    def __getitem__(self, i: int) -> Optional[Utterance]:
        try:
            u = self._read(i)
        except Exception:  # noqa: BLE001 - a bad item is skipped, never a crash mid-epoch
            self.skipped["unreadable item"] += 1
            return None
        sem = u["semantic"].long()
        T = sem.shape[0]
        out: Utterance = {"id": self._items[i][1], "semantic": sem}
        if self.vocab is not None and (int(sem.min()) < 0 or int(sem.max()) >= self.vocab):
            self.skipped["semantic id out of range"] += 1
            return None
        if "acoustic" in u:
            a = _fit_length(u["acoustic"].long(), T)
            if a is None:
                self.skipped["acoustic length mismatch"] += 1
                return None
            if self.acoustic_vocab is not None and (int(a.min()) < 0 or int(a.max()) >= self.acoustic_vocab):
                self.skipped["acoustic id out of range"] += 1
                return None
            out["acoustic"] = a
        if "phones" in u:
            p = u["phones"].long()
            if self.phone_vocab is not None and p.numel() and (int(p.min()) < 0 or int(p.max()) >= self.phone_vocab):
                self.skipped["phone id out of range"] += 1
                return None
            out["phones"] = p
        if "cond" in u:
            c = _fit_length(u["cond"].float(), T)
            if c is None or not bool(torch.isfinite(c).all()):
                self.skipped["bad frame condition"] += 1
                return None
            out["cond"] = c
        if "prompt_len" in u:  # a fixed prompt (VC/TSE shards): [prompt ; target]
            p = int(u["prompt_len"].reshape(-1)[0])
            if not 0 < p < T:
                self.skipped["bad prompt length"] += 1
                return None
            out["prompt_len"] = p
        return out


class MixtureDataset(torch.utils.data.Dataset):
    """Several TokenDatasets (one per task / corpus) seen as one, for a task mixture.

    Index i runs over the sources in order; ``sources`` (N,) gives each index's source and
    ``weights`` the sources' weights (for :class:`MixtureBatchSampler`). ``skipped`` merges
    the sources' counts as ``"<name>: <reason>"``, so that a TTS source that needs phones and
    an SE source that needs a frame condition report their own losses.
    """

    def __init__(self, datasets: Sequence[TokenDataset], names: Sequence[str], weights: Sequence[float]):
        if not (len(datasets) == len(names) == len(weights)) or not datasets:
            raise ValueError("give one name and one weight per source dataset")
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {list(names)}")
        self.datasets = list(datasets)
        self.names = [str(n) for n in names]
        self.weights = [float(w) for w in weights]
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets]).tolist()
        self.sources = [s for s, d in enumerate(self.datasets) for _ in range(len(d))]

    def __len__(self) -> int:
        return self.offsets[-1]

    @property
    def lengths(self) -> List[int]:
        return [T for d in self.datasets for T in d.lengths]

    @property
    def skipped(self) -> collections.Counter:
        out: collections.Counter = collections.Counter()
        for name, d in zip(self.names, self.datasets):
            for reason, n in d.skipped.items():
                out[f"{name}: {reason}"] += n
        return out

    def __getitem__(self, i: int) -> Optional[Utterance]:
        s = self.sources[i]
        return self.datasets[s][i - self.offsets[s]]


def collate(items: Sequence[Optional[Utterance]], phone_pad_id: int = 1023) -> Optional[Dict[str, torch.Tensor]]:
    """Pad a list of utterances into a batch (None items dropped; None if nothing is left).

    Returns ``semantic`` (B, T) long (pad 0) and ``lengths`` (B,); ``acoustic`` (B, T, Q)
    when every item has it. When at least one item has them (a batch may mix tasks):

    - ``phones`` (B, Np) long, LEFT-padded with ``phone_pad_id`` so that every item's phones
      end right before its frames (as inference lays out [phones ; prompt ; target]: the
      relative positions inside an item do not depend on its batch), + ``phone_lengths``
      (B,); an item without phones is all padding with phone length 0;
    - ``cond`` (B, T, C) float (pad 0); when only some items have one, also ``cond_mask``
      (B,) bool, True = the item has a frame condition (the others' rows are zeros);
    - ``prompt_len`` (B,) long, the fixed prompt of VC/TSE shards; 0 = none fixed (the
      objective draws a random prompt for that item).

    A batch whose items all have (or all lack) a field is laid out as before mixing existed.
    """
    items = [u for u in items if u is not None]
    if not items:
        return None
    B = len(items)
    lengths = torch.tensor([u["semantic"].shape[0] for u in items])
    T = int(lengths.max())
    sem = torch.zeros(B, T, dtype=torch.long)
    for b, u in enumerate(items):
        sem[b, : lengths[b]] = u["semantic"]
    batch = {"semantic": sem, "lengths": lengths}
    if all("acoustic" in u for u in items):
        Q = items[0]["acoustic"].shape[1]
        a = torch.zeros(B, T, Q, dtype=torch.long)
        for b, u in enumerate(items):
            a[b, : lengths[b]] = u["acoustic"]
        batch["acoustic"] = a
    if any("phones" in u for u in items):
        pl = torch.tensor([u["phones"].shape[0] if "phones" in u else 0 for u in items])
        p = torch.full((B, max(int(pl.max()), 1)), phone_pad_id, dtype=torch.long)
        for b, u in enumerate(items):
            if "phones" in u and pl[b]:
                p[b, p.shape[1] - pl[b] :] = u["phones"]
        batch["phones"], batch["phone_lengths"] = p, pl
    has_cond = [("cond" in u) for u in items]
    if any(has_cond):
        C = next(u["cond"].shape[1] for u in items if "cond" in u)
        c = torch.zeros(B, T, C)
        for b, u in enumerate(items):
            if "cond" in u:
                c[b, : lengths[b]] = u["cond"]
        batch["cond"] = c
        if not all(has_cond):
            batch["cond_mask"] = torch.tensor(has_cond)
    if any("prompt_len" in u for u in items):
        batch["prompt_len"] = torch.tensor([int(u.get("prompt_len", 0)) for u in items])
    return batch


class FrameBatchSampler:
    """Dynamic batches holding at most ``max_frames`` padded frames (B · T_max) each.

    Deterministic in (seed, epoch): indices are shuffled, sorted by length inside pools of
    ``pool`` batches' worth, cut greedily into batches, and the batch order is shuffled.
    With ``world_size`` > 1 every rank takes every ``world_size``-th batch (the tail that
    does not fill all ranks is dropped) so all ranks make the same number of steps.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        max_batch_size: Optional[int] = None,
        pool: int = 50,
    ):
        if not lengths:
            raise ValueError("no usable utterances to batch (see the dataset's skip counts)")
        if max(lengths) > max_frames:
            raise ValueError(f"max_frames {max_frames} is smaller than the longest utterance ({max(lengths)} frames)")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.seed, self.shuffle = seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.max_batch_size = max_batch_size
        self.pool = pool

    def _epoch_order(self, epoch: int, rng: random.Random) -> List[int]:
        """The dataset indices of one epoch, in the order they are cut into batches."""
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        return order

    def global_batches(self, epoch: int) -> List[List[int]]:
        """Every rank's batches of ``epoch`` (batch i goes to rank i % world_size); the tail
        that does not fill all ranks is already dropped."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = self._epoch_order(epoch, rng)
        mean = max(1, int(np.mean(self.lengths)))
        pool_size = max(1, self.pool * max(1, self.max_frames // mean))
        batches: List[List[int]] = []
        for s in range(0, len(order), pool_size):
            chunk = sorted(order[s : s + pool_size], key=lambda i: self.lengths[i])
            cur: List[int] = []
            cur_max = 0
            for i in chunk:
                m = max(cur_max, self.lengths[i])
                full = self.max_batch_size is not None and len(cur) >= self.max_batch_size
                if cur and (m * (len(cur) + 1) > self.max_frames or full):
                    batches.append(cur)
                    cur, m = [], self.lengths[i]
                cur.append(i)
                cur_max = m
            if cur:
                batches.append(cur)
        if self.shuffle:
            rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.world_size
        if usable == 0:
            raise ValueError(f"only {len(batches)} batch(es) per epoch for {self.world_size} processes; lower max_frames")
        return batches[:usable]

    def epoch_batches(self, epoch: int) -> List[List[int]]:
        """This rank's batches (lists of dataset indices) for ``epoch``."""
        return self.global_batches(epoch)[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.epoch_batches(0))


class MixtureBatchSampler(FrameBatchSampler):
    """Dynamic batches over a mixture of sources whose share of frames follows their weights.

    ``sources`` (N,): the source of each dataset index; ``weights`` (S,): relative weights.
    Each epoch has as many frames as all sources together (F = Σ_s F_s) and gives source s a
    budget of F · w_s / Σw frames: it draws whole passes over the source, each in a fresh
    shuffled order, then utterances of one more shuffled pass until the budget is reached
    (a source with a large weight is repeated, one with a small weight is subsampled, a
    different subset each epoch); so each source's share of the epoch's frames is its
    weight's share to within one utterance. The drawn indices of all sources are shuffled
    together and cut into batches exactly as :class:`FrameBatchSampler` does (length-sorted
    pools, greedy cut by ``max_frames``, shuffled batch order, every ``world_size``-th batch
    per rank): batches mix sources. Everything is a function of (seed, epoch), so a run
    resumed at (epoch, batch position) continues the same sequence.

    :meth:`frames_seen` counts the frames of each source in the batches that all ranks
    have taken so far (finished epochs plus the current one up to a position).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        sources: Sequence[int],
        weights: Sequence[float],
        max_frames: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        max_batch_size: Optional[int] = None,
        pool: int = 50,
    ):
        super().__init__(lengths, max_frames, seed, shuffle, rank, world_size, max_batch_size, pool)
        if len(sources) != len(self.lengths):
            raise ValueError("one source id per utterance is needed")
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or not len(w) or not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f"source weights must be positive numbers, got {list(weights)}")
        self.sources = np.asarray(sources, dtype=np.int64)
        self._lengths = np.asarray(self.lengths, dtype=np.int64)
        self.num_sources = len(w)
        self.members = [np.flatnonzero(self.sources == s).tolist() for s in range(self.num_sources)]
        empty = [s for s, m in enumerate(self.members) if not m]
        if empty:
            raise ValueError(f"source(s) {empty} have no usable utterances (see the dataset's skip counts)")
        total = float(sum(self.lengths))
        self.budgets = (total * w / w.sum()).tolist()  # frames per epoch, per source
        self._done = (0, np.zeros(self.num_sources, dtype=np.int64))  # (epochs summed, their frames)
        self._cum: Optional[Tuple[int, np.ndarray]] = None  # (epoch, (n_batches + 1, S) cumsum)
        self._plan: Optional[Tuple[int, List[List[int]]]] = None  # (epoch, its global batches)

    def global_batches(self, epoch: int) -> List[List[int]]:
        if self._plan is None or self._plan[0] != epoch:  # planned once per epoch (batches + counts)
            self._plan = (epoch, super().global_batches(epoch))
        return self._plan[1]

    def _draw(self, epoch: int) -> List[List[int]]:
        """Per source, the indices drawn for ``epoch`` (each source from its own generator)."""
        drawn = []
        for s, members in enumerate(self.members):
            gen = random.Random(f"metis-mixture:{self.seed}:{epoch}:{s}")
            taken: List[int] = []
            got, budget = 0, self.budgets[s]
            while got < budget:
                sweep = list(members)
                if self.shuffle:
                    gen.shuffle(sweep)
                for i in sweep:
                    if got >= budget:
                        break
                    taken.append(i)
                    got += self.lengths[i]
            drawn.append(taken)
        return drawn

    def _epoch_order(self, epoch: int, rng: random.Random) -> List[int]:
        order = [i for taken in self._draw(epoch) for i in taken]
        if self.shuffle:
            rng.shuffle(order)
        return order

    def _epoch_frames(self, epoch: int) -> np.ndarray:
        """(S,) frames per source over all ranks' batches of a whole epoch."""
        if self.world_size == 1:  # nothing is dropped: the draw itself, no batching needed
            return np.array([sum(self.lengths[i] for i in taken) for taken in self._draw(epoch)], dtype=np.int64)
        return self._frames_by_batch(self.global_batches(epoch)).sum(axis=0)

    def _frames_by_batch(self, batches: List[List[int]]) -> np.ndarray:
        """(n_batches, S) frames of each source in each batch."""
        out = np.zeros((len(batches), self.num_sources), dtype=np.int64)
        flat = np.fromiter((i for b in batches for i in b), dtype=np.int64)
        which = np.repeat(np.arange(len(batches)), [len(b) for b in batches])
        np.add.at(out, (which, self.sources[flat]), self._lengths[flat])
        return out

    def frames_seen(self, epoch: int, pos: int) -> np.ndarray:
        """(S,) frames per source in all ranks' batches before ``epoch`` plus the first
        ``pos`` batches of each rank in ``epoch``. Finished epochs are replanned once (after a
        resume, the epochs before it) and their totals kept."""
        done, total = self._done
        if done > epoch:
            done, total = 0, np.zeros(self.num_sources, dtype=np.int64)
        while done < epoch:
            total = total + self._epoch_frames(done)
            done += 1
        self._done = (done, total)
        if self._cum is None or self._cum[0] != epoch:
            per = self._frames_by_batch(self.global_batches(epoch))
            self._cum = (epoch, np.concatenate([np.zeros((1, self.num_sources), np.int64), per.cumsum(axis=0)]))
        cum = self._cum[1]
        return total + cum[min(pos * self.world_size, len(cum) - 1)]


def synthetic_utterances(
    n: int,
    vocab: int = 1024,
    min_frames: int = 24,
    max_frames: int = 64,
    seed: int = 0,
    n_symbols: int = 16,
    num_quantizers: int = 0,
    acoustic_vocab: int = 256,
    phones: bool = False,
    phone_vocab: int = 1000,
    cond_dim: int = 0,
    prompt_frac: float = 0.0,
    symbol_seed: Optional[int] = None,
    id_prefix: str = "syn",
) -> List[Utterance]:
    """Learnable synthetic token data for tests and smoke runs (deterministic in ``seed``).

    Each utterance is a periodic pattern: semantic[i] = sym[(a + k·i) mod n_symbols] with a
    random start a and stride k ∈ {1, 2, 3}, over ``n_symbols`` ids drawn once from
    ``vocab``. A masked frame is thus predictable from its neighbours. ``acoustic[i, q]`` is
    a fixed function of semantic[i] and q (learnable from the condition); ``phones`` encode
    (a, k) so text predicts the whole sequence; ``cond`` is a fixed random projection of the
    semantic id plus noise (an SE-like frame condition); ``prompt_frac`` > 0 adds a fixed
    ``prompt_len`` = round(prompt_frac·T) (clamped to 1..T-1), as VC/TSE shards carry.

    ``symbol_seed``: draw the symbols and the projection from this seed instead of ``seed``,
    so that several synthetic sources (one per task of a mixture, each with its own
    ``seed``) share one token "language". ``id_prefix`` starts every utterance id.
    """
    g = np.random.default_rng(seed)
    gs = g if symbol_seed is None else np.random.default_rng(symbol_seed)
    sym = gs.choice(vocab, size=n_symbols, replace=False)
    proj = gs.standard_normal((n_symbols, max(cond_dim, 1))).astype(np.float32)
    out = []
    for j in range(n):
        T = int(g.integers(min_frames, max_frames + 1))
        a, k = int(g.integers(n_symbols)), int(g.integers(1, 4))
        idx = (a + k * np.arange(T)) % n_symbols
        u: Utterance = {"id": f"{id_prefix}{j:06d}", "semantic": torch.from_numpy(sym[idx].astype(np.int64))}
        if prompt_frac > 0:
            u["prompt_len"] = torch.tensor([min(max(int(round(prompt_frac * T)), 1), T - 1)])
        if num_quantizers:
            q = np.arange(num_quantizers)[None, :]
            u["acoustic"] = torch.from_numpy(((idx[:, None] * (q + 3) + 7 * q) % acoustic_vocab).astype(np.int64))
        if phones:
            u["phones"] = torch.tensor([10 + a, 40 + k, 50 + T % 7] + [60 + (a + k * i) % n_symbols for i in range(0, T, 8)]) % phone_vocab
        if cond_dim:
            c = proj[idx] + 0.1 * g.standard_normal((T, cond_dim)).astype(np.float32)
            u["cond"] = torch.from_numpy(c)
        out.append(u)
    return out


def iterate_batches(
    dataset: TokenDataset, sampler: FrameBatchSampler, epoch: int, start: int = 0, phone_pad_id: int = 1023
) -> Iterator[Tuple[int, Optional[Dict[str, torch.Tensor]]]]:
    """(index in epoch, batch) from batch ``start`` on; a batch whose items were all bad is None."""
    batches = sampler.epoch_batches(epoch)
    for bi in range(start, len(batches)):
        yield bi, collate([dataset[i] for i in batches[bi]], phone_pad_id)
