"""Training the SSL front end of a small model (``model.component: ssl``).

The official semantic tokens are k-means/VQ ids of w2v-BERT 2.0 layer 17, a layer that
carries phonetic content. A model trained here cannot download that network, and a random
one gives ids with spectral but no phonetic structure. This trainer fits the preset's own
``Wav2Vec2BertModel`` (the same class, config and fbank front end as w2v-BERT, so bundles
load it through the same code path) with one of two objectives:

``phones``  frame classification of the corpus's phone alignments (``make-corpus`` writes
            ``alignments/<split>.jsonl``): a linear head on the top layer predicts, for each
            20 ms frame, the phone sounding at its centre (``sil`` between phones).
``hubert``  HuBERT-style masked prediction: spans of input frames are replaced by the
            model's mask embedding and the head predicts, at the masked frames, the k-means
            cluster (``objective.clusters``) of the unmasked fbank frame; no labels needed.

The features the rest of the model sees are ``hidden_states[hidden_state_index]`` of the
preset (an intermediate layer when the head sits on a higher one). Noise augmentation
(``objective.noise_prob``, SNR drawn from ``objective.snr_db``; noise clips of the corpus's
``noise/train.jsonl`` when present, else coloured noise) keeps the features of noisy and
mixed speech close to those of the clean speech, which the SE/TSE adapters rely on.

``final/`` is an SSL directory (:func:`~metis_speech.bundle.save_ssl`: model truncated at
``hidden_state_index``, fbank settings, normalisation statistics of the training features,
``ssl_config.json``), usable as ``metis bundle --ssl`` and by the small-model driver, plus
``head.safetensors`` and ``labels.json`` (what the head predicts) for inspection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import MetisError
from .loop import LoopTrainer

__all__ = ["SSLTrainer", "SSL_OBJECTIVE", "frame_labels", "SILENCE"]

SILENCE = "sil"
FRAME_S = 0.02  # w2v-BERT frames: 10 ms fbank hop, two frames stacked

SSL_OBJECTIVE = {
    "target": "phones",  # phones | hubert
    "alignments": None,  # phones: alignment JSONL (default: <corpus>/alignments/<manifest stem>.jsonl)
    "noise": None,  # noise clip manifest (default: <manifest dir>/noise/train.jsonl; missing: coloured noise only)
    "clusters": 100,  # hubert: k-means clusters of fbank frames
    "kmeans_frames": 50000,
    "kmeans_iters": 20,
    "mask_prob": 0.08,  # hubert: probability that a frame starts a masked span
    "mask_length": 5,
    "noise_prob": 0.5,  # per utterance and epoch copy: add noise at an SNR from snr_db
    "snr_db": [0.0, 20.0],
    "noisy_copies": 1,  # precomputed noisy versions of each utterance (augmentation pool)
    "head_layer": None,  # layer whose output the head reads (default: the model's top layer)
    "max_utt_s": 20.0,
    "max_utts": None,  # use at most this many utterances (the first of the manifest)
    "workers": 0,  # processes computing the fbank inputs at start-up (0: one per CPU)
}


_W: dict = {}


def _worker_init(noise: str, sr: int, extractor: dict, copies: int, snr_db, max_s: float, seed: int) -> None:
    import torch as _torch
    from transformers import SeamlessM4TFeatureExtractor

    from ..models.ssl import vectorise_fbank

    _torch.set_num_threads(1)
    ext = vectorise_fbank(SeamlessM4TFeatureExtractor(**extractor))
    _W.update(bank=_noise_bank(Path(noise), sr) if copies else [], sr=sr, ext=ext, copies=copies,
              snr_db=snr_db, max_s=max_s, seed=seed)


def _worker_item(job):
    """(audio path, id) -> [clean fbank, noisy fbank, ...] (numpy) or a skip reason."""
    import hashlib

    from ..audio import load_audio
    from ..errors import AudioError

    path, uid = job
    sr = _W["sr"]
    try:
        w, _ = load_audio(path, sr)
    except AudioError:
        return "unreadable audio"
    if w.size > _W["max_s"] * sr:
        return "too long"
    if w.size < sr // 10:
        return "too short"
    h = hashlib.sha256(f"{_W['seed']}/{uid}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(h[:8], "little"))
    ext = _W["ext"]

    def fb(x):
        return ext(x, sampling_rate=sr, return_attention_mask=True, return_tensors="np")["input_features"][0].astype(np.float32)

    out = [fb(w)]
    for _ in range(_W["copies"]):
        out.append(fb(_add_noise(w, rng, _W["bank"], _W["snr_db"])))
    return out


def frame_labels(phones: List[list], n_frames: int, index: Dict[str, int]) -> torch.Tensor:
    """Alignment ``[[label, start_s, end_s], ...]`` -> (n_frames,) ids of the phone at each
    frame's centre (``SILENCE`` where no phone sounds). Unknown labels map to ``SILENCE``."""
    out = torch.full((n_frames,), index[SILENCE], dtype=torch.long)
    centres = (np.arange(n_frames) + 0.5) * FRAME_S
    for lab, s, e in phones:
        i0, i1 = np.searchsorted(centres, float(s)), np.searchsorted(centres, float(e))
        if i1 > i0:
            out[i0:i1] = index.get(_label(lab), index[SILENCE])
    return out


