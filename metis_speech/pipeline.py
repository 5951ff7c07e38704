"""The Python API: one object per task, loading only the networks that task needs.

>>> from metis_speech import Metis
>>> tts = Metis.from_pretrained("tts")                   # auto: official weights if cached, else the shipped small model
>>> out = tts.tts("Hello there.", prompt="ref.wav", prompt_text="This is my voice.")
>>> out.save("hello.wav")                                # 24 kHz, the generated part only

Tasks and their inputs (each also accepts lists for batch inference):

=======  =======================================  ==============================================
task     method                                   condition given to stage 1
=======  =======================================  ==============================================
tts      ``tts(text, prompt, prompt_text)``       phones of prompt text + text (prefix)
vc       ``vc(source, prompt)``                   SSL features of [prompt ; source]
tse      ``tse(mixture, prompt, text=None)``      SSL features of [prompt ; mixture] (+ phones: omni)
se       ``se(noisy)``                            SSL features of the noisy input, no prompt
l2s      ``l2s(video, prompt)``                   visual features, 25 -> 50 Hz, zero prompt rows
=======  =======================================  ==============================================

Pipeline per item: prompt -> (semantic ids via w2v-BERT + semantic codec, acoustic ids via
the acoustic codec) -> stage 1 -> S2A (layer 0 by the 1-layer model, layers 1.. by the full
model) -> acoustic decoder -> 24 kHz waveform of the generated part.
"""

from __future__ import annotations

import math
import os
import unicodedata
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .audio import load_audio, resample, save_audio
from .decoding import DecodeSettings, s2a_generate, stage1_generate
from .errors import AudioError, MetisError
from .hub import for_task
from .inputs import (  # noqa: F401 - limits re-exported
    MAX_INPUT_S, MAX_PROMPT_S, MAX_TARGET_S, MIN_PROMPT_S, REFINE_MODES, SPEAKING_RATE, check_audio, check_inputs,
)
from .shipped import Choice, choose_source
from .sources import ModelSource

__all__ = ["Metis", "SpeechOutput", "TaskDefaults", "DEFAULTS", "FAST", "PRESETS", "bundle_defaults", "pick_device"]

AudioInput = Union[str, os.PathLike, np.ndarray, Tuple[np.ndarray, int]]


