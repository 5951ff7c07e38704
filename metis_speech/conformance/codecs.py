"""Conformance runners for the codec kinds: ``semantic_codec`` and ``acoustic_codec``.

Each builds our module from the manifest's ``constructor.cfg`` (reference argument names
mapped onto our config dataclasses), loads the case's weight files strictly and recomputes
every output named in the manifest, ``dbg_*`` intermediates included (parity README §8, §9).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Iterable

import torch

from ..config import AcousticDecoderConfig, AcousticEncoderConfig, SemanticCodecConfig
from ..errors import MetisError
from . import register

# reference arguments that have no effect on the fvq + vocos path, or only on training
_DECODER_UNUSED = {
    "upsample_initial_channel",
    "up_ratios",
    "codebook_type",
    "kmeans_init",
    "kmeans_iters",
    "decay",
    "eps",
    "threshold_ema_dead_code",
    "weight_init",
}
_DECODER_TRAINING = {"quantizer_dropout", "commitment", "codebook_loss_weight"}
# reference arguments we support only at one value
_DECODER_REQUIRED = {"quantizer_type": "fvq", "use_vocos": True, "use_l2_normlize": True}
_ENCODER_REQUIRED = {"use_tanh": False}


def _config(cls, ref: dict, renames: Dict[str, str] = None, ignore: Iterable[str] = (), required: dict = None):
    """Map a reference constructor dict onto config dataclass ``cls``; unknown keys are errors."""
    renames = renames or {}
    required = required or {}
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs, unknown = {}, []
    for key, value in ref.items():
        if key in required:
            if value != required[key]:
                raise MetisError(f"{cls.__name__}: reference setting {key}={value!r} is not supported (only {required[key]!r})")
            continue
        if key in ignore:
            continue
        name = renames.get(key, key)
        if name in fields:
            kwargs[name] = value
        else:
            unknown.append(key)
    if unknown:
        raise MetisError(f"{cls.__name__}: no field for reference setting(s) {sorted(unknown)}")
    return cls(**kwargs)


def _load(module: torch.nn.Module, path: Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)), strict=True)
    return module.eval()


@register("semantic_codec")
def run_semantic_codec(name: str, case: dict, root: Path, inputs: dict) -> Dict[str, torch.Tensor]:
    from ..models.semantic_codec import SemanticCodec

    cfg = _config(SemanticCodecConfig, case["constructor"]["cfg"])
    codec = _load(SemanticCodec(cfg), root / case["weights"][0])
    features = inputs["features"]
    with torch.no_grad():
        ids, quantized = codec.quantize(features)
        encoded = codec.encode(features)  # (B, H, T)
        z_e = codec.quantizer.quantizers[0].in_project(encoded)
    return {"indices": ids, "quantized": quantized, "dbg_encoder_out": encoded.transpose(1, 2), "dbg_z_e": z_e}


def acoustic_configs(ref: dict):
    """(AcousticEncoderConfig, AcousticDecoderConfig, decoder training kwargs) from a reference cfg."""
    enc = _config(
        AcousticEncoderConfig, ref["encoder"], renames={"up_ratios": "strides"}, required=_ENCODER_REQUIRED
    )
    dec_ref = dict(ref["decoder"])
    training = {k: dec_ref.pop(k) for k in list(dec_ref) if k in _DECODER_TRAINING}
    dec = _config(AcousticDecoderConfig, dec_ref, ignore=_DECODER_UNUSED, required=_DECODER_REQUIRED)
    return enc, dec, training


@register("acoustic_codec")
def run_acoustic_codec(name: str, case: dict, root: Path, inputs: dict) -> Dict[str, torch.Tensor]:
    from ..models.acoustic_codec import AcousticCodec

    enc_cfg, dec_cfg, training = acoustic_configs(case["constructor"]["cfg"])
    codec = AcousticCodec(enc_cfg, dec_cfg, **training)
    enc_file, dec_file = case["weights"]
    _load(codec.encoder, root / enc_file)
    _load(codec.decoder, root / dec_file)
    wav = inputs["wav_24k"]
    with torch.no_grad():
        latent = codec.encoder(wav)
        rvq = codec.decoder.quantizer(latent)
        codes = codec.encode(wav)
        vq_emb = codec.decoder.codes_to_emb(codes)
        wav_out = codec.decoder.decode_emb(vq_emb)
    return {
        "latent": latent,
        "codes": codes,
        "quantized_latent": rvq.quantized,
        "vq_emb": vq_emb,
        "wav_out": wav_out,
    }
