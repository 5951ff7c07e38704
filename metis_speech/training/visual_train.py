"""Trainer for the lip-to-speech visual encoder: mouth crops -> frame-aligned semantic ids.

The reference L2S encoder was never published (METIS_SPEC.md §3); this trains the project's
:class:`~metis_speech.models.visual.VisualEncoder` so that its 25 fps features carry what
stage 1 needs: a linear head on each video frame's feature predicts the two 50 Hz semantic
ids of that frame (cross-entropy; ids 2n and 2n+1 belong to frame n).

    crops (B, N, 96, 96) --VisualEncoder--> (B, N, 768) --Linear 768 -> 2V--> logits (B, 2N, V)

Data (``data.synthetic`` or ``data.path``):

- ``data.path``: a directory of ``*.safetensors`` shards (see :func:`write_visual_shard`)
  holding, per utterance ``<id>``, ``<id>/crops`` (N, 96, 96) uint8 grayscale mouth crops
  at 25 fps (e.g. from :func:`metis_speech.video.video_to_crops` on the corpus's L2S videos)
  and ``<id>/semantic`` (T,) int64 semantic ids of the same utterance's audio at 50 Hz (from
  a bundle's semantic tokenizer). T may differ from 2N by one frame (cut or repeat-padded);
  larger differences are skipped with a counted reason. ``metis prepare MANIFEST --task
  visual`` writes such a folder from videos + audio (:mod:`.prepare_video`).
- ``data.synthetic``: :func:`synthetic_lip_pairs` (drawn mouths whose opening encodes the ids).

``objective``: ``vocab`` (default: the preset's semantic codec size), ``label_smoothing``.
Batching is by video frames (``data.max_frames`` = B · N_max). Final outputs in
``<out>/final``: the encoder as a :func:`~metis_speech.loading.save_checkpoint` directory
(``load_checkpoint`` returns the VisualEncoder) plus ``head.safetensors`` / ``head.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MetisError
from .loop import LoopTrainer

__all__ = ["VisualTokenModel", "VisualEncoderTrainer", "synthetic_lip_pairs", "write_visual_shard", "IDS_PER_FRAME"]

IDS_PER_FRAME = 2  # 50 Hz semantic ids per 25 fps video frame
IGNORE = -100


class VisualTokenModel(nn.Module):
    """VisualEncoder + linear head. crops (B, N, h, w), lengths (B,) -> logits (B, 2N, V)."""

    def __init__(self, encoder: nn.Module, vocab: int):
        super().__init__()
        self.encoder = encoder
        self.vocab = vocab
        self.head = nn.Linear(encoder.cfg.out_dim, IDS_PER_FRAME * vocab)

    def forward(self, crops: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.encoder(crops, lengths=lengths)  # (B, N, C)
        b, n, _ = h.shape
        return self.head(h).view(b, n * IDS_PER_FRAME, self.vocab)


def _mouth(size: int, opening: float, width: float, brightness: float, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = size / 2
    inside = ((xx - c) / width) ** 2 + ((yy - c) / max(opening, 1.0)) ** 2 <= 1.0
    img = np.full((size, size), brightness, np.float32)
    img[inside] = 0.1
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def synthetic_lip_pairs(n: int = 32, min_frames: int = 8, max_frames: int = 16, classes: int = 8,
                        vocab: int = 1024, size: int = 96, seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """Learnable (crops, ids) pairs: each video frame shows a dark ellipse ("mouth") whose
    opening and width encode a class c (runs of 1-4 frames); its two 50 Hz ids are
    (2c, 2c+1) mod vocab. -> n dicts with ``crops`` (N, size, size) uint8, ``semantic`` (2N,)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(min_frames, max_frames + 1))
        cls: List[int] = []
        while len(cls) < t:
            cls += [int(rng.integers(classes))] * int(rng.integers(1, 5))
        cls = cls[:t]
        bright = float(rng.uniform(0.5, 0.8))
        frames = [_mouth(size, 3 + 30 * c / max(1, classes - 1), 18 + 2 * (c % 3), bright, rng) for c in cls]
        crops = torch.from_numpy((np.stack(frames) * 255).round().astype(np.uint8))
        ids = torch.tensor([[2 * c % vocab, (2 * c + 1) % vocab] for c in cls], dtype=torch.long).reshape(-1)
        out.append({"crops": crops, "semantic": ids})
    return out


def write_visual_shard(path: Union[str, Path], items: Iterable[Tuple[str, torch.Tensor, torch.Tensor]]) -> Path:
    """Write (id, crops (N, h, w) uint8, semantic (T,) int) triples to one shard, atomically."""
    from ..checkpoint import save_weights

    tensors = {}
    for uid, crops, sem in items:
        if "/" in uid:
            raise ValueError(f"utterance id {uid!r} must not contain '/'")
        tensors[f"{uid}/crops"] = torch.as_tensor(crops).to(torch.uint8).contiguous()
        tensors[f"{uid}/semantic"] = torch.as_tensor(sem).long().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    save_weights(tensors, tmp, metadata={"format": "metis-visual", "version": "1"})
    tmp.replace(path)
    return path