def _label(lab) -> str:
    """Alignment label -> class name; pauses (espeak ``_``, ``_:``, ...) are silence."""
    lab = str(lab)
    return SILENCE if not lab or lab.startswith("_") else lab


def _noise_bank(f: Path, sample_rate: int, limit: int = 200) -> List[np.ndarray]:
    """Noise clips of a noise manifest (make-corpus ``noise/train.jsonl``), at ``sample_rate``."""
    from ..audio import load_audio
    from ..errors import AudioError
    from .prepare_io import list_items

    if not f.is_file():
        return []
    out = []
    for it in list_items(f)[0][:limit]:
        try:
            w, _ = load_audio(it.audio, sample_rate)
        except AudioError:
            continue
        if w.size > sample_rate // 10 and float(np.abs(w).max()) > 0:
            out.append(w.astype(np.float32))
    return out


def _add_noise(w: np.ndarray, rng: np.random.Generator, bank: List[np.ndarray], snr_db: Tuple[float, float]) -> np.ndarray:
    """``w`` plus a noise-bank clip (looped/cut from a random start) or white/pink/brown noise,
    at an SNR drawn from ``snr_db``."""
    from ..corpus.noise import fit_length, make_noise, mix_at_snr

    if bank and rng.random() < 0.8:
        noise = fit_length(bank[int(rng.integers(len(bank)))], w.size, rng)
    else:
        noise = make_noise(("white", "pink", "brown")[int(rng.integers(3))], w.size, rng)
    return mix_at_snr(w, noise, float(rng.uniform(*snr_db)))[0]


