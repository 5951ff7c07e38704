"""A small Metis (the ``small`` preset; ``--preset tiny`` for tests) trained here, end to end,
from an offline corpus.

    python -m metis_speech.training.small_model --corpus CORPUS --work runs/small [--budget short|gpu]

The corpus is a ``metis make-corpus`` folder (``train.jsonl`` with ``audio``, ``text``,
``speaker``; ``alignments/train.jsonl`` for the SSL's phone targets; ``dev.jsonl`` for the
examples). Steps, in order, each writing under ``--work``:

=================  ==========================================================================
vocab              the phone vocabulary: a project-own one from the phones of the training
                   transcripts (default; shippable, unlike the official table) or --phone-vocab
phones             ``<work>/train.jsonl``: the manifest with each transcript's phone ids, so
                   that every later step runs without a G2P back end (e.g. on a GPU machine)
                   (and ``<work>/val.jsonl``, the same for the corpus's ``test.jsonl``)
ssl                the SSL front end (``small_ssl``): the preset's w2v-BERT-class network
                   trained to classify the aligned phones of each 20 ms frame, noise-augmented
                   (HuBERT-style masked prediction when the corpus has no alignments)
base               ``random:PRESET`` bundle with that trained SSL, the front end of the rest
semantic_codec     semantic codec (k-means start) on that SSL's features of part of the corpus
bundle_v0          base + the trained semantic codec (the tokenizer of the stage-1 shards)
prepare_stage1     ``metis prepare --task none`` with phones (stage-1 pre-training, TTS); also of
                   ``val.jsonl`` into ``data/stage1_val``, the held-out set of the stage-1 runs
prepare_se/vc/tse  ``metis prepare --task se|vc|tse`` (the condition features of a noisy copy,
                   a timbre-perturbed copy, a two-speaker mixture)
stage1_pretrain    stage-1 pre-training (no condition)
stage1_tts         TTS: full fine-tune with the phone prefix (a new prefix needs the whole model) and
                   frame phones (``Stage1Config.frame_phones``: its aligner is fitted on the shards first)
stage1_se/vc/tse   LoRA + gated adapter, as the paper fine-tunes them (the merged weights go in
                   the bundle)
acoustic_codec     acoustic codec GAN on the corpus audio (k-means codebooks, dead-code
                   restarts, reconstruction-only warm-up)
bundle_v1          bundle_v0 + the trained acoustic codec (the tokenizer of the S2A shards)
prepare_s2a        ``metis prepare --task none`` with acoustic ids (and ``data/s2a_val``)
s2a, s2a_1layer    S2A full and 1-layer
bundle             ``assemble_bundle``: bundle_v1 + S2A + stage 1 (tts, base and every adapter
                   task whose run is complete)
examples           on a dev item: codec resynthesis, SE of a noisy copy, TTS in its voice
=================  ==========================================================================

The chains after the semantic codec share nothing but their inputs (:data:`LANES`): run
them side by side (each waits for what another makes), then the plain command for the
bundle and examples::

    python -m metis_speech.training.small_model --corpus C --work W --lane stage1 &
    python -m metis_speech.training.small_model --corpus C --work W --lane s2a &
    wait; python -m metis_speech.training.small_model --corpus C --work W

or, on a machine with many cores or a GPU, ``--all-lanes`` (one process per lane, then the
bundle). The lanes record their steps in ``<work>/summary.json`` under a file lock.

A step is skipped when its output is complete; a training step whose run directory holds
checkpoints continues from them (``metis train --resume``), so killing the driver and
running the same command again goes on where it stopped. Each training step checkpoints
every chunk of steps and prints a progress line per chunk; ``<work>/summary.json`` records
what was done, with losses, accuracies and codebook use.

Budgets (:data:`BUDGETS`): ``tiny`` 2-4 steps each (a test, about a minute on a 6-utterance
corpus); ``short`` step counts for CPU runs (about 6 CPU hours for 1 hour of speech at the
tiny preset); ``full`` about 10x those; ``gpu`` wall-clock budgets per network
(``train.max_seconds``, 80-220 s) and larger batches, for ``--all-lanes`` on one GPU: the
shipped model's run took 9 minutes on an H200 for 2 hours of speech.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import MetisError

__all__ = ["BUDGETS", "SmallModel", "main"]

TRAIN_STEPS = ("ssl", "semantic_codec", "stage1_pretrain", "stage1_tts", "stage1_se", "stage1_vc", "stage1_tse",
               "acoustic_codec", "s2a", "s2a_1layer")
ADAPTER_TASKS = ("se", "vc", "tse")  # LoRA + gated SSL adapter on the pre-trained base
# in order; each step's inputs are complete outputs of the steps in DEPENDS
STEPS = ("vocab", "phones", "ssl", "base", "semantic_codec", "bundle_v0", "prepare_stage1", "prepare_se", "prepare_vc",
         "prepare_tse", "stage1_pretrain", "stage1_tts", "stage1_se", "stage1_vc", "stage1_tse", "acoustic_codec",
         "bundle_v1", "prepare_s2a", "s2a", "s2a_1layer", "bundle", "examples")
DEPENDS: Dict[str, tuple] = {
    "vocab": (), "phones": ("vocab",), "ssl": ("phones",), "base": ("vocab", "ssl"), "semantic_codec": ("base", "phones"),
    "bundle_v0": ("base", "semantic_codec"),
    "prepare_stage1": ("bundle_v0", "phones"), "stage1_pretrain": ("prepare_stage1",),
    "stage1_tts": ("prepare_stage1", "stage1_pretrain"),
    **{f"prepare_{t}": ("bundle_v0", "phones") for t in ADAPTER_TASKS},
    **{f"stage1_{t}": (f"prepare_{t}", "stage1_pretrain") for t in ADAPTER_TASKS},
    "acoustic_codec": ("phones",), "bundle_v1": ("bundle_v0", "acoustic_codec"), "prepare_s2a": ("bundle_v1",),
    "s2a": ("prepare_s2a",), "s2a_1layer": ("prepare_s2a",),
    # the adapter tasks join the bundle when their runs are complete (a lane that failed leaves its task out)
    "bundle": ("bundle_v1", "s2a", "s2a_1layer", "stage1_pretrain", "stage1_tts"),
    "examples": ("bundle",),
}
# independent chains: one process each (``--lane``); with many cores (a GPU machine) run
# every lane at once, each waiting for what the others make
LANES: Dict[str, tuple] = {
    "stage1": ("vocab", "phones", "ssl", "base", "semantic_codec", "bundle_v0", "prepare_stage1", "stage1_pretrain",
               "stage1_tts"),
    **{t: (f"prepare_{t}", f"stage1_{t}") for t in ADAPTER_TASKS},
    "s2a": ("acoustic_codec", "bundle_v1", "prepare_s2a", "s2a"),
    "s2a_1layer": ("s2a_1layer",),
}
RECIPES = {n: f"small_{n}" for n in TRAIN_STEPS}

# max_steps per network, steps between checkpoints (and progress lines), setting overrides
BUDGETS: Dict[str, dict] = {
    "tiny": {
        "steps": {"ssl": 2, "semantic_codec": 4, "acoustic_codec": 4, "s2a": 2, "s2a_1layer": 2, "stage1_pretrain": 4,
                  "stage1_tts": 2, "stage1_se": 2, "stage1_vc": 2, "stage1_tse": 2},
        "chunk": 2,
        "overrides": {
            "*": {"data": {"max_frames": 512, "min_utt_frames": 4}, "optim": {"warmup_steps": 1}, "train": {"log_every": 1}},
            "ssl": {"data": {"max_frames": 2000}},
            "acoustic_codec": {"data": {"max_frames": 40}, "objective": {"disc_start": 2, "kmeans_frames": 2000, "kmeans_iters": 2}},
        },
        "semantic_kmeans_frames": 1000,
        "decode": {"steps": 2, "s2a_steps": [2, 1]},
        "hours": "a few minutes for a 6-utterance corpus",
    },
    "short": {
        "steps": {"ssl": 3000, "semantic_codec": 50, "acoustic_codec": 3000, "s2a": 4000, "s2a_1layer": 2000,
                  "stage1_pretrain": 4000, "stage1_tts": 3000, "stage1_se": 1500, "stage1_vc": 1500, "stage1_tse": 1500},
        "chunk": 250,
        "overrides": {},
        "semantic_kmeans_frames": 20000,
        "decode": {},
        "hours": "about 6 CPU hours (one thread) for the 1-hour corpus: acoustic codec ~2 h, the rest ~4 h; ~3.5 h in two lanes",
    },
    "full": {
        "steps": {"ssl": 20000, "semantic_codec": 50, "acoustic_codec": 40000, "s2a": 40000, "s2a_1layer": 20000,
                  "stage1_pretrain": 40000, "stage1_tts": 30000, "stage1_se": 15000, "stage1_vc": 15000, "stage1_tse": 15000},
        "chunk": 1000,
        "overrides": {"acoustic_codec": {"objective": {"disc_start": 5000}}},
        "semantic_kmeans_frames": 50000,
        "decode": {},
        "hours": "about 65 CPU hours (one thread) for the 1-hour corpus; a GPU makes it a few hours",
    },
    # one GPU machine, every lane at once (--all-lanes): wall-clock budgets per network
    # (train.max_seconds) instead of step counts, larger batches
    "gpu": {
        "steps": {n: 200000 for n in TRAIN_STEPS} | {"semantic_codec": 50},
        "seconds": {"ssl": 80, "stage1_pretrain": 110, "stage1_tts": 100, "stage1_se": 100, "stage1_vc": 100,
                    "stage1_tse": 100, "acoustic_codec": 220, "s2a": 120, "s2a_1layer": 120},
        "chunk": 1000,
        "overrides": {
            "*": {"data": {"max_frames": 16384}, "train": {"log_every": 50}},
            "ssl": {"data": {"max_frames": 24000}},
            "acoustic_codec": {"data": {"max_frames": 2560}, "objective": {"disc_start": 0.4}},
        },
        "semantic_kmeans_frames": 50000,
        "decode": {},
        "hours": "about 10 minutes on one GPU with every lane in its own process",
    },
}


def _merge(d: dict, extra: dict) -> dict:
    out = dict(d)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _mean(xs: Sequence[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return round(sum(xs) / len(xs), 4) if xs else None


def run_losses(run: Path, k: int = 3) -> dict:
    """First/last values (mean of ``k`` log records) of a run's loss and quality metrics."""
    from .trainer import read_log

    recs = read_log(run)
    if not recs:
        return {}
    out = {"steps_logged": recs[-1]["step"]}
    for key in ("loss", "accuracy", "recon_loss", "mel_loss", "perplexity", "codebook_usage", "disc_loss", "adv_loss"):
        vals = [r.get(key) for r in recs if key in r]
        if vals:
            out[f"{key}_first"], out[f"{key}_last"] = _mean(vals[:k]), _mean(vals[-k:])
    for key in ("val_loss", "val_accuracy"):  # held-out shards (data.val_path): first and last evaluation
        vals = [r[key] for r in recs if r.get(key) is not None]
        if vals:
            out[f"{key}_first"], out[f"{key}_last"] = vals[0], vals[-1]
    if "accuracy_last" in out and out.get("loss_last") is not None:  # masked-token cross-entropy
        out["token_perplexity_last"] = round(math.exp(out["loss_last"]), 2)
    return out