@dataclass
class TaskDefaults:
    """Decoding defaults of one task (the reference's, METIS_SPEC.md §5)."""

    steps: int
    guidance: float
    temperature: float = 0.9
    s2a_steps: Tuple[int, ...] = (40, 16, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    s2a_guidance: float = 2.5
    s2a_temperature: float = 1.5
    rescale: float = 0.75
    # TTS with an S2A that reads frame phones: guidance towards them (decoding.s2a_generate's
    # phone_guidance; 0: off, as the reference has no such input) over its first
    # ``s2a_phone_guidance_layers`` RVQ layers (None: all)
    s2a_phone_guidance: float = 0.0
    s2a_phone_guidance_layers: Optional[int] = None
    # TTS with a stage 1 that aligns phones (frame_phones): at most this many seconds of the
    # prompt, its last words, go into stage 1 and the S2A (0: all of it, as the reference)
    max_prompt_s: float = 0.0
    # SE: what the output is (one of inputs.REFINE_MODES): "none", the generated speech (the
    # reference's); "wiener", the input filtered with the generated speech as its speech
    # spectrum (dsp.wiener_refine); "lsa", the input enhanced by the MMSE log-spectral
    # amplitude gain, its a-priori SNR from the input and from the generated speech
    # (dsp.lsa_refine)
    refine: str = "none"


DEFAULTS: Dict[str, TaskDefaults] = {
    "tts": TaskDefaults(25, 2.5),
    "vc": TaskDefaults(20, 1.0),
    "tse": TaskDefaults(10, 0.0),
    "se": TaskDefaults(10, 0.0),
    "omni": TaskDefaults(10, 0.0),
    "l2s": TaskDefaults(25, 0.0),
}


#: the ``fast`` decoding preset: fewer stage-1 and S2A steps (quality cost in the README)
FAST: Dict[str, TaskDefaults] = {
    "tts": TaskDefaults(10, 2.5, s2a_steps=(10, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
    "vc": TaskDefaults(8, 1.0, s2a_steps=(10, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
    "tse": TaskDefaults(5, 0.0, s2a_steps=(10, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
    "se": TaskDefaults(5, 0.0, s2a_steps=(10, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
    "omni": TaskDefaults(5, 0.0, s2a_steps=(10, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
    "l2s": TaskDefaults(10, 0.0, s2a_steps=(10, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
}

#: decoding presets by name: ``default`` (the reference's settings) and ``fast``
PRESETS: Dict[str, Dict[str, TaskDefaults]] = {"default": DEFAULTS, "fast": FAST}


def bundle_defaults(manifest: Optional[dict], preset: str, task: str) -> TaskDefaults:
    """The decoding defaults of ``task`` under ``preset`` for a model: the preset's, with the
    fields a bundle's ``metis.json`` sets under ``decoding.<preset>.<task>`` in their place.

    A small model can decode well with fewer steps than the reference's settings (tuned for
    the official sizes); its bundle says so, e.g. ``{"decoding": {"default": {"tts":
    {"steps": 12, "s2a_steps": [12, 4]}}}}``. Explicit arguments of the task methods still win.
    """
    base = PRESETS[preset][task]
    over = (((manifest or {}).get("decoding") or {}).get(preset) or {}).get(task) or {}
    if not over:
        return base
    known = {f.name for f in fields(TaskDefaults)}
    bad = sorted(set(over) - known)
    if bad:
        raise MetisError(f"metis.json decoding.{preset}.{task}: unknown setting(s) {bad}; known: {sorted(known)}")
    where = f"metis.json decoding.{preset}.{task}"
    for k, v in over.items():
        if k == "s2a_steps":
            if not isinstance(v, list) or not _positive_ints(v):
                raise MetisError(f"{where}: s2a_steps must be a list of positive integers, got {v!r}")
        elif k == "steps":
            if not isinstance(v, int) or v < 1:
                raise MetisError(f"{where}: steps must be a positive integer, got {v!r}")
        elif k == "refine":
            if v not in REFINE_MODES:
                raise MetisError(f"{where}: refine must be one of {list(REFINE_MODES)}, got {v!r}")
        elif k == "s2a_phone_guidance_layers":
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise MetisError(f"{where}: s2a_phone_guidance_layers must be a non-negative integer or null, got {v!r}")
        elif not isinstance(v, (int, float)) or v < 0:
            raise MetisError(f"{where}: {k} must be a non-negative number, got {v!r}")
    if "s2a_steps" in over:
        over = dict(over, s2a_steps=tuple(over["s2a_steps"]))
    return replace(base, **over)


_NO_PROMPT_CUT = ("max_prompt_s needs a stage 1 that aligns phones (frame_phones with a fitted alignment table); "
                  "this model's has none, so it always uses the whole prompt")


def _check_phone_guidance(value) -> None:
    if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                  and math.isfinite(value) and 0 <= value <= 20):
        raise MetisError(f"phone_guidance must be a number between 0 and 20, got {value!r}")


def _id_array(values, error: str) -> np.ndarray:
    """Token ids given as a tensor, array or (nested) list, as a numpy array; MetisError(error)
    when they cannot be one. Shape, type and range are the caller's to check."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError):
        raise MetisError(error) from None


def _positive_ints(values) -> bool:
    """True for a non-empty sequence of integers >= 1 (per-layer S2A steps)."""
    return bool(values) and all(isinstance(v, int) and v >= 1 for v in values)


@dataclass
class SpeechOutput:
    """A generated waveform. ``wav``: float32 (S,) in [-1, 1] at ``sample_rate``."""

    wav: np.ndarray
    sample_rate: int
    semantic_ids: Optional[np.ndarray] = None
    acoustic_ids: Optional[np.ndarray] = None

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate

    def save(self, path: Union[str, os.PathLike]) -> Path:
        return save_audio(path, self.wav, self.sample_rate)


def pick_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``device`` if given, else cuda -> mps -> cpu."""
    if device is not None and str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def _native_half(dtype: torch.dtype) -> bool:
    from .models.precision import cpu_has_bf16

    return dtype == torch.bfloat16 and cpu_has_bf16()


def _dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in _DTYPES:
        raise MetisError(f"unknown dtype {dtype!r}; use fp32, bf16 or fp16")
    return _DTYPES[str(dtype)]


# what each task needs besides stage 1
_NEEDS = {
    "tts": ("ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a", "phones"),
    "vc": ("ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a"),
    "tse": ("ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a"),
    "omni": ("ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a", "phones"),
    "se": ("ssl", "acoustic_decoder", "s2a"),
    "l2s": ("ssl", "semantic_codec", "acoustic_encoder", "acoustic_decoder", "s2a", "visual"),
}


class Metis:
    """One task of Metis, ready to run. Build it with :meth:`from_pretrained`."""

    def __init__(self, task: str, sources: ModelSource, device: torch.device, dtype: torch.dtype, lazy: bool = False,
                 preset: str = "default", quantize: Optional[str] = None, low_memory: bool = False):
        if task not in _NEEDS:
            raise MetisError(f"unknown task {task!r}; choose one of {sorted(_NEEDS)}")
        if preset not in PRESETS:
            raise MetisError(f"unknown decoding preset {preset!r}; choose one of {sorted(PRESETS)}")
        if quantize not in (None, "int8"):
            raise MetisError(f"unknown quantisation {quantize!r}; the only one is 'int8' (CPU)")
        if quantize == "int8" and device.type != "cpu":
            raise MetisError("int8 quantisation runs on the CPU only; drop it or use --device cpu")
        self.task = task
        self.device = device
        # bf16/fp16 on a CPU without native bf16: weights stored in half precision, fp32 arithmetic
        self.half_storage = dtype if (device.type == "cpu" and dtype != torch.float32 and not _native_half(dtype)) else None
        self.dtype = torch.float32 if (self.half_storage is not None or quantize) else dtype
        self.quantize = quantize
        self.preset = preset
        self._src = sources
        self._nets: Dict[str, Any] = {}
        # low_memory: each network is loaded when its stage starts and released when it ends, so
        # that only one stage's networks are held at a time (peak memory: the largest stage)
        self.low_memory = bool(low_memory)
        self._facts: Dict[str, float] = {}  # sample rates and RVQ depth read from networks (kept after a release)
        self.defaults = bundle_defaults(sources.manifest, preset, task)
        self.choice: Optional[Choice] = None  # which model and why (set by from_pretrained)
        if not lazy:
            self.load_all()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        task: str,
        source: Union[str, os.PathLike] = "auto",
        device: Optional[Union[str, torch.device]] = None,
        dtype: Union[str, torch.dtype, None] = None,
        ssl_model: Optional[str] = None,
        ssl_stats: Optional[str] = None,
        phone_vocab: Optional[str] = None,
        lazy: bool = False,
        preset: str = "default",
        quantize: Optional[str] = None,
        low_memory: bool = False,
    ) -> "Metis":
        """Load ``task`` ("tts", "vc", "tse", "se", "omni", "l2s").

        ``source``: ``"auto"`` (default: the official weights when they are all in the
        Hugging Face cache, else the small model shipped in the package for the tasks it was
        trained for, else an error naming the options; never a download), ``"small"`` (the
        shipped model), ``"hub"`` (official weights, downloaded and cached), a local directory
        with the official files (as ``metis download TASK --to DIR`` writes), or a
        metis-speech bundle directory (the project's own models); see
        :mod:`metis_speech.shipped`. ``model.choice.line`` says which model it is and why.
        Only the networks the task needs are loaded; ``lazy=True`` defers loading to first
        use, and the task methods check their inputs before loading anything.

        ``preset``: the decoding defaults, ``"default"`` (the reference's) or ``"fast"``
        (fewer stage-1 and S2A steps); explicit ``steps=`` etc. still win. ``dtype="bf16"``
        on a CPU without native bf16 keeps the large weights in bf16 and computes in fp32.
        ``quantize="int8"`` (CPU, opt-in): int8 dynamic quantisation of the linear layers of
        stage 1 and S2A (faster, smaller, slightly different output). ``low_memory=True``:
        every network is loaded when its stage starts and released when it ends (prompt
        encoders, stage 1, S2A, codec decoder), so that the peak memory is that of the largest
        stage rather than of all of them; the output is the same. Weights memory-mapped from
        fp32 files reload in milliseconds; each call then re-reads them.
        """
        if task not in _NEEDS:
            raise MetisError(f"unknown task {task!r}; choose one of {sorted(_NEEDS)}")
        choice = source if isinstance(source, Choice) else choose_source(task, source)
        source = choice.source
        if str(source) != "hub" and not str(source).startswith("random:") and not Path(source).is_dir():
            raise MetisError(f"model source {source} is neither 'hub' nor an existing directory")
        model = cls(task, ModelSource(source, ssl_model, ssl_stats, phone_vocab), pick_device(device), _dtype(dtype),
                    lazy=True, preset=preset, quantize=quantize, low_memory=low_memory)
        model.choice = choice
        return model if (lazy or low_memory) else model.load_all()

    def _net(self, name: str):
        if name not in self._nets:
            with for_task(self.task):  # fetch errors name this task in their advice
                self._load(name)
        return self._nets[name]

    def _load(self, name: str) -> None:
        dev, dt = self.device, self.dtype
        if name == "stage1":
            self._nets[name] = self._src.stage1(self.task, dev, dt)
        elif name == "ssl":
            self._nets[name] = self._src.ssl(dev, dt)
        elif name == "visual":
            self._nets[name] = self._src.visual(dev, dt)
        elif name == "phones":
            self._nets[name] = self._src.phone_tokenizer()
        elif name == "s2a":
            self._nets["s2a_1layer"] = self._lean(self._src.component("s2a_1layer", dev, dt), True)
            self._nets[name] = self._src.component("s2a_full", dev, dt)
        else:
            self._nets[name] = self._src.component(name, dev, dt)
        self._nets[name] = self._lean(self._nets[name], name in ("stage1", "s2a"))

    def _release(self, *names: str) -> None:
        """In ``low_memory`` mode, drop the networks of a finished stage (``"s2a"`` also drops
        the 1-layer S2A); otherwise nothing."""
        if not self.low_memory:
            return
        for name in names:
            self._nets.pop(name, None)
            if name == "s2a":
                self._nets.pop("s2a_1layer", None)
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _fact(self, key: str, name: str):
        """A fact of network ``name`` (sample rate, RVQ depth), read once: from the network when
        it is loaded, else from its config alone (no weights are loaded just to read it)."""
        if key not in self._facts:
            net = self._nets.get(name)  # loaded, or shared by share_networks
            if name == "ssl":
                sr = net.sample_rate if net is not None else self._src.config("ssl").sample_rate
                self._facts["ssl"] = int(sr)
            elif name == "s2a":
                cfg = net.cfg if net is not None else self._src.config("s2a_full")
                self._facts["quantizers"] = int(cfg.num_quantizers)
                self._facts["semantic_vocab"] = int(cfg.cond_codebook_size)
                self._facts["acoustic_codebook"] = int(cfg.codebook_size)
            elif name == "acoustic_decoder":
                cfg = net.cfg if net is not None else self._src.config("acoustic_decoder")
                self._facts["audio"] = int(cfg.sample_rate)
                self._facts["frame"] = cfg.sample_rate / cfg.hop_size
        return self._facts[key]

    def _lean(self, net, generative: bool):
        """int8 (stage 1 and S2A) or half-precision storage, as this model was asked for."""
        if net is None or not isinstance(net, torch.nn.Module):
            return net
        from .models.precision import quantize_int8, store_half

        if self.quantize == "int8" and generative:
            return quantize_int8(net)
        if self.half_storage is not None and generative:
            return store_half(net, self.half_storage)
        return net

    def load_all(self) -> "Metis":
        self._net("stage1")
        for need in _NEEDS[self.task]:
            self._net(need)
        return self

    def share_networks(self, other: "Metis") -> "Metis":
        """Reuse the networks ``other`` has already loaded (SSL, codecs, S2A, phone tokenizer;
        never its stage 1) when both come from the same source on the same device and dtype,
        so that several tasks held together (a server) keep one copy of them. Call it on a
        ``lazy=True`` model before its first use."""
        same = (str(self._src.source) == str(other._src.source) and self.device == other.device
                and self.dtype == other.dtype and self.quantize == other.quantize
                and self.half_storage == other.half_storage and self._src.ssl_source == other._src.ssl_source
                and self._src.stats == other._src.stats and self._src.phone_vocab == other._src.phone_vocab)
        if same:
            for name, net in other._nets.items():
                if name != "stage1" and name not in self._nets:
                    self._nets[name] = net
        return self

    @property
    def loaded(self) -> List[str]:
        return sorted(k for k, v in self._nets.items() if v is not None)

    @property
    def sample_rate(self) -> int:
        return int(self._fact("audio", "acoustic_decoder"))

    @property
    def frame_rate(self) -> float:
        return float(self._fact("frame", "acoustic_decoder"))

    @property
    def ssl_sample_rate(self) -> int:
        return int(self._fact("ssl", "ssl"))

    # ------------------------------------------------------------------ helpers
    def _read(self, audio: AudioInput, sr: int, what: str) -> np.ndarray:
        if isinstance(audio, (str, os.PathLike)):
            wav, _ = load_audio(audio, sr)
        elif isinstance(audio, tuple) and len(audio) == 2:
            wav = resample(np.asarray(audio[0], dtype=np.float32).reshape(-1), int(audio[1]), sr)
        else:
            raise MetisError(f"{what}: expected a file path or a (waveform, sample_rate) pair")
        if wav.size == 0:
            raise AudioError(f"{what}: audio is empty")
        if not np.all(np.isfinite(wav)):
            raise AudioError(f"{what}: audio contains NaN or infinite samples")
        if float(np.abs(wav).max()) < 1e-5:
            raise AudioError(f"{what}: audio is silent")
        return wav

    def _prompt_audio(self, prompt: AudioInput) -> Tuple[np.ndarray, np.ndarray]:
        """(16 kHz, 24 kHz) waveforms of a prompt, trimmed to MAX_PROMPT_S with a warning."""
        ssl_sr = self.ssl_sample_rate
        ac_sr = self.sample_rate
        w16 = self._read(prompt, ssl_sr, "prompt")
        dur = len(w16) / ssl_sr
        if dur < MIN_PROMPT_S:
            raise AudioError(f"prompt is {dur:.2f} s long; at least {MIN_PROMPT_S:.0f} s of the target voice is needed")
        w24 = resample(w16, ssl_sr, ac_sr) if isinstance(prompt, tuple) else self._read(prompt, ac_sr, "prompt")
        if dur > MAX_PROMPT_S:
            import warnings

            warnings.warn(f"prompt is {dur:.1f} s long; using its first {MAX_PROMPT_S:.0f} s")
            w16 = w16[: int(MAX_PROMPT_S * ssl_sr)]
            w24 = w24[: int(MAX_PROMPT_S * ac_sr)]
        return w16, w24

    @torch.no_grad()
    def ssl_features(self, wavs16: Sequence[np.ndarray]) -> List[torch.Tensor]:
        """Normalised SSL features per waveform: list of (T_b, H) at 50 Hz."""
        ssl = self._net("ssl")
        out = ssl(list(wavs16), ssl.sample_rate)
        feats = out.features.float()
        return [feats[b, : int(out.mask[b].sum())] for b in range(feats.shape[0])]

    @torch.no_grad()
    def semantic_ids(self, wavs16: Sequence[np.ndarray]) -> List[torch.Tensor]:
        """Semantic ids per waveform: list of (T_b,)."""
        codec = self._net("semantic_codec")
        out = []
        for f in self.ssl_features(wavs16):
            ids, _ = codec.quantize(f[None].to(next(codec.parameters()).dtype))
            out.append(ids[0])
        return out

    @torch.no_grad()
    def acoustic_ids(self, wav24: np.ndarray, frames: int) -> torch.Tensor:
        """Acoustic ids (frames, Q) of a 24 kHz waveform, aligned to ``frames`` semantic frames
        (the semantic length is the authority: trimmed, or padded by repeating the last frame)."""
        enc = self._net("acoustic_encoder")
        dec = self._net("acoustic_decoder")
        wav = torch.from_numpy(wav24).to(self.device, self.dtype)[None, None]
        rest = wav.shape[-1] % enc.hop_length
        if rest:
            wav = torch.nn.functional.pad(wav, (0, enc.hop_length - rest))
        codes = dec.quantize(enc(wav))[0]
        if codes.shape[0] >= frames:
            return codes[:frames]
        pad = codes[-1:].expand(frames - codes.shape[0], -1)
        return torch.cat([codes, pad], dim=0)

    def _settings(self, steps, guidance, temperature) -> DecodeSettings:
        d = self.defaults
        return DecodeSettings(
            steps=d.steps if steps is None else steps,
            guidance=d.guidance if guidance is None else guidance,
            temperature=d.temperature if temperature is None else temperature,
            rescale=d.rescale,
        )

    def _generators(self, seed, n: int, owner: Optional[Sequence[int]] = None):
        """One generator per generated piece. ``seed``: None (random), an int (piece ``k`` gets
        ``seed + k``) or a list with one seed (or None) per item, where piece ``j`` of item ``i``
        (``owner`` maps pieces to items) gets ``seed[i] + j``: an item then gives the same
        result in any batch as alone."""
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        if isinstance(seed, (list, tuple)):
            owner = list(range(n)) if owner is None else list(owner)
            if len(owner) != n or (owner and max(owner) >= len(seed)):
                raise MetisError(f"got {len(seed)} seeds for {max(owner, default=-1) + 1} items")
            base = [int(torch.randint(0, 2**31 - 1, (1,)).item()) if s is None else int(s) for s in seed]
            seen: Dict[int, int] = {}
            seeds = []
            for o in owner:
                seeds.append(base[o] + seen.get(o, 0))
                seen[o] = seen.get(o, 0) + 1
        else:
            if seed is None:
                seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            seeds = [int(seed) + i for i in range(n)]
        return [torch.Generator(device=gen_device).manual_seed(s) for s in seeds]

    @torch.no_grad()
    def _acoustic(self, semantic: List[torch.Tensor], prompt_codes: List[torch.Tensor], gens,
                  s2a_steps=None, s2a_guidance=None, known: Optional[List[torch.Tensor]] = None,
                  frame_phones: Optional[List[torch.Tensor]] = None, phone_guidance: Optional[float] = None,
                  phone_defaults: Optional[TaskDefaults] = None) -> List[torch.Tensor]:
        """S2A: semantic ids over [prompt ; target] -> target acoustic ids (T_b, Q). ``known``:
        B tensors (T_b, k) of the target's first k RVQ layers, given instead of generated;
        ``frame_phones``: B tensors (Tp_b + T_b,) of phone ids per frame (TTS), read by an S2A
        with ``frame_phones``, with guidance towards them: ``phone_guidance`` is its scale (None:
        that of ``phone_defaults``), ``phone_defaults`` (None: this task's) also says over how
        many RVQ layers."""
        d = self.defaults
        guided = {}
        if frame_phones is not None:
            pd = phone_defaults or d
            guided = dict(phone_guidance=pd.s2a_phone_guidance if phone_guidance is None else phone_guidance,
                          phone_guidance_layers=pd.s2a_phone_guidance_layers)
        steps = tuple(d.s2a_steps if s2a_steps is None else s2a_steps)
        full = self._net("s2a")
        one = self._nets.get("s2a_1layer")
        settings = DecodeSettings(steps=max(1, steps[0]), guidance=d.s2a_guidance if s2a_guidance is None else s2a_guidance,
                                  temperature=d.s2a_temperature, rescale=d.rescale)
        if known is None and one is not None:
            known = s2a_generate(one, semantic, [p[:, :one.prompt_layers] for p in prompt_codes], [steps[0]],
                                 replace(settings, guidance=0.0), generator=gens, frame_phones=frame_phones, **guided)
        q = full.num_quantizers
        layer_steps = list(steps[:q]) + [1] * max(0, q - len(steps))
        out = s2a_generate(full, semantic, [p[:, :full.prompt_layers] for p in prompt_codes], layer_steps, settings,
                           known_codes=known, generator=gens, frame_phones=frame_phones, **guided)
        del full, one
        self._release("s2a")
        return out

    @torch.no_grad()
    def _decode(self, codes: List[torch.Tensor]) -> List[np.ndarray]:
        dec = self._net("acoustic_decoder")
        out = []
        for c in codes:
            wav = dec.decode(c[None].to(self.device))[0, 0].float().cpu().numpy()
            out.append(np.clip(wav, -1.0, 1.0).astype(np.float32))
        del dec
        self._release("acoustic_decoder")
        return out

    def _finish(self, sem: List[torch.Tensor], codes: List[torch.Tensor]) -> List[SpeechOutput]:
        wavs = self._decode(codes)
        return [SpeechOutput(w, self.sample_rate, s.cpu().numpy(), c.cpu().numpy()) for w, s, c in zip(wavs, sem, codes)]

    def _prompts(self, prompts: Sequence[AudioInput]):
        """Per prompt: 16 kHz wav, semantic ids (Tp,), acoustic ids (Tp, Q). A prompt given
        several times in a batch (the same file path or the same array) is encoded once."""
        keys = [_prompt_key(p) for p in prompts]
        uniq = list(dict.fromkeys(keys))
        first = [prompts[keys.index(k)] for k in uniq]
        w16s, w24s = zip(*(self._prompt_audio(p) for p in first))
        sems = self.semantic_ids(list(w16s))
        codes = [self.acoustic_ids(w24, int(s.shape[0])) for w24, s in zip(w24s, sems)]
        self._release("semantic_codec", "acoustic_encoder", "acoustic_decoder")
        at = [uniq.index(k) for k in keys]
        return [w16s[i] for i in at], [sems[i] for i in at], [codes[i] for i in at]

    # ------------------------------------------------------------------ tasks
    def tts(self, text, prompt, prompt_text, duration=None, language: str = "auto", prompt_language: str = "auto",
            steps=None, guidance=None, temperature=None, seed=None, s2a_steps=None, split_sentences: bool = True,
            max_sentence_chars: int = 300, speed=1.0, phone_guidance=None, max_prompt_s=None):
        """Speak ``text`` in the voice of ``prompt`` (whose transcript is ``prompt_text``).

        ``duration`` (seconds) fixes the length; by default it is the prompt's length (its
        speech, pauses counted at most :attr:`max_pause_s` each) scaled by the UTF-8 byte
        ratio of the texts, kept within :attr:`speaking_rate` phones per second, and divided
        by ``speed`` (2.0: twice as fast as the prompt speaks). Long text is split into
        sentences, generated as one batch with the same prompt (a steady voice), and joined.
        Lists give batch inference (``duration``, ``speed`` and ``seed`` may then be lists too,
        one per text). ``phone_guidance`` (an S2A that reads frame phones): how strongly the
        S2A is steered towards the phones of the text (0: not at all; None: the model's default).
        ``max_prompt_s`` (a stage 1 that aligns phones): only the prompt's last words that fit in
        this many seconds condition the speech, cut at a word boundary that the stage-1 alignment
        of ``prompt_text`` places (0: the whole prompt; None: the model's default). The speaking
        rate is still measured over the whole prompt.
        """
        self._require("tts", "omni")
        _check_phone_guidance(phone_guidance)
        if max_prompt_s is not None and not (isinstance(max_prompt_s, (int, float)) and not isinstance(max_prompt_s, bool)
                                             and math.isfinite(max_prompt_s) and 0 <= max_prompt_s <= MAX_PROMPT_S):
            raise MetisError(f"max_prompt_s must be a number of seconds between 0 and {MAX_PROMPT_S:.0f}, got {max_prompt_s!r}")
        if max_prompt_s and not self._src.is_bundle:  # official / random networks have no alignment table
            raise MetisError(_NO_PROMPT_CUT)
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        prompts = [prompt] * len(texts) if single or not isinstance(prompt, (list, tuple)) or _is_pair(prompt) else list(prompt)
        ptexts = [prompt_text] * len(texts) if isinstance(prompt_text, str) or prompt_text is None else list(prompt_text)
        durs = [duration] * len(texts) if duration is None or isinstance(duration, (int, float)) else list(duration)
        speeds = list(speed) if isinstance(speed, (list, tuple)) else [speed] * len(texts)
        if not (len(prompts) == len(ptexts) == len(texts) == len(durs) == len(speeds)):
            raise MetisError("text, prompt, prompt_text, duration and speed lists must have the same length")
        for v in speeds:
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise MetisError(f"speed must be a positive number, got {v!r}")
        for t, p, pt, d in zip(texts, prompts, ptexts, durs):  # before any network is loaded
            if pt is None:
                raise MetisError("prompt_text is empty; give the transcript of the prompt audio")
            check_inputs("tts", {"text": t, "prompt": p, "prompt_text": pt, "duration": d},
                         language=language, prompt_language=prompt_language)
        tok = self._net("phones")
        # split every text into sentence pieces; remember which output each piece belongs to
        from .text import split_sentences as splitter

        pieces, owner = [], []
        for i, t in enumerate(texts):
            parts = splitter(t, language, max_sentence_chars) if (split_sentences and durs[i] is None) else [t]
            for p in parts:
                pieces.append(p)
                owner.append(i)
        p_w16, p_sems, p_codes = self._prompts(prompts)
        self._release("ssl")  # TTS needs no more SSL features (the other tasks' stage 1 reads their input's)
        ssl_sr = self.ssl_sample_rate
        # each prompt's speaking rate over its speech: no leading/trailing silence, inner pauses capped
        spoken = [None if d is not None else
                  min(int(sem.shape[0]), speech_frames(w, ssl_sr, self.frame_rate, max_pause_s=self.max_pause_s))
                  for d, sem, w in zip(durs, p_sems, p_w16)]
        phone_ids, lens, pieces_phones = [], [], []
        prompt_phones: Dict[int, List[int]] = {}  # each prompt transcript tokenized once
        for p, i in zip(pieces, owner):
            if i not in prompt_phones:
                prompt_phones[i] = tok(ptexts[i], prompt_language).ids
            pp = prompt_phones[i]
            target = tok(p, language)
            tp = target.ids
            phone_ids.append(torch.tensor(pp + tp, dtype=torch.long))
            pieces_phones.append((pp, tp))
            if durs[i] is not None:
                if not (isinstance(durs[i], (int, float)) and math.isfinite(durs[i]) and 0 < durs[i] <= MAX_TARGET_S):
                    raise MetisError(f"duration must be between 0 and {MAX_TARGET_S:.0f} seconds, got {durs[i]}")
                n = int(round(durs[i] * self.frame_rate))
            else:
                n = spoken[i] * len(p.encode("utf-8")) // max(1, len(str(ptexts[i]).encode("utf-8")))
                n = bounded_length(n, sounding_phones(target.phones), self.frame_rate, self.speaking_rate)
                n = int(round(n / float(speeds[i])))
                if n > MAX_TARGET_S * self.frame_rate:
                    raise MetisError(f"speed {speeds[i]:g} makes a sentence longer than {MAX_TARGET_S:.0f} seconds")
            lens.append(max(1, n))
        gens = self._generators(seed, len(pieces), owner)
        stage1 = self._net("stage1")
        settings = self._settings(steps, guidance, temperature)
        if max_prompt_s and not stage1.aligner_fitted:
            raise MetisError(_NO_PROMPT_CUT)
        frames = None
        cut = [(0, 0)] * len(pieces)  # (first prompt frame, first prompt phone) each piece keeps
        if stage1.aligner_fitted:
            # each prompt's phones aligned to its semantic ids once, for its frame phones and its cut
            p_phones = {i: pieces_phones[owner.index(i)][0] for i in set(owner)}
            p_durs = {i: self._align_prompt(stage1, p_phones[i], p_sems[i]) for i in p_phones}
            frames = [self._frame_phones(stage1, pp, p_durs[i], int(p_sems[i].shape[0]), tp, n, pieces[k])
                      for k, ((pp, tp), i, n) in enumerate(zip(pieces_phones, owner, lens))]
            keep_s = self.defaults.max_prompt_s if max_prompt_s is None else max_prompt_s
            if keep_s > 0:
                tails = {i: self._prompt_tail(stage1, p_phones[i], p_durs[i], int(p_sems[i].shape[0]),
                                              int(round(keep_s * self.frame_rate))) for i in p_phones}
                cut = [tails[i] for i in owner]
                frames = [f[f0:] for f, (f0, _) in zip(frames, cut)]
                phone_ids = [torch.tensor(pp[j0:] + tp, dtype=torch.long) for (pp, tp), (_, j0) in zip(pieces_phones, cut)]
        p_sem_used = [p_sems[i][f0:] for i, (f0, _) in zip(owner, cut)]
        tgt = stage1_generate(stage1, lens, p_sem_used, phone_ids, None, settings, gens, frame_phones=frames)
        del stage1
        self._release("stage1")
        sem = [torch.cat([p, t]) for p, t in zip(p_sem_used, tgt)]
        codes = self._acoustic(sem, [p_codes[i][f0:] for i, (f0, _) in zip(owner, cut)], gens, s2a_steps,
                               frame_phones=frames, phone_guidance=phone_guidance)
        outs = self._finish(tgt, codes)
        merged = _join(outs, owner, len(texts), gap_s=0.15)
        return merged[0] if single else merged

    @staticmethod
    def _align_prompt(stage1, phones, prompt_sem) -> Optional[np.ndarray]:
        """Frames per phone of a prompt's transcript over its semantic ids (Tp,) by the stage-1
        alignment table, or None where they cannot be aligned (a prompt too short for them)."""
        if not len(phones):
            return None
        try:
            return stage1.align_phones(np.asarray(phones, dtype=np.int64),
                                       prompt_sem.detach().cpu().numpy().astype(np.int64))
        except ValueError:
            return None

    @staticmethod
    def _prompt_tail(stage1, phones, durations: Optional[np.ndarray], prompt_frames: int,
                     max_frames: int) -> Tuple[int, int]:
        """(first frame, first phone) of a prompt's last words that fit in ``max_frames``: the
        earliest word boundary (a skippable phone: word separator or punctuation) of its phone
        ids that the alignment ``durations`` (frames per phone, from :meth:`_align_prompt`)
        place at most ``max_frames`` frames before the prompt's end (``prompt_frames``). (0, 0),
        the whole prompt, when it is short enough, was not aligned, or has no such boundary."""
        T = int(prompt_frames)
        if T <= max_frames or len(phones) < 2 or durations is None:
            return 0, 0
        pp = np.asarray(phones, dtype=np.int64)
        ends = np.cumsum(durations)[1:-1]
        skip = stage1.skippable_phones[pp]
        for j in range(len(pp) - 1):
            if skip[j] and T - int(ends[j]) <= max_frames:
                return int(ends[j]), j + 1
        return 0, 0

    @torch.no_grad()
    def _frame_phones(self, stage1, prompt_phones, prompt_durations: Optional[np.ndarray], prompt_frames: int,
                      target_phones, n: int, text: str) -> torch.Tensor:
        """Phone id per frame of [prompt ; target] (Tp + n,) for a ``frame_phones`` stage 1: the
        prompt's phones repeated by their aligned ``prompt_durations`` (:meth:`_align_prompt`;
        None: its ``prompt_frames`` frames go without phones), the target's laid out by the
        duration predictor over n frames."""
        from .models.align import durations_to_frames, predicted_durations

        pad = stage1.cfg.phone_pad_id
        skip = stage1.skippable_phones
        pp = np.asarray(prompt_phones, dtype=np.int64)
        if prompt_durations is None:
            fp = np.full(int(prompt_frames), pad, dtype=np.int64)
        else:
            fp = durations_to_frames(pp, prompt_durations, pad)
        tp = np.asarray(target_phones, dtype=np.int64)
        ids = torch.from_numpy(tp)[None].to(self.device)
        pred = stage1.duration(ids, torch.ones_like(ids, dtype=torch.bool))[0].float().cpu().numpy()
        try:
            dur = predicted_durations(pred, skip[tp], n)
        except ValueError:
            need = int((~skip[tp]).sum())
            raise MetisError(f"{n / self.frame_rate:.2f} s is too short for {text!r}: its {need} phones need at least "
                             f"{need / self.frame_rate:.2f} s") from None
        return torch.from_numpy(np.concatenate([fp, np.repeat(tp, dur)]))

    #: TTS without a ``duration``: the prompt's pauses count at most this many seconds each
    #: when its speaking rate is measured (None: as they are), and the target length is then
    #: kept where its phones are spoken at (slowest, fastest) phones per second (None: no
    #: bound). Read speech runs at ~10-15 phones/s; a prompt of words read one by one or of
    #: clips joined with gaps would otherwise stretch the sentence out (and lose its words).
    max_pause_s: Optional[float] = 0.25
    speaking_rate: Optional[Tuple[float, float]] = SPEAKING_RATE

    #: long inputs (VC/TSE/SE) are processed in windows of this many seconds, each carrying
    #: the last ``context_s`` seconds of the previous window's tokens as prompt context.
    #: Without a prompt (SE), the S2A of every later window also sees ``anchor_s`` seconds of
    #: the first window's output (its most active span) before that context, so that the voice
    #: and loudness stay those of the first window instead of drifting from window to window.
    window_s: float = 30.0
    context_s: float = 4.0
    anchor_s: float = 5.0
    #: then each later window's loudness relative to the input is set to the first window's,
    #: by at most this many dB (:func:`align_window_levels`); 0 turns that off
    max_level_fix_db: float = 6.0

    def _speech_conditioned(self, sources, prompts, what: str, steps, guidance, temperature, seed, phone_texts=None,
                            s2a_steps=None):
        ssl_sr = self.ssl_sample_rate
        spf = int(round(ssl_sr / self.frame_rate))  # samples per frame at the SSL rate (320)
        srcs = [self._read(s, ssl_sr, what) for s in sources]
        for s in srcs:
            if len(s) / ssl_sr > MAX_INPUT_S:
                raise AudioError(f"{what} is {len(s) / ssl_sr:.0f} s long; the limit is {MAX_INPUT_S:.0f} s")
            if len(s) < 2 * spf:
                raise AudioError(f"{what} is too short to process ({len(s) / ssl_sr * 1000:.0f} ms)")
        B = len(srcs)
        if prompts is not None:
            w16s, p_sems, p_codes = self._prompts(prompts)
        else:
            w16s = [np.zeros(0, np.float32)] * B
            p_sems = [torch.zeros(0, dtype=torch.long, device=self.device)] * B
            q = int(self._fact("quantizers", "s2a"))
            p_codes = [torch.zeros(0, q, dtype=torch.long, device=self.device)] * B
        phone_ids = None
        if phone_texts is not None:
            tok = self._net("phones")
            phone_ids = [torch.tensor(tok(t).ids, dtype=torch.long) for t in phone_texts]
        gens = self._generators(seed, B)
        settings = self._settings(steps, guidance, temperature)
        W = max(1, int(self.window_s * self.frame_rate))
        C = max(0, min(int(self.context_s * self.frame_rate), W // 2))
        n_frames = [max(1, len(s) // spf) for s in srcs]
        n_windows = [window_count(n, W) for n in n_frames]
        sem_out = [[] for _ in range(B)]
        code_out = [[] for _ in range(B)]
        A = max(0, min(int(self.anchor_s * self.frame_rate), W)) if prompts is None else 0
        anchors = [None] * B  # (semantic ids, acoustic ids) of the first window's anchor span
        for k in range(max(n_windows)):
            items = [b for b in range(B) if k < n_windows[b]]
            ctx_sem, ctx_codes, audio = [], [], []
            for b in items:
                start = k * W
                end = len(srcs[b]) if k == n_windows[b] - 1 else (k + 1) * W * spf
                done_sem = torch.cat(sem_out[b]) if sem_out[b] else p_sems[b][:0]
                done_codes = torch.cat(code_out[b]) if code_out[b] else p_codes[b][:0]
                c = min(C, int(done_sem.shape[0]))
                ctx_sem.append(torch.cat([p_sems[b], done_sem[done_sem.shape[0] - c :]]))
                ctx_codes.append(torch.cat([p_codes[b], done_codes[done_codes.shape[0] - c :]]))
                audio.append(np.concatenate([w16s[b], srcs[b][(start - c) * spf : end]]))
            feats = self.ssl_features(audio)
            lens = []
            for i, (b, ps) in enumerate(zip(items, ctx_sem)):
                if k < n_windows[b] - 1:
                    # inner windows have exactly W frames: fbank rounding may leave the features
                    # a frame short or long, so repeat or drop their last frame
                    n = W
                    want = int(ps.shape[0]) + W
                    f = feats[i]
                    feats[i] = torch.cat([f, f[-1:].expand(want - f.shape[0], -1)]) if f.shape[0] < want else f[:want]
                else:  # the last (or only) window: the reference's rule, all remaining frames
                    n = int(feats[i].shape[0]) - int(ps.shape[0])
                if n < 1:
                    raise AudioError(f"{what} is too short to process")
                lens.append(n)
            g = [gens[b] for b in items]
            ph = [phone_ids[b] for b in items] if phone_ids is not None else None
            tgt = stage1_generate(self._net("stage1"), lens, ctx_sem, ph, feats, settings, g)
            self._release("stage1", "ssl")
            sem = [torch.cat([p, t]) for p, t in zip(ctx_sem, tgt)]
            if k > 0 and A:  # the S2A alone sees the first window's anchor before the context
                sem = [torch.cat([anchors[b][0], x]) for b, x in zip(items, sem)]
                ctx_codes = [torch.cat([anchors[b][1], c]) for b, c in zip(items, ctx_codes)]
            codes = self._acoustic(sem, ctx_codes, g, s2a_steps)
            for b, t, c in zip(items, tgt, codes):
                if k == 0 and A and n_windows[b] > 1:
                    a0 = _most_active_span(srcs[b][: len(t) * spf], spf, min(A, len(t)))
                    anchors[b] = (t[a0 : a0 + A], c[a0 : a0 + A])
                sem_out[b].append(t)
                code_out[b].append(c)
        outs = self._finish([torch.cat(x) for x in sem_out], [torch.cat(x) for x in code_out])
        for b, o in enumerate(outs):
            if n_windows[b] > 1:
                o.wav = align_window_levels(o.wav, o.sample_rate, srcs[b], ssl_sr, self.window_s, self.frame_rate,
                                            self.max_level_fix_db)
        return outs

    def vc(self, source, prompt, steps=None, guidance=None, temperature=None, seed=None, s2a_steps=None):
        """The words of ``source`` in the voice of ``prompt``."""
        self._require("vc")
        single = not isinstance(source, list)
        sources = [source] if single else source
        prompts = _broadcast(prompt, len(sources))
        for s, p in zip(sources, prompts):
            check_inputs("vc", {"source": s, "prompt": p})
        out = self._speech_conditioned(sources, prompts, "source", steps, guidance, temperature, seed, None, s2a_steps)
        return out[0] if single else out

    def tse(self, mixture, prompt, text=None, steps=None, guidance=None, temperature=None, seed=None, s2a_steps=None):
        """The speech of the ``prompt``'s speaker alone, out of ``mixture``. ``text`` (omni
        models only) is the target speaker's transcript: text-guided extraction."""
        self._require("tse", "omni")
        single = not isinstance(mixture, list)
        mixtures = [mixture] if single else mixture
        prompts = _broadcast(prompt, len(mixtures))
        texts = None if text is None else ([text] * len(mixtures) if isinstance(text, str) else list(text))
        for i, (m, p) in enumerate(zip(mixtures, prompts)):
            check_inputs("tse", {"mixture": m, "prompt": p, "text": texts[i] if texts is not None else None})
        if text is not None and not self._net("stage1").cfg.use_phone_cond:
            raise MetisError("text-guided extraction needs the omni model (Metis.from_pretrained('omni'))")
        out = self._speech_conditioned(mixtures, prompts, "mixture", steps, guidance, temperature, seed, texts, s2a_steps)
        return out[0] if single else out

    def se(self, noisy, steps=None, guidance=None, temperature=None, seed=None, s2a_steps=None, refine=None):
        """Clean speech from noisy / reverberant speech (no prompt).

        ``refine`` (None: the model's default, ``TaskDefaults.refine``): ``"none"`` returns the
        generated speech, as the reference does; ``"wiener"`` returns the input itself, filtered
        by a Wiener gain whose speech spectrum is the generated speech's and whose noise is the
        input's stationary floor (:func:`~metis_speech.dsp.wiener_refine`, gain at least
        :attr:`refine_floor`); ``"lsa"`` returns the input enhanced by the MMSE log-spectral
        amplitude gain, its noise the input's bias-corrected floor and its a-priori SNR the
        input's own (decision-directed) blended with the generated speech's
        (:func:`~metis_speech.dsp.lsa_refine`, weight :attr:`lsa_speech_weight`). Both keep the
        recording's own voice and words with less noise, for a model whose generated speech
        loses them (the README measures each). The output's ``semantic_ids`` /
        ``acoustic_ids`` are those of the generated speech in every mode.
        """
        self._require("se", "omni")
        if refine is not None and refine not in REFINE_MODES:
            raise MetisError(f"refine must be one of {list(REFINE_MODES)}, got {refine!r}")
        single = not isinstance(noisy, list)
        items = [noisy] if single else noisy
        for x in items:
            check_inputs("se", {"input": x})
        out = self._speech_conditioned(items, None, "input", steps, guidance, temperature, seed, None, s2a_steps)
        mode = self.defaults.refine if refine is None else refine
        if mode != "none":
            from .dsp import lsa_refine, wiener_refine

            for x, o in zip(items, out):
                noisy = self._read(x, o.sample_rate, "input")
                if mode == "wiener":
                    o.wav = wiener_refine(noisy, o.wav, o.sample_rate, floor=self.refine_floor)
                else:
                    o.wav = lsa_refine(noisy, o.wav, o.sample_rate, speech_weight=self.lsa_speech_weight,
                                       floor=self.lsa_floor)
        return out[0] if single else out

    #: SE with ``refine="wiener"``: the least gain of the filter (0.1: at most 20 dB less)
    refine_floor: float = 0.1
    #: SE with ``refine="lsa"``: the weight of the generated speech's a-priori SNR (0: the
    #: input's own estimate alone, a classical enhancer; 1: the generated speech's alone)
    lsa_speech_weight: float = 0.3
    #: SE with ``refine="lsa"``: the least gain (0.05: at most 26 dB less)
    lsa_floor: float = 0.05

    def semantic_to_speech(self, semantic, prompt: Optional[AudioInput] = None, seed=None, s2a_steps=None,
                           known_codes=None, text: Optional[str] = None, language: str = "auto",
                           phone_guidance=None) -> SpeechOutput:
        """Speech from semantic ids: the S2A, then the codec decoder (the second half of every task).

        ``semantic``: ids (T,) at :attr:`frame_rate`, e.g. :meth:`semantic_ids` of a recording
        or the ``semantic_ids`` of an earlier output. With ``prompt`` (audio), the S2A continues
        the prompt's acoustic ids, so the speech takes the prompt's voice; without one it picks
        a voice itself, as it does for SE and TSE. ``known_codes``: acoustic ids (T, k) of the
        first k RVQ layers (e.g. :meth:`acoustic_ids` of the same recording), used as they are
        while the S2A generates the layers above them (how much each layer costs). ``text``: the
        transcript of the ids, for an S2A with ``frame_phones`` (S2AConfig): its phones are aligned
        to the ids by the S2A's alignment table and given to every frame, as TTS gives them, with
        ``phone_guidance`` towards them (None: this model's TTS default, see :meth:`tts`).
        Loaded for any task.
        """
        ids = self._semantic_input(semantic)
        _check_phone_guidance(phone_guidance)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise MetisError(f"text must be a non-empty string (the transcript of the semantic ids), got {text!r}")
        if s2a_steps is not None:
            s2a_steps = tuple(s2a_steps)
            if not _positive_ints(s2a_steps):
                raise MetisError(f"s2a_steps must be positive integers, got {s2a_steps!r}")
        known = None if known_codes is None else [self._known_codes(known_codes, int(ids.shape[0]))]
        if prompt is not None:
            check_audio(prompt, "prompt", min_s=MIN_PROMPT_S)
            _, p_sems, p_codes = self._prompts([prompt])
        else:
            q = int(self._fact("quantizers", "s2a"))
            p_sems = [ids[:0]]
            p_codes = [torch.zeros(0, q, dtype=torch.long, device=self.device)]
        frames = None
        if text is not None:
            fp, pad = self._aligned_phones(text, language, ids)
            frames = [torch.cat([torch.full((int(p_sems[0].shape[0]),), pad, dtype=torch.long), fp])]
        codes = self._acoustic([torch.cat([p_sems[0], ids])], p_codes, self._generators(seed, 1), s2a_steps, known=known,
                               frame_phones=frames, phone_guidance=phone_guidance,
                               phone_defaults=bundle_defaults(self._src.manifest, self.preset, "tts"))
        return self._finish([ids], codes)[0]

    def _aligned_phones(self, text: str, language: str, ids: torch.Tensor) -> Tuple[torch.Tensor, int]:
        """``text``'s phones placed on the frames of semantic ids (T,) by the alignment table of
        the S2A (the full one, else the 1-layer one) that reads frame phones: the phone id of
        every frame (T,) long, and the id of a frame without a phone."""
        from .models.align import durations_to_frames

        self._net("s2a")
        nets = [n for n in (self._nets.get("s2a"), self._nets.get("s2a_1layer")) if n is not None]
        net = next((n for n in nets if n.aligner_fitted), None)
        if net is None:
            raise MetisError("text: this model's S2A takes no transcript (it was not trained with frame_phones)")
        ph = np.asarray(self._net("phones")(text, language).ids, dtype=np.int64)
        sem = ids.detach().cpu().numpy().astype(np.int64)
        try:
            dur = net.align_phones(ph, sem)
        except ValueError:
            raise MetisError(f"text: {len(sem)} frames ({len(sem) / self.frame_rate:.2f} s) are too few for the "
                             f"phones of {text!r}") from None
        pad = net.cfg.phone_pad_id
        return torch.from_numpy(durations_to_frames(ph, dur, pad)), pad

    def _known_codes(self, codes, frames: int) -> torch.Tensor:
        """Acoustic ids (T, k) of the first k RVQ layers as a long tensor on the device; MetisError
        unless T is ``frames``, 1 <= k <= the S2A's layers and every id is in its codebook."""
        arr = _id_array(codes, "known_codes: expected a (frames, layers) array of integers")
        if arr.ndim == 1:
            arr = arr[:, None]
        q = int(self._fact("quantizers", "s2a"))
        size = int(self._fact("acoustic_codebook", "s2a"))
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise MetisError(f"known_codes: expected a (frames, layers) array of integers, got shape {arr.shape} {arr.dtype}")
        if arr.shape[0] != frames or not 1 <= arr.shape[1] <= q:
            raise MetisError(f"known_codes: expected ({frames}, 1..{q}) ids (one row per semantic frame, at most "
                             f"the S2A's {q} layers), got {arr.shape}")
        if arr.min() < 0 or arr.max() >= size:
            raise MetisError(f"known_codes: ids must be in [0, {size}), got {arr.min()}..{arr.max()}")
        return torch.as_tensor(arr, dtype=torch.long, device=self.device)

    def _semantic_input(self, semantic) -> torch.Tensor:
        """A (T,) long tensor on the device from ids given as a tensor, array or list; MetisError
        for anything else (wrong shape or type, empty, too long, ids outside the S2A's codebook)."""
        arr = _id_array(semantic, "semantic ids: expected a 1-D sequence of integers")
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 1 or arr.size == 0:
            raise MetisError(f"semantic ids: expected a non-empty 1-D sequence, got shape {tuple(arr.shape)}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise MetisError(f"semantic ids: expected integers, got {arr.dtype}")
        limit = int(MAX_INPUT_S * self.frame_rate)
        if arr.size > limit:
            raise MetisError(f"semantic ids: {arr.size} frames is more than {MAX_INPUT_S:.0f} s ({limit} frames)")
        vocab = int(self._fact("semantic_vocab", "s2a"))
        if int(arr.min()) < 0 or int(arr.max()) >= vocab:
            raise MetisError(f"semantic ids must lie in [0, {vocab}); got {int(arr.min())}..{int(arr.max())}")
        return torch.from_numpy(arr.astype(np.int64)).to(self.device)

    def l2s(self, video, prompt, crop_box=None, steps=None, guidance=None, temperature=None, seed=None, s2a_steps=None):
        """Speech for a silent video of a speaking face, in the voice of ``prompt``."""
        self._require("l2s")
        from .models.visual import l2s_condition
        from .video import video_to_crops

        single = not isinstance(video, list)
        videos = [video] if single else video
        prompts = _broadcast(prompt, len(videos))
        for v, p in zip(videos, prompts):
            check_inputs("l2s", {"video": v, "prompt": p})
        _, p_sems, p_codes = self._prompts(prompts)
        vis = self._net("visual")
        conds, lens = [], []
        for v, ps in zip(videos, p_sems):
            crops = video_to_crops(v, crop_box if crop_box is not None else "auto", fps=vis.cfg.fps)
            x = torch.from_numpy(np.asarray(crops, dtype=np.float32))[None].to(self.device, self.dtype)
            with torch.no_grad():
                f25 = vis(x)[0].float()
            cond = l2s_condition(f25, int(ps.shape[0]))
            conds.append(cond)
            lens.append(int(cond.shape[0]) - int(ps.shape[0]))
        gens = self._generators(seed, len(videos))
        settings = self._settings(steps, guidance, temperature)
        tgt = stage1_generate(self._net("stage1"), lens, p_sems, None, conds, settings, gens)
        sem = [torch.cat([p, t]) for p, t in zip(p_sems, tgt)]
        codes = self._acoustic(sem, p_codes, gens, s2a_steps)
        out = self._finish(tgt, codes)
        return out[0] if single else out

    def _require(self, *tasks):
        if self.task not in tasks:
            raise MetisError(f"this model was loaded for {self.task!r}; load it with Metis.from_pretrained({tasks[0]!r})")


def _prompt_key(p) -> tuple:
    """Identity of a prompt input: its path, or the array object and rate of a pair."""
    if isinstance(p, (str, os.PathLike)):
        return ("path", os.path.abspath(os.fspath(p)))
    if isinstance(p, tuple) and len(p) == 2:
        return ("pair", id(p[0]), p[1])
    return ("object", id(p))


def _is_pair(x) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray)


def _broadcast(x, n: int) -> list:
    if isinstance(x, list):
        if len(x) != n:
            raise MetisError(f"got {len(x)} prompts for {n} inputs")
        return x
    return [x] * n


def window_count(n_frames: int, window: int) -> int:
    """Windows a long SE/TSE/VC input of ``n_frames`` is generated in: one when it is at most
    1.25 windows long, else ceil(n / window) (inner windows exactly ``window`` frames, the
    last one the rest)."""
    return max(1, math.ceil(n_frames / window)) if n_frames > window + window // 4 else 1


def speech_frames(wav: np.ndarray, sample_rate: int, frame_rate: float = 50.0, floor_db: float = 40.0,
                  max_pause_s: Optional[float] = None, pause_db: float = 30.0) -> int:
    """Frames (at ``frame_rate``) from the first to the last frame whose energy is within
    ``floor_db`` of the loudest frame: the length of ``wav`` without leading and trailing
    silence. Pauses inside are kept, unless ``max_pause_s`` is given: then each pause (a run
    of frames more than ``pause_db`` below the level of the speech, its 95th-percentile
    frame) counts at most ``max_pause_s``, so that a list of words read one by one, or a
    prompt joined from clips, does not pass for slow speech. At least 1."""
    from .audio import frame_power

    e = frame_power(wav, max(1, int(round(sample_rate / frame_rate))))
    if e.size == 0:
        return 1
    db = 10 * np.log10(e + 1e-12)
    active = np.flatnonzero(db > db.max() - floor_db)
    if not active.size:
        return e.size
    db = db[active[0] : active[-1] + 1]
    n = int(db.size)
    if max_pause_s is None:
        return n
    keep = max(0, int(round(max_pause_s * frame_rate)))
    quiet = np.concatenate([[0], (db < np.percentile(db, 95) - pause_db).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(quiet))  # starts and ends of the quiet runs, alternating
    runs = edges[1::2] - edges[::2]
    return max(1, n - int(np.clip(runs - keep, 0, None).sum()))


def bounded_length(n_frames: int, n_phones: int, frame_rate: float, rate_range: Optional[Tuple[float, float]]) -> int:
    """``n_frames`` moved into the range of lengths at which ``n_phones`` phones are spoken at
    ``rate_range`` = (slowest, fastest) phones per second (unchanged when ``rate_range`` is
    None or there are no phones)."""
    if rate_range is None or n_phones <= 0:
        return n_frames
    slow, fast = rate_range
    longest = int(math.ceil(n_phones / slow * frame_rate))
    shortest = int(math.floor(n_phones / fast * frame_rate))
    return min(max(n_frames, shortest), longest)


def sounding_phones(phones: Sequence[str]) -> int:
    """Phones of a :class:`~metis_speech.text.tokenizer.Phonemized` that take time to say: not
    the word separator ``"_"``, punctuation or spaces."""
    return sum(1 for p in phones if p != "_" and not all(unicodedata.category(c)[0] in "PZ" for c in p))


def _most_active_span(wav: np.ndarray, frame_len: int, n: int) -> int:
    """First frame of the ``n``-frame span of ``wav`` (frames of ``frame_len`` samples) with
    the most energy: where the speech of a window is, rather than a pause."""
    from .audio import frame_power

    e = frame_power(wav, frame_len)
    if e.size <= n:
        return 0
    sums = np.convolve(e, np.ones(n), mode="valid")
    return int(np.argmax(sums))


def align_window_levels(wav: np.ndarray, sample_rate: int, source: np.ndarray, source_sr: int, window_s: float,
                        frame_rate: float = 50.0, max_db: float = 6.0, ramp_s: float = 0.1) -> np.ndarray:
    """Loudness of a windowed output made steady: each window after the first gets the gain
    (at most ``max_db``, ramped over ``ramp_s`` around its boundary) that gives it the first
    window's level relative to the same stretch of the ``source`` input (active-speech levels,
    :func:`audio.active_level_db`). A quieter or louder input stretch stays quieter or louder;
    a drop or jump the model added at a boundary does not. (S,) -> (S,), clipped to [-1, 1]."""
    from .audio import active_level_db

    bounds = window_boundaries_s(len(source) / source_sr, window_s, frame_rate)
    if not bounds or max_db <= 0:
        return wav
    edges = [0.0, *bounds, len(wav) / sample_rate]
    offsets = []
    for a, b in zip(edges[:-1], edges[1:]):
        lo = active_level_db(wav[int(a * sample_rate) : int(b * sample_rate)], sample_rate)
        li = active_level_db(source[int(a * source_sr) : int(b * source_sr)], source_sr)
        offsets.append(lo - li if np.isfinite(lo) and np.isfinite(li) else None)
    if offsets[0] is None:
        return wav
    gains_db = [0.0] + [0.0 if o is None else float(np.clip(offsets[0] - o, -max_db, max_db)) for o in offsets[1:]]
    t = np.arange(len(wav)) / sample_rate
    g = np.full(len(wav), gains_db[0])
    for b, prev, cur in zip(bounds, gains_db[:-1], gains_db[1:]):  # ramps between window gains
        g += (cur - prev) * np.clip((t - (b - ramp_s / 2)) / ramp_s, 0.0, 1.0)
    return np.clip(wav * 10 ** (g / 20), -1.0, 1.0).astype(np.float32)


def window_boundaries_s(duration_s: float, window_s: float, frame_rate: float = 50.0) -> List[float]:
    """Seconds (of the output, which has the input's length) where one generation window ends
    and the next begins, for an input of ``duration_s`` (see :func:`window_count`)."""
    W = max(1, int(window_s * frame_rate))
    n = window_count(max(1, int(duration_s * frame_rate)), W)
    return [k * W / frame_rate for k in range(1, n)]


def _join(outs: List[SpeechOutput], owner: List[int], n: int, gap_s: float) -> List[SpeechOutput]:
    """Concatenate sentence pieces of the same output with a short pause."""
    merged = []
    for i in range(n):
        parts = [o for o, w in zip(outs, owner) if w == i]
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        sr = parts[0].sample_rate
        gap = np.zeros(int(gap_s * sr), np.float32)
        wav = np.concatenate([x for p in parts for x in (p.wav, gap)][:-1])
        sem = np.concatenate([p.semantic_ids for p in parts])
        ac = np.concatenate([p.acoustic_ids for p in parts])
        merged.append(SpeechOutput(wav, sr, sem, ac))
    return merged