class SSLTrainer(LoopTrainer):
    """``objective`` settings: :data:`SSL_OBJECTIVE`. ``data.path``: a corpus manifest
    (``train.jsonl``). Logs ``loss`` (cross-entropy) and ``accuracy`` (frame accuracy of the
    head, at masked frames for ``hubert``)."""

    def build(self) -> None:
        from ..models.ssl import SSLFeatureExtractor

        o = dict(SSL_OBJECTIVE)
        unknown = sorted(set(self.cfg.objective) - set(o))
        if unknown:
            raise MetisError(f"ssl objective: unknown setting(s) {unknown}; known: {sorted(o)}")
        o.update(self.cfg.objective)
        if o["target"] not in ("phones", "hubert"):
            raise MetisError(f"ssl objective: target must be 'phones' or 'hubert', got {o['target']!r}")
        self.o = o
        m = self.cfg.model
        self.ssl_cfg = self.preset_config("ssl", m.overrides)
        if self.ssl_cfg.model_config is None:
            raise MetisError("the preset's ssl has no model_config: only a w2v-BERT built from a config can be trained here")
        torch.manual_seed(self.cfg.train.seed)
        base = SSLFeatureExtractor.from_config(self.ssl_cfg, stats=None, truncate=False)
        model, self.extractor = base.model.train(), base.feature_extractor
        hf_cfg = model.config
        if o["target"] == "hubert":  # masks are ours (collate), put in through the model's mask embedding
            if getattr(model, "masked_spec_embed", None) is None:
                raise MetisError("the hubert target needs the model's mask embedding (model_config mask_time_prob > 0)")
            hf_cfg.apply_spec_augment = True
        n_layers = len(model.encoder.layers)
        self.head_layer = int(o["head_layer"] or n_layers)
        if not 1 <= self.head_layer <= n_layers:
            raise MetisError(f"ssl objective: head_layer must be in 1..{n_layers}, got {self.head_layer}")
        if not 0 <= self.ssl_cfg.hidden_state_index <= n_layers:
            raise MetisError(f"the preset's hidden_state_index {self.ssl_cfg.hidden_state_index} is outside 0..{n_layers}")
        self.items, self.lengths, self.labels = self._load_items()
        head = nn.Linear(hf_cfg.hidden_size, len(self.labels))
        params = list(model.parameters()) + list(head.parameters())
        opt, sched = self.make_optimizer(params)
        model, head, opt = self.accelerator.prepare(model, head, opt)
        self.nets = nn.ModuleDict({"model": model, "head": head})
        self.optimizers, self.schedulers = {"ssl": opt}, {"ssl": sched}

    # ---------------------------------------------------------------- data
    def _load_items(self):
        d, o = self.cfg.data, self.o
        if d.path is None:
            raise MetisError("ssl training needs data.path (a corpus manifest, train.jsonl)")
        manifest = Path(d.path)
        if manifest.suffix != ".jsonl" or not manifest.is_file():
            raise MetisError(f"{manifest}: expected a corpus manifest (.jsonl) with audio paths")
        from .prepare_io import list_items

        sr = self.ssl_cfg.sample_rate
        rows, bad = list_items(manifest)
        for _uid, _audio, reason in bad:
            self.skip(reason)
        align = {}
        if o["target"] == "phones":
            ap = Path(o["alignments"]) if o["alignments"] else manifest.parent / "alignments" / f"{manifest.stem}.jsonl"
            if not ap.is_file():
                raise MetisError(f"{ap}: no phone alignments (the phones target needs make-corpus alignments)")
            for line in ap.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    align[r["id"]] = r["phones"]
        noise = Path(o["noise"]) if o["noise"] else manifest.parent / "noise" / "train.jsonl"
        todo = [it for it in rows if o["target"] != "phones" or it.uid in align]
        self.skipped["no alignment"] = len(rows) - len(todo)
        if not self.skipped["no alignment"]:
            del self.skipped["no alignment"]
        if o["max_utts"]:
            todo = todo[: int(o["max_utts"])]
        e = self.extractor
        ext = {"feature_size": e.feature_size, "num_mel_bins": e.num_mel_bins, "sampling_rate": e.sampling_rate,
               "padding_value": e.padding_value, "stride": e.stride}
        args = (str(noise), sr, ext, int(o["noisy_copies"]) if o["noise_prob"] > 0 else 0,
                tuple(o["snr_db"]), float(o["max_utt_s"]), int(self.cfg.train.seed))
        jobs = [(it.audio, it.uid) for it in todo]
        workers = min(int(o["workers"]) or (os.cpu_count() or 1), max(1, len(jobs) // 8))
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=args) as ex:
                results = list(ex.map(_worker_item, jobs, chunksize=8))
        else:
            _worker_init(*args)
            results = [_worker_item(j) for j in jobs]
        feats: List[List[torch.Tensor]] = []
        phones: List[list] = []
        for it, res in zip(todo, results):
            if isinstance(res, str):
                self.skip(res)
                continue
            feats.append([torch.from_numpy(x) for x in res])
            phones.append(align.get(it.uid, []))
        if not feats:
            raise MetisError(f"no usable utterances in {manifest} (skipped: {self.skipped})")
        if o["target"] == "phones":
            names = sorted({_label(p[0]) for ph in phones for p in ph} - {SILENCE})
            labels = [SILENCE] + names
            index = {n: i for i, n in enumerate(labels)}
            targets = [frame_labels(ph, v[0].shape[0], index) for ph, v in zip(phones, feats)]
        else:
            labels, targets = self._cluster_targets(feats, np.random.default_rng(self.cfg.train.seed))
        items = [{"feats": v, "target": t} for v, t in zip(feats, targets)]
        return items, [int(v[0].shape[0]) for v in feats], labels

    def _cluster_targets(self, feats, rng):
        from .codec_train import kmeans

        o = self.o
        clean = [v[0] for v in feats]
        allf = torch.cat(clean)
        mean, std = allf.mean(0), allf.std(0).clamp(min=1e-5)
        pick = torch.from_numpy(rng.permutation(allf.shape[0])[: int(o["kmeans_frames"])])
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        centres = kmeans((allf[pick] - mean) / std, int(o["clusters"]), int(o["kmeans_iters"]), g)
        targets = [torch.cdist((x - mean) / std, centres).argmin(1) for x in clean]
        return [f"c{i}" for i in range(int(o["clusters"]))], targets

    def collate(self, items: list) -> dict:
        """Pick each item's clean or a noisy version, pad: input (B, T, F), mask (B, T), target (B, T)."""
        o = self.o
        g = self.generator
        t = max(it["feats"][0].shape[0] for it in items)
        f = items[0]["feats"][0].shape[1]
        pad = float(self.extractor.padding_value)
        x = torch.full((len(items), t, f), pad)
        mask = torch.zeros(len(items), t, dtype=torch.long)
        target = torch.full((len(items), t), -100, dtype=torch.long)
        for i, it in enumerate(items):
            versions = it["feats"]
            k = 0
            if len(versions) > 1 and float(torch.rand((), generator=g)) < o["noise_prob"]:
                k = 1 + int(torch.randint(len(versions) - 1, (), generator=g))
            n = versions[k].shape[0]
            x[i, :n], mask[i, :n], target[i, :n] = versions[k], 1, it["target"]
        out = {"input_features": x, "attention_mask": mask, "target": target}
        if o["target"] == "hubert":
            starts = torch.rand(len(items), t, generator=g) < o["mask_prob"]
            span = torch.zeros_like(starts)
            for s in range(int(o["mask_length"])):
                span[:, s:] |= starts[:, : t - s]
            span &= mask.bool()
            out["mask_time_indices"] = span
            out["target"] = torch.where(span, target, torch.full_like(target, -100))
        return out

    # ---------------------------------------------------------------- step
    def train_step(self, batch: dict) -> Dict[str, float]:
        model, head = self.nets["model"], self.nets["head"]
        kw = {}
        if "mask_time_indices" in batch:
            kw["mask_time_indices"] = batch["mask_time_indices"]
        with self.accelerator.autocast():
            out = model(batch["input_features"], attention_mask=batch["attention_mask"], output_hidden_states=True, **kw)
            logits = head(out.hidden_states[self.head_layer]).float()
        tgt = batch["target"]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
        opt = self.optimizers["ssl"]
        opt.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        gn = self.clip(model)
        opt.step()
        valid = tgt != -100
        acc = float((logits.argmax(-1)[valid] == tgt[valid]).float().mean()) if bool(valid.any()) else 0.0
        stats = {"loss": float(loss.detach()), "accuracy": acc, "frames": float(batch["attention_mask"].sum())}
        if gn is not None:
            stats["grad_norm"] = gn
        return stats

    # ---------------------------------------------------------------- final
    @torch.no_grad()
    def feature_stats(self, model: nn.Module, limit: int = 400) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of hidden_states[hidden_state_index] over clean training utterances."""
        model.eval()
        dev = next(model.parameters()).device
        s = s2 = None
        n = 0
        for it in self.items[:limit]:
            x = it["feats"][0][None].to(dev)
            h = model(x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long, device=dev),
                      output_hidden_states=True).hidden_states[self.ssl_cfg.hidden_state_index][0].double()
            s = h.sum(0) if s is None else s + h.sum(0)
            s2 = (h * h).sum(0) if s2 is None else s2 + (h * h).sum(0)
            n += h.shape[0]
        model.train()
        mean = s / n
        var = (s2 / n - mean * mean).clamp(min=1e-6)
        return mean.float().cpu(), var.float().cpu()

    def save_final(self) -> Optional[Path]:
        import copy

        from ..bundle import save_ssl
        from ..checkpoint import save_weights
        from ..models.ssl import SSLFeatureExtractor

        model = copy.deepcopy(self.unwrap(self.nets["model"])).cpu()
        head = copy.deepcopy(self.unwrap(self.nets["head"])).cpu()
        mean, var = self.feature_stats(model)
        model.config.apply_spec_augment = bool(self.ssl_cfg.model_config.get("apply_spec_augment", False))
        final = self.out / "final"
        tmp = self.out / ".tmp-final"
        import shutil

        if tmp.exists():
            shutil.rmtree(tmp)
        ext = SSLFeatureExtractor(model, self.extractor, self.ssl_cfg.hidden_state_index, (mean, var),
                                  self.ssl_cfg.sample_rate, truncate=True)
        save_ssl(ext, tmp, self.ssl_cfg)
        save_weights({k: v.contiguous() for k, v in head.state_dict().items()}, tmp / "head.safetensors")
        (tmp / "labels.json").write_text(json.dumps({"target": self.o["target"], "head_layer": self.head_layer,
                                                     "labels": self.labels, "step": self.step}, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
        return final
