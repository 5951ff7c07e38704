"""Typed configurations for every network, and the size presets.

Each network has one dataclass. Presets (``official`` = the sizes of the released
checkpoints, ``tiny`` = a few M parameters for tests and CPU training) are data, stored as
JSON in ``metis_speech/presets/<name>.json``: a mapping ``component -> fields``. A
component name is the key the rest of the package uses, e.g. ``stage1_tts`` or
``acoustic_decoder``.

Configs round-trip through JSON/YAML (:func:`save_config` / :func:`load_config`), and every
checkpoint the project writes has its config saved next to it as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

__all__ = [
    "Stage1Config",
    "S2AConfig",
    "SemanticCodecConfig",
    "AcousticEncoderConfig",
    "AcousticDecoderConfig",
    "SSLConfig",
    "CONFIG_CLASSES",
    "ConfigError",
    "load_preset",
    "list_presets",
    "config_to_dict",
    "config_from_dict",
    "save_config",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration is inconsistent or cannot be read."""


AdapterKind = Literal["none", "gated", "mlp"]


@dataclass
class Stage1Config:
    """Stage 1: the masked generative model over semantic ids (Metis / MaskGCT T2S).

    ``use_phone_cond`` adds the phone prefix (TTS, omni). ``adapter`` selects the frame
    condition: ``"gated"`` = zero-gated SSL adapter (VC/TSE/SE/omni), ``"mlp"`` = the
    ungated L2S adapter, ``"none"`` = pre-training / TTS.

    ``frame_phones`` (an extension for small models trained on little data, off in every
    official checkpoint): besides the phone prefix, every frame gets the embedding of the phone
    it belongs to, so the network need not learn the text-to-frame alignment by itself. The
    frame phones of training utterances (and of a TTS prompt) come from the model's own
    alignment table over semantic ids (``models/align.py``, fitted from the training pairs),
    those of a TTS target from its duration predictor (``duration_hidden`` channels, trained
    beside it). Needs ``use_phone_cond``.
    """

    hidden_size: int = 1536
    num_layers: int = 16
    num_heads: int = 16
    intermediate_size: Optional[int] = None  # default 4 * hidden_size
    codebook_size: int = 8192  # semantic vocabulary V (reference: cond_codebook_size)
    use_phone_cond: bool = False
    phone_vocab_size: int = 1024
    phone_pad_id: int = 1023
    adapter: AdapterKind = "none"
    cond_dim: int = 1024  # frame-condition feature size (768 for L2S)
    adapter_hidden: Optional[int] = None  # default 4 * hidden_size
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    # training objective (spec section 4)
    prompt_prob: float = 0.85  # probability of keeping an unmasked prefix prompt
    min_mask_ratio: float = 0.2
    frame_phones: bool = False
    duration_hidden: int = 128
    # training with frame_phones: probability that a sample's prompt frames lose their phones
    # (a TTS request whose prompt text cannot be aligned still gets the target's)
    prompt_phone_drop: float = 0.15

    def __post_init__(self):
        if self.frame_phones and not self.use_phone_cond:
            raise ConfigError("frame_phones needs use_phone_cond (the frame phones come from the phone condition)")
        if self.duration_hidden < 1:
            raise ConfigError(f"duration_hidden must be positive, got {self.duration_hidden}")
        if not 0.0 <= self.prompt_phone_drop <= 1.0:
            raise ConfigError(f"prompt_phone_drop must be in [0, 1], got {self.prompt_phone_drop}")
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.adapter_hidden is None:
            self.adapter_hidden = 4 * self.hidden_size
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ConfigError("head dimension must be even for rotary embeddings")
        if self.adapter not in ("none", "gated", "mlp"):
            raise ConfigError(f"adapter must be 'none', 'gated' or 'mlp', got {self.adapter!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass
class S2AConfig:
    """Semantic-to-acoustic masked model over ``num_quantizers`` RVQ layers."""

    hidden_size: int = 1024
    num_layers: int = 16
    num_heads: int = 16
    intermediate_size: Optional[int] = None  # default 4 * hidden_size
    num_quantizers: int = 12
    codebook_size: int = 1024  # acoustic codes per RVQ layer
    cond_codebook_size: int = 8192  # semantic vocabulary
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    predict_layer_1: bool = True  # training: whether layer 0 is ever the predicted layer
    prompt_prob: float = 0.85
    # RVQ layers of the acoustic prompt the network embeds (None: num_quantizers, as the
    # official models). A 1-layer model with prompt_quantizers = 8 predicts layer 0 while
    # seeing the prompt's full codes, so it keeps a voice as well as the full model does.
    prompt_quantizers: Optional[int] = None
    # frame phones (an extension for small models, off in every official checkpoint, as
    # Stage1Config.frame_phones): every frame's condition also gets the embedding of the phone
    # it belongs to, when the request has a transcript (TTS); the training objective aligns the
    # shards' phones to the semantic ids by the model's own alignment table
    frame_phones: bool = False
    phone_vocab_size: int = 1024
    phone_pad_id: int = 1023
    # training with frame_phones: probability that a sample gets no frame phones at all (the
    # tasks without a transcript: VC, SE, TSE), and that its prompt frames lose theirs
    phone_drop: float = 0.3
    prompt_phone_drop: float = 0.15

    def __post_init__(self):
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        for name in ("phone_drop", "prompt_phone_drop"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        if not 0 <= self.phone_pad_id < self.phone_vocab_size:
            raise ConfigError(f"phone_pad_id {self.phone_pad_id} is outside the phone vocabulary ({self.phone_vocab_size})")
        if self.prompt_quantizers is not None and not (
            isinstance(self.prompt_quantizers, int) and self.prompt_quantizers >= self.num_quantizers
        ):
            raise ConfigError(
                f"prompt_quantizers must be an integer >= num_quantizers ({self.num_quantizers}), "
                f"got {self.prompt_quantizers!r}"
            )
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def prompt_layers(self) -> int:
        """How many RVQ layers of the acoustic prompt the network embeds."""
        return self.num_quantizers if self.prompt_quantizers is None else self.prompt_quantizers


@dataclass
class SemanticCodecConfig:
    """RepCodec-style VQ over normalised SSL features (one factorized VQ)."""

    codebook_size: int = 8192
    hidden_size: int = 1024  # SSL feature size
    codebook_dim: int = 8
    vocos_dim: int = 384
    vocos_intermediate_dim: int = 2048
    vocos_num_layers: int = 12
    num_quantizers: int = 1
    # training only
    commitment: float = 0.15
    codebook_loss_weight: float = 1.0
    quantizer_dropout: float = 0.0


@dataclass
class AcousticEncoderConfig:
    """Acoustic codec encoder, 24 kHz waveform -> latent at sample_rate / prod(strides).

    ``frontend`` "conv" is the official DAC-style convolutional encoder (``d_model``,
    ``strides``). "mel" (small presets) reads a log-mel spectrogram instead: ``n_mels`` bins of
    an ``mel_n_fft``-point STFT every hop / ``mel_stack`` samples, ``mel_stack`` frames stacked
    into one codec frame, then a ConvNeXt stack (``mel_dim``, ``mel_intermediate_dim``,
    ``mel_layers``); it learns far faster than a waveform encoder on little data and compute.
    """

    d_model: int = 96
    strides: tuple = (3, 4, 5, 8)
    out_channels: int = 256
    sample_rate: int = 24000
    frontend: str = "conv"
    n_mels: int = 80
    mel_n_fft: int = 1024
    mel_stack: int = 2
    mel_dim: int = 256
    mel_intermediate_dim: int = 768
    mel_layers: int = 4

    def __post_init__(self):
        self.strides = tuple(int(s) for s in self.strides)
        if self.frontend not in ("conv", "mel"):
            raise ConfigError(f"acoustic encoder frontend must be 'conv' or 'mel', got {self.frontend!r}")
        if self.frontend == "mel":
            if self.mel_stack < 1 or self.hop_length % self.mel_stack:
                raise ConfigError(f"mel_stack {self.mel_stack} must divide the hop {self.hop_length}")
            if self.mel_n_fft < self.hop_length // self.mel_stack:
                raise ConfigError(f"mel_n_fft {self.mel_n_fft} is shorter than the mel hop {self.hop_length // self.mel_stack}")

    @property
    def hop_length(self) -> int:
        h = 1
        for s in self.strides:
            h *= s
        return h


@dataclass
class AcousticDecoderConfig:
    """Residual factorized VQ + Vocos backbone + iSTFT head."""

    in_channels: int = 256
    num_quantizers: int = 12
    codebook_size: int = 1024
    codebook_dim: int = 8
    vocos_dim: int = 512
    vocos_intermediate_dim: int = 4096
    vocos_num_layers: int = 30
    n_fft: int = 1920
    hop_size: int = 480
    padding: str = "same"
    sample_rate: int = 24000
    # training only
    commitment: float = 0.25
    codebook_loss_weight: float = 1.0
    quantizer_dropout: float = 0.5


@dataclass
class SSLConfig:
    """w2v-BERT 2.0 feature front end (transformers) and its normalisation statistics."""

    model_id: str = "facebook/w2v-bert-2.0"
    hidden_state_index: int = 17
    hidden_size: int = 1024
    sample_rate: int = 16000
    stats: Optional[str] = "official"  # "official", a path to a .pt/.npz/dir of .npy, or None
    # When set, a Wav2Vec2BertConfig built from these fields replaces the Hub model (tiny
    # models, tests); weights then come from a local directory or are random.
    model_config: Optional[dict] = None


CONFIG_CLASSES = {
    "Stage1Config": Stage1Config,
    "S2AConfig": S2AConfig,
    "SemanticCodecConfig": SemanticCodecConfig,
    "AcousticEncoderConfig": AcousticEncoderConfig,
    "AcousticDecoderConfig": AcousticDecoderConfig,
    "SSLConfig": SSLConfig,
}

# configs defined next to their networks, imported on first use (avoids import cycles)
LAZY_CONFIG_CLASSES = {"VisualEncoderConfig": "metis_speech.models.visual:VisualEncoderConfig"}


def config_class(name: str) -> type:
    if name in CONFIG_CLASSES:
        return CONFIG_CLASSES[name]
    if name in LAZY_CONFIG_CLASSES:
        import importlib

        module, cls = LAZY_CONFIG_CLASSES[name].split(":")
        return getattr(importlib.import_module(module), cls)
    raise ConfigError(f"unknown config type {name!r}; known: {sorted(CONFIG_CLASSES) + sorted(LAZY_CONFIG_CLASSES)}")


AnyConfig = Union[
    Stage1Config, S2AConfig, SemanticCodecConfig, AcousticEncoderConfig, AcousticDecoderConfig, SSLConfig
]


def config_to_dict(cfg: AnyConfig) -> dict:
    """``{"type": ClassName, **fields}`` (tuples become lists)."""
    d = dataclasses.asdict(cfg)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return {"type": type(cfg).__name__, **d}


def config_from_dict(d: dict, cls: Optional[type] = None) -> AnyConfig:
    d = dict(d)
    type_name = d.pop("type", None)
    if cls is None:
        cls = config_class(type_name)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {unknown}")
    return cls(**d)


def list_presets() -> list:
    return sorted(
        p.name[:-5] for p in resources.files("metis_speech.presets").iterdir() if p.name.endswith(".json")
    )


def _read_preset(name: str) -> dict:
    path = resources.files("metis_speech.presets") / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {list_presets()}")
    return json.loads(path.read_text())


def load_preset(preset: str, component: str) -> AnyConfig:
    """Config of ``component`` (e.g. ``"stage1_tts"``, ``"s2a_full"``) in ``preset``."""
    data = _read_preset(preset)
    if component not in data:
        raise ConfigError(
            f"preset {preset!r} has no component {component!r}; available: {sorted(data)}"
        )
    return config_from_dict(data[component])


def preset_components(preset: str) -> list:
    return sorted(_read_preset(preset))


def save_config(cfg: AnyConfig, path: Union[str, Path]) -> None:
    """Write a config as JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
    path = Path(path)
    d = config_to_dict(cfg)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        path.write_text(yaml.safe_dump(d, sort_keys=False))
    else:
        path.write_text(json.dumps(d, indent=2) + "\n")


def load_config(path: Union[str, Path], cls: Optional[type] = None) -> AnyConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes one clear line
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields")
    try:
        return config_from_dict(d, cls)
    except (TypeError, ConfigError) as e:
        raise ConfigError(f"{path}: {e}") from None