class VisualEncoderTrainer(LoopTrainer):
    """Trains VisualEncoder + head with frame-aligned semantic-id cross-entropy."""

    frames_unit = "video frames"

    def build(self) -> None:
        from ..models.visual import VisualEncoder

        unknown = sorted(set(self.cfg.objective) - {"vocab", "label_smoothing"})
        if unknown:
            raise MetisError(f"visual encoder objective: unknown setting(s) {unknown}; known: ['label_smoothing', 'vocab']")
        m = self.cfg.model
        self.model_cfg = self.preset_config(m.component, m.overrides)
        vocab = self.cfg.objective.get("vocab")
        if vocab is None:
            vocab = self.preset_config("semantic_codec").codebook_size
        self.vocab = int(vocab)
        self.label_smoothing = float(self.cfg.objective.get("label_smoothing", 0.0))
        encoder = VisualEncoder(self.model_cfg)
        self.init_from(encoder, m.init_from)
        model = VisualTokenModel(encoder, self.vocab)
        opt, sched = self.make_optimizer(model.parameters())
        model, opt = self.accelerator.prepare(model, opt)
        self.nets = nn.ModuleDict({"model": model})
        self.optimizers, self.schedulers = {"model": opt}, {"model": sched}
        self.items, self.lengths = self._load_items()

    def _load_items(self):
        d, size = self.cfg.data, self.model_cfg.in_size
        if d.synthetic is not None:
            syn = dict(d.synthetic)
            syn.setdefault("vocab", self.vocab)
            syn.setdefault("size", size)
            raw = synthetic_lip_pairs(**syn)
        else:
            raw = self._read_shards(Path(d.path))
        items = []
        for it in raw:
            crops, sem = it["crops"], it["semantic"].long()
            n = crops.shape[0] if crops.dim() == 3 else 0
            if crops.dim() != 3 or tuple(crops.shape[1:]) != (size, size):
                self.skip(f"crops not (N, {size}, {size})")
            elif n < d.min_utt_frames:
                self.skip("too short")
            elif d.max_utt_frames is not None and n > d.max_utt_frames:
                self.skip("too long")
            elif abs(sem.numel() - IDS_PER_FRAME * n) > 1:
                self.skip("semantic/video length mismatch")
            elif sem.numel() == 0 or int(sem.min()) < 0 or int(sem.max()) >= self.vocab:
                self.skip("ids outside the vocabulary")
            else:
                t = IDS_PER_FRAME * n
                sem = sem[:t] if sem.numel() >= t else torch.cat([sem, sem[-1:].expand(t - sem.numel())])
                items.append({"crops": crops, "semantic": sem})
        if not items:
            raise MetisError(f"no usable (crops, semantic ids) pairs (skipped: {self.skipped})")
        return items, [int(it["crops"].shape[0]) for it in items]

    def _read_shards(self, path: Path) -> List[Dict[str, torch.Tensor]]:
        from safetensors.torch import load_file

        # hidden files are temp files of an unfinished write (metis prepare, write_visual_shard)
        files = sorted(f for f in path.glob("*.safetensors") if not f.name.startswith(".")) if path.is_dir() else [path]
        if not files:
            raise MetisError(f"{path}: no *.safetensors visual shards")
        out = []
        for f in files:
            try:
                t = load_file(str(f))
            except Exception:  # noqa: BLE001 - a corrupt shard is skipped, not fatal
                self.skip("unreadable shard")
                continue
            for uid in sorted({k.rsplit("/", 1)[0] for k in t}):
                if f"{uid}/crops" in t and f"{uid}/semantic" in t:
                    out.append({"crops": t[f"{uid}/crops"], "semantic": t[f"{uid}/semantic"]})
                else:
                    self.skip("missing crops or semantic ids")
        return out

    def collate(self, items: list) -> dict:
        n = max(it["crops"].shape[0] for it in items)
        size = items[0]["crops"].shape[-1]
        crops = torch.zeros(len(items), n, size, size)
        targets = torch.full((len(items), IDS_PER_FRAME * n), IGNORE, dtype=torch.long)
        lengths = torch.zeros(len(items), dtype=torch.long)
        for i, it in enumerate(items):
            k = it["crops"].shape[0]
            c = it["crops"]
            crops[i, :k] = c.float() / 255.0 if c.dtype == torch.uint8 else c.float()
            targets[i, : IDS_PER_FRAME * k] = it["semantic"]
            lengths[i] = k
        return {"crops": crops, "lengths": lengths, "targets": targets}

    def train_step(self, batch: dict) -> Dict[str, float]:
        acc, model, opt = self.accelerator, self.nets["model"], self.optimizers["model"]
        with acc.autocast():
            logits = model(batch["crops"], batch["lengths"])
        tgt = batch["targets"]
        loss = F.cross_entropy(logits.float().reshape(-1, self.vocab), tgt.reshape(-1), ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing)
        acc.backward(loss)
        gn = self.clip(model)
        opt.step()
        opt.zero_grad(set_to_none=True)
        valid = tgt != IGNORE
        correct = (logits.detach().argmax(-1) == tgt) & valid
        stats = {"loss": float(loss.detach()), "accuracy": float(correct.sum() / valid.sum().clamp(min=1)),
                 "frames": float(batch["lengths"].sum())}
        if gn is not None:
            stats["grad_norm"] = gn
        return stats

    def save_final(self) -> Path:
        from ..checkpoint import save_weights
        from ..loading import save_checkpoint

        final = self.out / "final"
        model = self.unwrap(self.nets["model"]).float().eval()
        save_checkpoint(model.encoder, final)
        save_weights(model.head.state_dict(), final / "head.safetensors")
        (final / "head.json").write_text(json.dumps({"vocab": self.vocab, "ids_per_frame": IDS_PER_FRAME}, indent=1))
        return final


def load_visual_head(directory: Union[str, Path]) -> nn.Linear:
    """The trained id head of a visual-encoder run's ``final`` directory (Linear out_dim -> 2V)."""
    from ..checkpoint import read_weights

    directory = Path(directory)
    meta = json.loads((directory / "head.json").read_text())
    w = read_weights(directory / "head.safetensors")
    head = nn.Linear(w["weight"].shape[1], w["weight"].shape[0])
    head.load_state_dict(w)
    if head.out_features != meta["ids_per_frame"] * meta["vocab"]:
        raise MetisError(f"{directory}: head size does not match head.json")
    return head.eval()