def _prepared(shards: Path) -> bool:
    """Whether ``metis prepare`` finished ``shards`` with at least one utterance."""
    try:
        s = json.loads((shards / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return bool(s.get("complete")) and s.get("utterances", 0) > 0


def token_stats(shards: Path) -> dict:
    """Codebook use over prepared shards: distinct ids and perplexity of the semantic ids and
    of each acoustic RVQ layer (a collapsed codec shows as a handful of ids)."""
    import torch
    from safetensors.torch import load_file

    sem, ac = [], []
    for f in sorted(shards.glob("*.safetensors")):
        t = load_file(str(f))
        sem += [v.long().reshape(-1) for k, v in t.items() if k.endswith("/semantic")]
        ac += [v.long() for k, v in t.items() if k.endswith("/acoustic")]

    def stats(ids: torch.Tensor) -> dict:
        counts = torch.bincount(ids)
        p = counts[counts > 0].float() / ids.numel()
        return {"distinct": int((counts > 0).sum()), "perplexity": round(float(torch.exp(-(p * p.log()).sum())), 1)}

    out = {}
    if sem:
        out["semantic"] = stats(torch.cat(sem))
    if ac:
        a = torch.cat(ac)
        out["acoustic"] = [stats(a[:, q]) for q in range(a.shape[1])]
    return out


class SmallModel:
    """The driver: ``run()`` does every step not yet complete (see the module docstring)."""

    def __init__(self, corpus, work, budget: str = "short", phone_vocab=None, language: str = "en",
                 log: Callable[[str], None] = print, stop_after: Optional[str] = None,
                 max_steps: Optional[Dict[str, int]] = None, preset: str = "small"):
        self.corpus = Path(corpus)
        self.train_manifest = self.corpus / "train.jsonl"
        if not self.train_manifest.is_file():
            raise MetisError(f"{self.corpus}: no train.jsonl (build a corpus with `metis make-corpus OUT`)")
        if budget not in BUDGETS:
            raise MetisError(f"unknown budget {budget!r}; choose one of {sorted(BUDGETS)}")
        if stop_after is not None and stop_after not in STEPS:
            raise MetisError(f"unknown step {stop_after!r}; steps: {', '.join(STEPS)}")
        if phone_vocab is not None and not Path(phone_vocab).is_file():
            raise MetisError(f"phone vocabulary {phone_vocab} not found")
        self.work = Path(work)
        from ..config import list_presets

        if preset not in list_presets():
            raise MetisError(f"unknown preset {preset!r}; choose one of {', '.join(list_presets())}")
        self.preset = preset
        self.budget_name, self.budget = budget, BUDGETS[budget]
        bad = sorted(set(max_steps or {}) - set(TRAIN_STEPS))
        if bad:
            raise MetisError(f"--max-steps: {', '.join(bad)} is not a training step; training steps: {', '.join(TRAIN_STEPS)}")
        if any(int(v) < 1 for v in (max_steps or {}).values()):
            raise MetisError("--max-steps: step counts must be positive")
        if max_steps:
            self.budget = dict(self.budget, steps=dict(self.budget["steps"], **{k: int(v) for k, v in max_steps.items()}))
        self.given_vocab = Path(phone_vocab) if phone_vocab is not None else None
        self.phone_vocab, self.language = self.work / "vocab.json", language
        self.stop_after = stop_after
        self._log = log
        self.summary_path = self.work / "summary.json"
        self.summary: dict = {}

    # ---------------------------------------------------------------- helpers
    def log(self, msg: str) -> None:
        self._log(f"[{time.strftime('%H:%M:%S')}] {msg}")

    def path(self, name: str) -> Path:
        return {"base": self.work / "base", "bundle_v0": self.work / "bundle_v0", "bundle_v1": self.work / "bundle_v1",
                "bundle": self.work / "bundle", "prepare_stage1": self.work / "data" / "stage1",
                "prepare_s2a": self.work / "data" / "s2a", "prepare_se": self.work / "data" / "se",
                "prepare_vc": self.work / "data" / "vc", "prepare_tse": self.work / "data" / "tse",
                "examples": self.work / "examples", "vocab": self.work / "vocab.json",
                "phones": self.work / "train.jsonl", "val": self.work / "val.jsonl"}.get(name, self.work / "runs" / name)  # runs/<name>

    @contextlib.contextmanager
    def _summary_lock(self):
        """An exclusive lock on ``<work>/summary.lock`` (two lanes share summary.json)."""
        import fcntl

        with open(self.work / "summary.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_summary(self) -> dict:
        try:
            return json.loads(self.summary_path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as e:
            raise MetisError(f"{self.summary_path}: not valid JSON ({e}); move it away to start the summary afresh")

    def _write_summary(self) -> None:
        self.summary["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        steps = self.summary.get("steps", {})  # keep STEPS order
        self.summary["steps"] = {n: steps[n] for n in STEPS if n in steps}
        _atomic_json(self.summary_path, self.summary)

    def _save_step(self, name: str, rec: dict) -> None:
        """Record step ``name`` in summary.json, keeping what another process wrote meanwhile."""
        with self._summary_lock():
            self.summary = self._read_summary() or self.summary
            self.summary.setdefault("steps", {})[name] = rec
            self._write_summary()

    def complete(self, name: str) -> bool:
        """Whether step ``name`` left a complete output."""
        from ..bundle import is_bundle

        p = self.path(name)
        if name in ("base", "bundle_v0", "bundle_v1", "bundle"):
            return is_bundle(p)
        if name.startswith("prepare_"):
            return _prepared(p)
        if name == "examples":
            return (p / "examples.json").is_file()
        if name in ("vocab", "phones"):
            return p.is_file()
        final = p / "final"
        if name == "acoustic_codec":
            return all((final / f).is_file() for f in ("encoder/config.json", "encoder/model.safetensors",
                                                         "decoder/config.json", "decoder/model.safetensors"))
        if name == "ssl":
            return all((final / f).is_file() for f in ("ssl_config.json", "model.safetensors", "stats.npz"))
        need = ("model.safetensors", "config.json") + (("ssl.json",) if name == "semantic_codec" else ())
        return all((final / f).is_file() for f in need)

    # ---------------------------------------------------------------- the run
    def run(self, only: Optional[Sequence[str]] = None, wait_s: Optional[float] = None) -> dict:
        """Do every step of ``only`` (default: all of :data:`STEPS`) that is not complete, in order.

        A step whose input (:data:`DEPENDS`) is outside ``only`` and not complete is an error,
        or, with ``wait_s``, is waited for (polled every ``wait_s`` seconds): that is how two
        lanes (:data:`LANES`) run side by side in two processes on the same work directory."""
        todo = list(STEPS) if only is None else [n for n in STEPS if n in set(only)]
        unknown = sorted(set(only or ()) - set(STEPS))
        if unknown:
            raise MetisError(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
        self.work.mkdir(parents=True, exist_ok=True)
        with self._summary_lock():
            self.summary = self._read_summary()
            if self.summary.get("budget") not in (None, self.budget_name):
                self.log(f"note: {self.work} was started with budget {self.summary.get('budget')}, continuing with {self.budget_name}")
            self.summary.update(corpus=str(self.corpus.resolve()), work=str(self.work.resolve()), budget=self.budget_name,
                                phone_vocab=str(self.given_vocab or self.phone_vocab))
            self.summary.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S"))
            self.summary.setdefault("steps", {})
            self._write_summary()
        what = "" if only is None else f", steps {', '.join(todo)}"
        self.log(f"small Metis: corpus {self.corpus}, work {self.work}, budget {self.budget_name} ({self.budget['hours']}){what}")
        for name in todo:
            i = STEPS.index(name) + 1
            rec = dict(self.summary["steps"].get(name, {}))
            if self.complete(name):
                self.log(f"[{i}/{len(STEPS)}] {name}: complete, skipped")
                rec["status"] = "done"
                if name in TRAIN_STEPS and "losses" not in rec:
                    rec["losses"] = run_losses(self.path(name))
            else:
                self._inputs_ready(name, todo, wait_s)
                self.log(f"[{i}/{len(STEPS)}] {name}: starting")
                t0 = time.time()
                rec = dict(getattr(self, f"step_{name}")(), status="done")
                rec["wall_s"] = round(time.time() - t0 + (self.summary["steps"].get(name, {}).get("wall_s") or 0), 1)
                self.log(f"[{i}/{len(STEPS)}] {name}: done in {time.time() - t0:.0f} s")
            rec["output"] = str(self.path(name))
            self._save_step(name, rec)
            if name == self.stop_after:
                self.log(f"stopping after {name} (--stop-after)")
                break
        if self.complete("bundle"):
            with self._summary_lock():
                self.summary = self._read_summary()
                self.summary["bundle"] = str(self.path("bundle"))
                self._write_summary()
        return self.summary

    def _inputs_ready(self, name: str, todo: Sequence[str], wait_s: Optional[float]) -> None:
        """Raise (or, with ``wait_s``, wait) while an input of ``name`` made outside ``todo`` is incomplete."""
        said = set()
        while True:
            missing = [d for d in DEPENDS[name] if not self.complete(d)]
            if not missing:
                return
            outside = [d for d in missing if d not in todo]
            if len(outside) < len(missing) or wait_s is None:
                raise MetisError(f"step {name} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                                 "not complete; run it first (or run the other lane beside this one)")
            if tuple(outside) not in said:
                self.log(f"  {name}: waiting for {', '.join(outside)} (another process)")
                said.add(tuple(outside))
            time.sleep(wait_s)

    # ---------------------------------------------------------------- steps
    def step_vocab(self) -> dict:
        """``<work>/vocab.json``: the given vocabulary, or (default) a project-own one built from
        the phones of the training transcripts (:func:`~metis_speech.text.vocab_from_texts`),
        which the model can ship with (the official table cannot be redistributed)."""
        from ..text import vocab_from_texts
        from ..text.vocab import PhoneVocab

        if self.given_vocab is not None:
            vocab, rec = PhoneVocab.from_json(self.given_vocab), {"source": str(self.given_vocab)}
        else:
            texts = [json.loads(x).get("text") or "" for x in self.train_manifest.read_text().splitlines() if x.strip()]
            vocab, rec = vocab_from_texts(texts, self.language)
            rec["source"] = f"phones of {self.train_manifest} ({self.language})"
        self.work.mkdir(parents=True, exist_ok=True)
        vocab.save(self.phone_vocab)
        return dict(rec, symbols=len(vocab), fingerprint=vocab.fingerprint())

    def step_phones(self) -> dict:
        """``<work>/train.jsonl``: the corpus's training manifest with audio paths relative to
        the work folder and each transcript's ``phone_ids`` in the vocabulary (+ its
        fingerprint), so that ``metis prepare`` needs no G2P back end (a GPU machine without
        espeak-ng can run every later step)."""
        from ..corpus.build import write_jsonl_atomic
        from ..text import PhoneTokenizer
        from ..text.vocab import PhoneVocab

        vocab = PhoneVocab.from_json(self.phone_vocab)
        tok, fp = PhoneTokenizer(vocab), vocab.fingerprint()

        def rows_of(manifest: Path):
            rows, skipped = [], 0
            for line in manifest.read_text().splitlines():
                if not line.strip():
                    continue
                r = json.loads(line)
                audio = Path(r["audio"])
                audio = audio if audio.is_absolute() else manifest.parent / audio
                r["audio"] = os.path.relpath(audio.resolve(), self.work.resolve())
                try:
                    ids = list(tok(r.get("text") or "", r.get("language") or self.language).ids)
                except Exception:  # noqa: BLE001 - a transcript without phones is left for prepare to skip
                    ids, skipped = [], skipped + 1
                if ids:
                    r["phone_ids"], r["phone_vocab"] = ids, fp
                rows.append(r)
            return rows, skipped

        # the corpus's test references (held-out voices and perturbations) first: the held-out
        # shards of stage 1 and S2A come from them; train.jsonl last (it marks the step complete)
        held_out = self.corpus / "test.jsonl"
        val = rows_of(held_out)[0] if held_out.is_file() else []
        if val:
            write_jsonl_atomic(self.path("val"), val)
        rows, skipped = rows_of(self.train_manifest)
        write_jsonl_atomic(self.path("phones"), rows)
        return {"utterances": len(rows), "without_phones": skipped, "vocab": fp, "held_out": len(val)}

    def step_ssl(self) -> dict:
        """The SSL front end trained on the corpus (``small_ssl``: frame classification of the
        aligned phones, noise-augmented), replacing w2v-BERT, which cannot be downloaded here."""
        align = self.corpus / "alignments" / "train.jsonl"
        obj = {"alignments": str(align)} if align.is_file() else {"target": "hubert"}  # no alignments: label-free
        return self._train("ssl", data={"path": str(self.path("phones"))},
                           objective=dict(obj, noise=str(self.corpus / "noise" / "train.jsonl")))

    def step_base(self) -> dict:
        import shutil

        from ..bundle import assemble_bundle, random_bundle

        d = self.path("base")
        tmp = d.with_name(f".tmp-{d.name}")
        rnd = d.with_name(f".tmp-random-{d.name}")
        for t in (tmp, rnd):
            if t.exists():
                shutil.rmtree(t)
        random_bundle(rnd, preset=self.preset, phone_vocab=self.phone_vocab, seed=0)
        assemble_bundle(tmp, rnd, {"ssl": self.path("ssl") / "final"}, overwrite=True)
        shutil.rmtree(rnd)
        if d.exists():
            shutil.rmtree(d)
        os.replace(tmp, d)
        return {"note": f"random:{self.preset} (seed 0) with the trained SSL (runs/ssl), the fixed front end of the rest"}

    def _config(self, name: str, **paths):
        from ..recipes import recipe_path
        from .trainer import load_train_config

        import yaml

        d = yaml.safe_load(recipe_path(RECIPES[name]).read_text())
        b = self.budget
        d = _merge(d, b["overrides"].get("*", {}))
        d = _merge(d, b["overrides"].get(name, {}))
        d = _merge(d, paths)
        d = _merge(d, {"train": {"max_steps": b["steps"][name], "checkpoint_every": b["chunk"], "out": str(self.path(name)),
                                 "progress": False, "keep_checkpoints": 2,
                                 "max_seconds": (b.get("seconds") or {}).get(name)}})
        d["model"] = dict(d.get("model") or {}, preset=self.preset)
        return load_train_config(d)

    def _train(self, name: str, **paths) -> dict:
        from .trainer import Trainer, make_trainer

        cfg = self._config(name, **paths)
        run = self.path(name)
        latest = Trainer.latest_checkpoint(run)
        tr = make_trainer(cfg, resume=latest is not None)
        total = cfg.train.max_steps
        if latest is not None:
            self.log(f"  {name}: resuming from {latest.name} (metis train --resume)")
        t0, s0 = time.time(), tr.step
        while True:
            tr.train(until=min(tr.step + cfg.train.checkpoint_every, total))
            last = (run_losses(run, 1) if (run / "log.jsonl").is_file() else {})
            done = tr.step - s0
            rate = (time.time() - t0) / done if done else 0.0
            bits = [f"{k[:-5]} {v:.4g}" for k, v in last.items() if k.endswith("_last") and v is not None]
            self.log(f"  {name}: step {tr.step}/{total}  " + "  ".join(bits) +
                     (f"  ({rate:.2f} s/step, {rate * (total - tr.step) / 60:.0f} min left)" if done else ""))
            total = cfg.train.max_steps  # a time budget (train.max_seconds) may have shortened the run
            if tr.step >= total:
                break
        if not self.complete(name):
            raise MetisError(f"{name}: training ended without a complete {run / 'final'}")
        return {"losses": run_losses(run), "max_steps": total, "skipped_data": getattr(tr, "skipped", None) or
                getattr(getattr(tr, "dataset", None), "skipped", None) or {}}

    def step_semantic_codec(self) -> dict:
        """The semantic codec on the base SSL's features of the corpus, its codebook started as
        k-means centres of the encoded features (``objective.kmeans_init``). Without that the
        tiny codec's ids collapse within ~20 steps (perplexity 55 -> 1 at lr 2e-4; -> 4, then a
        slow climb to ~12 at lr 1e-3); with it they stay spread (~330 of 1024 after 100 steps
        at lr 1e-3)."""
        rows = self.path("phones").read_text().splitlines()
        subset = self.work / "train_semantic_codec.jsonl"  # k-means and 50 steps need a fraction of the corpus
        frames_per_row = 50 * 6.0  # ~6 s utterances at 50 Hz
        n = max(1, int(math.ceil(2 * self.budget["semantic_kmeans_frames"] / frames_per_row)))
        lines = [x for x in rows if x.strip()][:n]
        subset.write_text("".join(x + "\n" for x in lines))  # same folder: relative audio paths hold
        return self._train("semantic_codec", data={"path": str(subset)},
                           objective={"ssl_source": str(self.path("base")), "kmeans_init": True,
                                      "kmeans_frames": int(self.budget["semantic_kmeans_frames"])})

    def step_acoustic_codec(self) -> dict:
        return self._train("acoustic_codec", data={"path": str(self.path("phones"))})

    def step_bundle_v0(self) -> dict:
        from ..bundle import assemble_bundle

        assemble_bundle(self.path("bundle_v0"), self.path("base"),
                        {"semantic_codec": self.path("semantic_codec") / "final"}, overwrite=True)
        return {"note": "base + the trained semantic codec (tokenizer of the stage-1 shards)"}

    def step_bundle_v1(self) -> dict:
        from ..bundle import assemble_bundle

        assemble_bundle(self.path("bundle_v1"), self.path("bundle_v0"),
                        {"acoustic_codec": self.path("acoustic_codec") / "final"}, overwrite=True)
        return {"note": "bundle_v0 + the trained acoustic codec (tokenizer of the S2A shards)"}

    def val_path(self, name: str) -> Path:
        """The held-out shards prepared beside ``name``'s (``data/<x>_val``)."""
        p = self.path(name)
        return p.with_name(p.name + "_val")

    def _val(self, name: str) -> dict:
        """``data.val_path`` for a run on ``name``'s shards, when its held-out shards exist."""
        return {"val_path": str(self.val_path(name))} if _prepared(self.val_path(name)) else {}

    def _prepare(self, name: str, model: str, task: str, acoustic: bool, phones: bool, held_out: bool = False) -> dict:
        """``metis prepare`` of the training manifest; with ``held_out`` first also of the corpus's
        test references (``<work>/val.jsonl``, when the corpus has them) into ``data/<x>_val``,
        the runs' ``data.val_path``."""
        from .prepare import PrepareConfig, prepare

        def run(src: Path, out: Path) -> dict:
            cfg = PrepareConfig(input=str(src), out=str(out), model=str(self.path(model)),
                                task=task, acoustic=acoustic, phones=phones, language=self.language,
                                device=None, progress=False, seed=0)  # None: the task API's device choice
            return prepare(cfg, log=lambda text: [self.log("  " + line) for line in text.splitlines()])

        rec = {}
        if held_out and self.path("val").is_file():
            v = run(self.path("val"), self.val_path(name))
            rec["held_out"] = {"utterances": v["utterances"], "hours": v["hours"], "complete": v["complete"]}
        s = run(self.path("phones"), self.path(name))
        if not s["complete"] or not s["utterances"]:
            raise MetisError(f"{name}: preparation incomplete or empty ({s['utterances']} utterances)")
        return dict({"utterances": s["utterances"], "hours": s["hours"], "skipped": s["skipped"],
                     "codebook_use": token_stats(self.path(name))}, **rec)

    def step_prepare_stage1(self) -> dict:
        """Semantic ids and phones: stage 1 needs only the semantic codec, so its chain does not
        wait for the acoustic codec."""
        return self._prepare("prepare_stage1", "bundle_v0", "none", acoustic=False, phones=True, held_out=True)

    def step_prepare_se(self) -> dict:
        return self._prepare("prepare_se", "bundle_v0", "se", acoustic=False, phones=False)

    def step_prepare_vc(self) -> dict:
        return self._prepare("prepare_vc", "bundle_v0", "vc", acoustic=False, phones=False)

    def step_prepare_tse(self) -> dict:
        return self._prepare("prepare_tse", "bundle_v0", "tse", acoustic=False, phones=False)

    def step_prepare_s2a(self) -> dict:
        return self._prepare("prepare_s2a", "bundle_v1", "none", acoustic=True, phones=False, held_out=True)

    def step_s2a(self) -> dict:
        return self._train("s2a", data={"path": str(self.path("prepare_s2a")), **self._val("prepare_s2a")})

    def step_s2a_1layer(self) -> dict:
        return self._train("s2a_1layer", data={"path": str(self.path("prepare_s2a")), **self._val("prepare_s2a")})

    def step_stage1_pretrain(self) -> dict:
        return self._train("stage1_pretrain", data={"path": str(self.path("prepare_stage1")), **self._val("prepare_stage1")})

    def step_stage1_tts(self) -> dict:
        return self._train("stage1_tts", data={"path": str(self.path("prepare_stage1")), **self._val("prepare_stage1")},
                           model={"init_from": str(self.path("stage1_pretrain") / "final"),
                                  "phone_vocab": str(self.phone_vocab)})

    def _adapter_task(self, task: str) -> dict:
        return self._train(f"stage1_{task}", data={"path": str(self.path(f"prepare_{task}"))},
                           model={"init_from": str(self.path("stage1_pretrain") / "final")})

    def step_stage1_se(self) -> dict:
        return self._adapter_task("se")

    def step_stage1_vc(self) -> dict:
        return self._adapter_task("vc")

    def step_stage1_tse(self) -> dict:
        return self._adapter_task("tse")

    def step_bundle(self) -> dict:
        from ..bundle import assemble_bundle, read_manifest

        out = assemble_bundle(
            self.path("bundle"), self.path("bundle_v1"),
            {"s2a_full": self.path("s2a") / "final", "s2a_1layer": self.path("s2a_1layer") / "final"},
            {"tts": self.path("stage1_tts") / "final", "base": self.path("stage1_pretrain") / "final",
             **{t: self.path(f"stage1_{t}") / "final" for t in ADAPTER_TASKS if self.complete(f"stage1_{t}")}},
            drop_untrained=True, overwrite=True)
        m = read_manifest(out)
        return {"stage1": sorted(m["stage1"]), "untrained": m["untrained"]}

    def _dev_items(self) -> List[dict]:
        for name in ("dev.jsonl", "train.jsonl"):
            f = self.corpus / name
            if f.is_file():
                items = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
                items = [dict(it, audio=str(self.corpus / it["audio"]) if not Path(it["audio"]).is_absolute() else it["audio"])
                         for it in items if it.get("audio") and it.get("text")]
                if items:
                    return items
        raise MetisError(f"{self.corpus}: no dev or train items with audio and text for the examples")

    def step_examples(self) -> dict:
        """Codec resynthesis, SE of a noisy copy and TTS in the voice of a dev item."""
        import numpy as np
        import torch

        from ..audio import load_audio, save_audio
        from ..loading import load_checkpoint
        from ..pipeline import Metis
        from .task_data import TaskRecipe, degrade_se, item_rng

        out = self.path("examples")
        out.mkdir(parents=True, exist_ok=True)
        bundle = self.path("bundle")
        items = self._dev_items()
        longer = [it for it in items if (it.get("duration") or 0) >= 2.0] or items
        prompt, target = longer[0], (items[1] if len(items) > 1 and items[1] is not longer[0] else items[0])
        dec = self.budget["decode"]
        res: dict = {"bundle": str(bundle), "prompt": prompt["audio"], "prompt_text": prompt["text"]}

        tts = Metis.from_pretrained("tts", bundle, device="cpu")
        clean, sr = load_audio(prompt["audio"], tts.sample_rate)
        save_audio(out / "prompt.wav", clean, sr)
        enc, dec_net = load_checkpoint(bundle / "acoustic_encoder"), load_checkpoint(bundle / "acoustic_decoder")
        with torch.no_grad():  # acoustic codec round trip of the prompt
            wav = torch.from_numpy(clean[: len(clean) // enc.hop_length * enc.hop_length])[None, None]
            resynth = dec_net.decode(dec_net.quantize(enc(wav)))[0, 0].clamp(-1, 1).numpy()
        save_audio(out / "codec_resynthesis.wav", resynth, sr)
        res["codec_resynthesis"] = "codec_resynthesis.wav"
        t0 = time.time()
        speech = tts.tts(target["text"], prompt=prompt["audio"], prompt_text=prompt["text"], seed=0, **dec)
        speech.save(out / "tts.wav")
        res["tts"] = {"wav": "tts.wav", "text": target["text"], "seconds": round(speech.duration, 2),
                      "wall_s": round(time.time() - t0, 1)}

        rng = item_rng(0, "example", "se")
        noisy, info = degrade_se(clean, rng, TaskRecipe())
        save_audio(out / "se_noisy.wav", noisy, sr)
        se = Metis.from_pretrained("se", bundle, device="cpu")
        t0 = time.time()
        enhanced = se.se(str(out / "se_noisy.wav"), seed=0, **dec)
        enhanced.save(out / "se_enhanced.wav")
        res["se"] = {"noisy": "se_noisy.wav", "enhanced": "se_enhanced.wav", "snr_db": info["snr_db"], "noise": info["noise"],
                     "seconds": round(enhanced.duration, 2), "wall_s": round(time.time() - t0, 1)}
        for k in ("tts", "se"):
            w = np.asarray((speech if k == "tts" else enhanced).wav)
            res[k]["rms"] = round(float(np.sqrt(np.mean(w.astype(np.float64) ** 2))), 4)
        _atomic_json(out / "examples.json", res)
        return {"files": sorted(p.name for p in out.glob("*.wav")), **{k: res[k] for k in ("tts", "se")}}


def _portable(obj, roots: Sequence[tuple]):
    """Provenance without machine paths: an absolute path under a root becomes
    ``label/relative`` (``runs/ssl/final`` for the work folder); any other absolute path keeps
    its last two parts after ``<elsewhere>``."""
    if isinstance(obj, dict):
        return {k: _portable(v, roots) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_portable(v, roots) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        p = Path(obj)
        for root, label in roots:
            try:
                rel = p.relative_to(root)
            except ValueError:
                continue
            return str(Path(label) / rel) if label else str(rel)
        return str(Path("<elsewhere>", *p.parts[-2:]))
    return obj


def ship(work, dest, drop_stage1: Sequence[str] = (), half: bool = True) -> Path:
    """Copy ``<work>/bundle`` to ``dest`` (e.g. ``metis_speech/assets/small``, the model
    ``--model small`` loads) with a ``training`` record in its metis.json: the corpus (from
    its summary.json), the budget, each network's steps and last losses. Paths in the
    provenance become relative to the work folder (no machine paths ship). ``drop_stage1``:
    stage-1 networks (e.g. ``base``, which only fine-tuning needs) or optional components
    (``s2a_1layer``: S2A full then does the first layer too) left out; ``half``:
    weights stored as float16 (the SSL, loaded by transformers, stays float32; every
    network is computed in float32 after loading). Atomic."""
    import shutil

    from ..bundle import MANIFEST, is_bundle

    work, dest = Path(work), Path(dest)
    src = work / "bundle"
    if not is_bundle(src):
        raise MetisError(f"{src} is not a finished bundle; run the driver to the end first")
    summary = json.loads((work / "summary.json").read_text())
    corpus = Path(summary["corpus"])
    rec = {"driver": "python -m metis_speech.training.small_model", "budget": summary.get("budget"),
           "steps": {n: {"max_steps": r.get("max_steps"),
                         **{k: v for k, v in (r.get("losses") or {}).items() if k.endswith("_last")}}
                     for n, r in summary["steps"].items() if n in TRAIN_STEPS}}
    try:
        cs = json.loads((corpus / "summary.json").read_text())
        tr = cs["splits"]["train"]
        rec["corpus"] = (f"metis make-corpus (seed {cs.get('seed')}): {tr['utterances']} utterances, {tr['hours']:.2f} h, "
                         f"{tr['speakers']} speakers from {tr['voices']} offline synthetic voices")
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        rec["corpus"] = corpus.name
    tmp = dest.with_name(f".tmp-{dest.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    m = json.loads((tmp / MANIFEST).read_text())
    from ..bundle import REQUIRED

    for name in drop_stage1:
        if name in m.get("stage1", {}):
            shutil.rmtree(tmp / m["stage1"].pop(name))
            (m.get("provenance") or {}).pop(f"stage1/{name}", None)
        elif name in m.get("components", {}) and name not in REQUIRED:
            shutil.rmtree(tmp / m["components"].pop(name))
            (m.get("provenance") or {}).pop(name, None)
        else:
            raise MetisError(f"--ship-without {name}: not an optional network of the bundle "
                             f"(stage-1 tasks: {', '.join(sorted(m.get('stage1', {})))}; optional: s2a_1layer, visual)")
    if half:
        import torch
        from safetensors.torch import load_file, save_file

        for f in sorted(tmp.rglob("*.safetensors")):
            if f.parent.name == m["components"].get("ssl", "ssl"):
                continue
            t = load_file(str(f))
            if any(v.is_floating_point() and v.dtype != torch.float16 for v in t.values()):
                save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in t.items()}, str(f))
        m["storage_dtype"] = "float16 (ssl: float32)"
    roots = [(work.resolve(), ""), (corpus.resolve(), "corpus")]
    m["training"] = rec
    m = _portable(m, roots)
    (tmp / MANIFEST).write_text(json.dumps(m, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m metis_speech.training.small_model",
        description="Train a small Metis (tiny preset) end to end from an offline corpus: codecs, shards, S2A, "
                    "stage 1 (pre-training, TTS, SE), a bundle and example outputs. Rerun the same command to resume.",
        epilog="budgets: " + "; ".join(f"{k}: {v['hours']}" for k, v in BUDGETS.items()),
    )
    p.add_argument("--corpus", required=True, help="a `metis make-corpus` folder (train.jsonl, dev.jsonl)")
    p.add_argument("--work", required=True, help="working directory (runs, shards, bundles); rerun to resume")
    p.add_argument("--budget", default="short", choices=sorted(BUDGETS), help="training length (default short)")
    p.add_argument("--preset", default="small", help="network sizes (a preset of metis_speech/presets; default small)")
    p.add_argument("--phone-vocab", default=None,
                   help="phone vocabulary JSON (default: a project-own one from the phones of the training transcripts)")
    p.add_argument("--language", default="en", help="transcript language for phones (default en)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--stop-after", default=None, choices=STEPS, help="stop after this step (resume later)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lane", default=None, choices=sorted(LANES),
                   help="run one of two independent chains; start `--lane stage1` and `--lane s2a` in two processes "
                        "(each waits for what the other makes), then the plain command for the bundle and examples")
    g.add_argument("--only", default=None, help="comma-separated steps to run (their inputs must be complete)")
    g.add_argument("--all-lanes", action="store_true",
                   help="run every lane at once, one process each (logs: <work>/lane_<name>.log), then the bundle and "
                        "examples: for a machine with many cores or a GPU")
    p.add_argument("--max-steps", default=None, metavar="NAME=N,...",
                   help="override the budget's steps of some networks, e.g. acoustic_codec=2500,s2a=3000 (a run past "
                        "its new end just finishes)")
    p.add_argument("--ship-without", default="", metavar="TASKS",
                   help="with --ship: stage-1 networks or optional components to leave out of the shipped copy, "
                        "e.g. base,s2a_1layer")
    p.add_argument("--ship", default=None, metavar="DIR",
                   help="after the last step, copy the bundle to DIR with a training record (metis_speech/assets/small "
                        "is the model `--model small` loads)")
    p.add_argument("--wait", action="store_true",
                   help="with --only: wait for inputs another process is making instead of stopping (--lane always waits)")
    p.add_argument("--wait-s", type=float, default=30.0, help="seconds between checks for another process's outputs")
    return p


def _run_lanes(args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """One ``--lane`` process per lane of :data:`LANES` (this run's settings), all at once;
    waits for them. A failed lane is reported (its steps stay incomplete) without stopping the
    others."""
    import subprocess

    common = ["--corpus", args.corpus, "--work", args.work, "--budget", args.budget, "--preset", args.preset,
              "--language", args.language, "--threads", str(args.threads), "--wait-s", str(args.wait_s)]
    if args.phone_vocab:
        common += ["--phone-vocab", args.phone_vocab]
    if args.max_steps:
        common += ["--max-steps", args.max_steps]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    procs = {}
    for lane in LANES:
        fh = open(work / f"lane_{lane}.log", "a")
        procs[lane] = (subprocess.Popen([sys.executable, "-m", "metis_speech.training.small_model", *common, "--lane", lane],
                                        stdout=fh, stderr=subprocess.STDOUT), fh)
    log(f"started {len(procs)} lanes: {', '.join(procs)} (logs: {work}/lane_<name>.log)")
    failed = []
    for lane, (p, fh) in procs.items():
        if p.wait() != 0:
            failed.append(lane)
        fh.close()
    if failed:
        log(f"lanes that failed: {', '.join(failed)} (see their logs); their networks are left out where possible")


def _max_steps(text: Optional[str]) -> Optional[Dict[str, int]]:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        try:
            out[name.strip()] = int(n)
        except ValueError:
            raise MetisError(f"--max-steps: expected NAME=N, got {part!r}") from None
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import torch

        torch.set_num_threads(max(1, args.threads))
        driver = SmallModel(args.corpus, args.work, args.budget, args.phone_vocab, args.language,
                            log=lambda m: print(m, flush=True), stop_after=args.stop_after,
                            max_steps=_max_steps(args.max_steps), preset=args.preset)
        only = LANES[args.lane] if args.lane else ([x.strip() for x in args.only.split(",") if x.strip()] if args.only else None)
        if args.all_lanes:  # then the bundle; the examples (which need a G2P back end) with the plain command
            _run_lanes(args, driver.log)
            only = ["bundle"]
        summary = driver.run(only, wait_s=args.wait_s if (args.lane or args.wait) else None)
        if args.ship:
            drop = [x.strip() for x in args.ship_without.split(",") if x.strip()]
            summary["shipped"] = str(ship(args.work, args.ship, drop_stage1=drop))
    except MetisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print(json.dumps({"work": summary["work"], "bundle": summary.get("bundle"), "summary": str(Path(args.work) / "summary.json"),
                      **({"shipped": summary["shipped"]} if "shipped" in summary else {})}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
