"""Periodic audio samples of a stage-1 or S2A training run (``train.samples`` in a recipe).

Every ``every`` optimiser steps the main process takes the first ``count`` usable
utterances of the training data (a fixed set, so samples of successive steps compare),
generates with the network being trained and turns the result into audio with the other
networks of a model source (``model``: a bundle directory, an official directory, ``"hub"``
or ``"random:<preset>"``, as :meth:`metis_speech.Metis.from_pretrained` takes it):

- stage 1: prompt = the utterance's fixed prompt (VC/TSE/L2S shards) or its first third;
  the rest of its semantic ids are generated from the prompt, its phones and its frame
  condition; the S2A and the acoustic decoder of ``model`` make the waveform;
- S2A: prompt = the first third of its acoustic ids; the other frames' acoustic ids are
  generated from all its semantic ids; the acoustic decoder of ``model`` makes the waveform.

Files: ``<out>/samples/step_XXXXXXXX/<id>.wav`` (+ ``<id>.png``, a log-mel spectrogram of the
generated audio above the reference's) and, once, ``<out>/samples/reference/<id>.wav``: the
utterance's own acoustic ids decoded (what a perfect model would give). TensorBoard gets the
audio when it is installed. Sampling draws from its own generators inside
``torch.random.fork_rng``, so a run with samples trains exactly like one without.

    train:
      samples: {every: 500, model: runs/bundle, count: 2, steps: 25, s2a_steps: [20, 10, 1]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import MetisError

__all__ = ["SampleSettings", "SampleWriter", "parse_samples"]


@dataclass
class SampleSettings:
    every: int
    model: str
    count: int = 2
    steps: int = 25  # stage-1 decoding steps
    s2a_steps: Optional[List[int]] = None  # per RVQ layer; None: the task defaults
    guidance: Optional[float] = None  # None: the default of ``task``
    task: Optional[str] = None  # decoding defaults of this task; None: tts with phones, se with a condition
    seed: int = 0
    device: Optional[str] = None  # None: the training device
    phone_vocab: Optional[str] = None


def parse_samples(d: Optional[Dict[str, Any]]) -> Optional[SampleSettings]:
    """``train.samples`` of a recipe -> SampleSettings (None when absent); one-line errors."""
    if d is None:
        return None
    if not isinstance(d, dict):
        raise MetisError("train.samples must be a mapping such as {every: 500, model: random:tiny}")
    known = set(SampleSettings.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise MetisError(f"train.samples: unknown setting(s) {unknown}; known: {sorted(known)}")
    for need in ("every", "model"):
        if need not in d:
            raise MetisError(f"train.samples needs {need!r} (e.g. {{every: 500, model: random:tiny}})")
    s = SampleSettings(**d)
    if int(s.every) < 1 or int(s.count) < 1 or int(s.steps) < 1:
        raise MetisError("train.samples: every, count and steps must be at least 1")
    return s


def _spectrogram_png(path: Path, wav: np.ndarray, ref: Optional[np.ndarray], sr: int) -> None:
    """Log-power spectrograms of the generated audio and the reference, one above the other."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - plotting is optional
        return
    from ..eval.dsp import stft_power

    rows = [("generated", wav)] + ([("reference (its own acoustic ids decoded)", ref)] if ref is not None else [])
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 2.2 * len(rows)), squeeze=False)
    n_fft = 1 << max(8, int(round(np.log2(sr * 0.04))))  # ~40 ms windows
    for ax, (title, w) in zip(axes[:, 0], rows):
        spec = 10 * np.log10(stft_power(np.asarray(w, np.float32), n_fft=n_fft, hop_length=n_fft // 4) + 1e-10)
        vmax = float(spec.max())
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                  extent=(0, len(w) / sr, 0, sr / 2000))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


class SampleWriter:
    """Writes the samples of one run; ``__call__(net, step)`` on the main process only.

    net: the stage-1 (Stage1Model) or S2A (S2AModel) being trained, LoRA layers active.
    items: utterance dicts as TokenDataset gives them (``semantic`` (T,), ``acoustic``
    (T, Q), optional ``phones`` (Np,), ``cond`` (T, C), ``prompt_len`` (1,)).
    """

    def __init__(self, settings: SampleSettings, kind: str, items: Sequence[dict], out: Path, device: torch.device,
                 vocab: int):
        from ..pipeline import Metis

        if kind not in ("stage1", "s2a"):
            raise ValueError(f"no samples for {kind!r}")
        self.s, self.kind, self.out = settings, kind, Path(out) / "samples"
        self.items = [u for u in items if u is not None and "acoustic" in u][: settings.count]
        if not self.items:
            raise MetisError(
                "train.samples needs utterances with acoustic ids in the training data "
                "(prepare the shards without --no-acoustic, or drop train.samples)"
            )
        dev = settings.device or device
        try:
            self.metis = Metis.from_pretrained("tts", settings.model, device=dev, lazy=True,
                                               phone_vocab=settings.phone_vocab)
            dec = self.metis._net("acoustic_decoder")
        except MetisError as e:
            raise MetisError(f"train.samples.model {settings.model!r}: {e}") from None
        q = self.items[0]["acoustic"].shape[1]
        top = max(int(u["acoustic"].max()) for u in self.items)
        if top >= dec.cfg.codebook_size:
            raise MetisError(f"train.samples.model {settings.model!r}: its acoustic codec has {dec.cfg.codebook_size} "
                             f"codes per layer but the training data's acoustic ids reach {top}")
        if q < dec.cfg.num_quantizers:
            raise MetisError(f"train.samples.model {settings.model!r}: its acoustic decoder needs {dec.cfg.num_quantizers} "
                             f"RVQ layers, the training data holds {q}")
        if kind == "stage1":
            s2a = self.metis._net("s2a")
            if s2a.cfg.cond_codebook_size != vocab:
                raise MetisError(f"train.samples.model {settings.model!r}: its S2A reads {s2a.cfg.cond_codebook_size} "
                                 f"semantic ids, the network being trained has {vocab}")
        self.sr = self.metis.sample_rate

    # ----------------------------------------------------------------- parts
    def _split(self, u: dict) -> int:
        T = int(u["semantic"].shape[0])
        if "prompt_len" in u:
            return int(u["prompt_len"].reshape(-1)[0])
        return max(1, T // 3)

    def _gens(self, device: torch.device) -> List[torch.Generator]:
        gdev = device if device.type == "cuda" else torch.device("cpu")
        return [torch.Generator(device=gdev).manual_seed(self.s.seed + i) for i in range(len(self.items))]

    def _stage1(self, net) -> List[np.ndarray]:
        from ..decoding import stage1_generate

        from ..decoding import DecodeSettings
        from ..pipeline import DEFAULTS

        m = self.metis
        has = lambda f: all(f in u for u in self.items)  # noqa: E731
        task = self.s.task or ("tts" if has("phones") else "se" if has("cond") else "tts")
        if task not in DEFAULTS:
            raise MetisError(f"train.samples.task {task!r}: choose one of {sorted(DEFAULTS)}")
        d = DEFAULTS[task]
        settings = DecodeSettings(steps=self.s.steps, guidance=d.guidance if self.s.guidance is None else self.s.guidance,
                                  temperature=d.temperature, rescale=d.rescale)
        splits = [self._split(u) for u in self.items]
        dev = next(net.parameters()).device
        prompts = [u["semantic"][:tp] for u, tp in zip(self.items, splits)]
        lens = [int(u["semantic"].shape[0]) - tp for u, tp in zip(self.items, splits)]
        phones = [u["phones"] for u in self.items] if all("phones" in u for u in self.items) and net.cfg.use_phone_cond else None
        conds = None
        if getattr(net, "has_adapter", False) and all("cond" in u for u in self.items):
            conds = [u["cond"].to(dev) for u in self.items]
        tgt = stage1_generate(net, lens, prompts, phones, conds, settings, self._gens(dev))
        sem = [torch.cat([p.to(t.device), t]).to(m.device) for p, t in zip(prompts, tgt)]
        p_codes = [u["acoustic"][:tp].to(m.device) for u, tp in zip(self.items, splits)]
        codes = m._acoustic(sem, p_codes, self._gens(m.device), self.s.s2a_steps)
        return m._decode(codes)

    def _s2a(self, net) -> List[np.ndarray]:
        m = self.metis
        key = "s2a_1layer" if net.num_quantizers == 1 else "s2a"
        m._net("s2a")  # load the partner so that only ``key`` is replaced
        saved = dict(m._nets)
        m._nets[key] = net
        try:
            if key == "s2a":
                m._nets.pop("s2a_1layer", None)  # a full S2A in training generates every layer itself
            splits = [self._split(u) for u in self.items]
            sem = [u["semantic"].to(m.device) for u in self.items]
            p_codes = [u["acoustic"][:tp].to(m.device) for u, tp in zip(self.items, splits)]
            # a 1-layer S2A in training makes layer 0; the full S2A of ``model`` adds the others
            codes = m._acoustic(sem, p_codes, self._gens(m.device), self.s.s2a_steps)
            return m._decode(codes)
        finally:
            m._nets.clear()
            m._nets.update(saved)

    def _reference(self) -> List[np.ndarray]:
        m = self.metis
        q = m._net("acoustic_decoder").cfg.num_quantizers
        return m._decode([u["acoustic"][self._split(u):, :q].to(m.device) for u in self.items])

    # ------------------------------------------------------------------ run
    @torch.no_grad()
    def __call__(self, net, step: int, tb=None) -> Path:
        from ..audio import save_audio

        was_training = net.training
        net.eval()
        try:
            cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.random.fork_rng(devices=cuda):
                wavs = self._stage1(net) if self.kind == "stage1" else self._s2a(net)
                refs = self._reference()
        finally:
            net.train(was_training)
        d = self.out / f"step_{step:08d}"
        d.mkdir(parents=True, exist_ok=True)
        ref_dir = self.out / "reference"
        if not ref_dir.is_dir():
            ref_dir.mkdir(parents=True, exist_ok=True)
            for u, r in zip(self.items, refs):
                save_audio(ref_dir / f"{u['id']}.wav", r, self.sr)
        for u, w, r in zip(self.items, wavs, refs):
            save_audio(d / f"{u['id']}.wav", w, self.sr)
            _spectrogram_png(d / f"{u['id']}.png", w, r, self.sr)
            if tb is not None:
                tb.add_audio(f"samples/{u['id']}", torch.from_numpy(w)[None], step, sample_rate=self.sr)
        return d
