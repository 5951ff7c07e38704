"""Acoustic codec: 24 kHz waveform <-> acoustic ids (T, Q) at sample_rate / hop.

    wav (B, 1, S) --AcousticEncoder (DAC-style convs + Snake)--> latent (B, C, T)
        --residual factorized VQ (AcousticDecoder.quantizer)--> codes (B, T, Q)
    codes --sum_q out_project_q(codebook_q[codes_q])--> (B, C, T)
        --Vocos backbone + iSTFT head--> wav (B, 1, T * hop)

References: DAC (Kumar et al., "High-Fidelity Audio Compression with Improved RVQGAN", 2023)
for the encoder, Vocos for the decoder, MaskGCT (arXiv 2409.00750) for the configuration.
The encoder and decoder are separate official files (``acoustic_codec/model.safetensors``
and ``model_1.safetensors``); the RVQ lives in the decoder. Parameter names follow them
(``block.N...`` for the encoder; ``quantizer.quantizers.N...``, ``model.backbone...``,
``model.head.out``, ``model.head.istft.window`` for the decoder).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple, Optional, Union

import torch
from torch import nn

from ..checkpoint import load_weights
from ..config import AcousticDecoderConfig, AcousticEncoderConfig
from ..dsp import centred_stft
from ..errors import AudioError
from .quantize import rvq_from_config, wn_conv1d
from .vocos import Vocos

__all__ = [
    "Snake",
    "LogMel",
    "ResidualUnit",
    "EncoderBlock",
    "AcousticEncoder",
    "AcousticDecoder",
    "AcousticDecoderOutput",
    "AcousticCodec",
]

SNAKE_EPS = 1e-9
RESIDUAL_DILATIONS = (1, 3, 9)
# training-only loss settings of the reference decoder (they do not change any weight shape)


class Snake(nn.Module):
    """Snake activation x + sin^2(alpha x) / alpha, one alpha per channel. (B, C, S) -> (B, C, S)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + SNAKE_EPS).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    """Snake -> WN conv k7 (dilated, same length) -> Snake -> WN conv k1, plus the input."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake(dim),
            wn_conv1d(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake(dim),
            wn_conv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    """Three residual units (dilations 1, 3, 9) at dim/2 channels, Snake, strided WN conv to dim.

    (B, dim/2, S) -> (B, dim, S / stride)
    """

    def __init__(self, dim: int, stride: int):
        super().__init__()
        half = dim // 2
        self.block = nn.Sequential(
            *[ResidualUnit(half, d) for d in RESIDUAL_DILATIONS],
            Snake(half),
            wn_conv1d(half, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class LogMel(nn.Module):
    """Log-mel front end. wav (B, S) -> (B, M * stack, S // hop): natural-log mel power of a
    centred ``n_fft``-point STFT every hop / stack samples, ``stack`` consecutive frames
    concatenated along channels (frame-major) so that one output frame covers one hop."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, stack: int, n_mels: int):
        super().__init__()
        self.sample_rate, self.n_fft, self.n_mels = sample_rate, n_fft, n_mels
        self.mel_hop, self.stack = hop // stack, stack
        self.register_buffer("window", torch.empty(n_fft), persistent=False)
        self.register_buffer("fb", torch.empty(n_mels, n_fft // 2 + 1), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """(Re)compute the window and mel filters (not stored in checkpoints; see build_empty)."""
        from ..dsp import mel_filterbank

        dev = self.window.device
        self.window = torch.hann_window(self.n_fft, device=dev)
        self.fb = torch.from_numpy(mel_filterbank(self.sample_rate, self.n_fft, self.n_mels)).to(dev)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        t = wav.shape[-1] // (self.mel_hop * self.stack)
        spec = centred_stft(wav.float(), self.n_fft, self.mel_hop, self.window.float())[..., : t * self.stack]  # (B, F, T*stack)
        mel = torch.log(torch.matmul(self.fb.float(), spec.abs().square()).clamp(min=1e-5))  # (B, M, T * stack)
        b, m, _ = mel.shape
        return mel.reshape(b, m, t, self.stack).permute(0, 3, 1, 2).reshape(b, self.stack * m, t)


class AcousticEncoder(nn.Module):
    """Acoustic codec encoder. wav (B, 1, S) or (B, S) -> latent (B, C, S / hop), C = out_channels.

    ``frontend`` "conv" (official, DAC-style): channels d_model, doubled by each strided block,
    then a k3 conv to ``out_channels``. "mel": :class:`LogMel` -> Vocos ConvNeXt backbone ->
    Linear to ``out_channels``.
    """

    def __init__(self, cfg: AcousticEncoderConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.frontend == "mel":
            from .vocos import VocosBackbone

            self.mel = LogMel(cfg.sample_rate, cfg.mel_n_fft, cfg.hop_length, cfg.mel_stack, cfg.n_mels)
            self.backbone = VocosBackbone(cfg.n_mels * cfg.mel_stack, cfg.mel_dim, cfg.mel_intermediate_dim, cfg.mel_layers)
            self.out = nn.Linear(cfg.mel_dim, cfg.out_channels)
            return
        dim = cfg.d_model
        layers = [wn_conv1d(1, dim, kernel_size=7, padding=3)]
        for stride in cfg.strides:
            dim *= 2
            layers.append(EncoderBlock(dim, stride))
        layers += [Snake(dim), wn_conv1d(dim, cfg.out_channels, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 2:
            wav = wav[:, None, :]
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise AudioError(f"expected a mono waveform batch (B, S) or (B, 1, S), got shape {tuple(wav.shape)}")
        if self.cfg.frontend == "mel":  # the log-mel is computed in fp32, the network runs in its own dtype
            mel = self.mel(wav[:, 0]).to(self.out.weight.dtype)
            return self.out(self.backbone(mel)).transpose(1, 2)
        return self.block(wav)


class AcousticDecoderOutput(NamedTuple):
    wav: torch.Tensor  # (B, 1, T * hop)
    quantized: torch.Tensor  # (B, C, T) straight-through RVQ output (decoder input)
    codes: torch.Tensor  # (B, T, Q)
    commit_loss: torch.Tensor  # () summed over stages
    codebook_loss: torch.Tensor  # () summed over stages


class AcousticDecoder(nn.Module):
    """Residual factorized VQ + Vocos (backbone + iSTFT head).

    ``quantize(latent (B, C, T)) -> codes (B, T, Q)``, ``codes_to_emb(codes) -> (B, C, T)``,
    ``decode(codes) -> wav (B, 1, T * hop)``; ``forward(latent)`` is the training path.
    """

    def __init__(
        self,
        cfg: AcousticDecoderConfig,
        commitment: Optional[float] = None,
        codebook_loss_weight: Optional[float] = None,
        quantizer_dropout: Optional[float] = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.quantizer = rvq_from_config(cfg, cfg.in_channels, commitment, codebook_loss_weight, quantizer_dropout)
        self.model = Vocos(
            cfg.in_channels,
            cfg.vocos_dim,
            cfg.vocos_intermediate_dim,
            cfg.vocos_num_layers,
            cfg.n_fft,
            cfg.hop_size,
            cfg.padding,
        )
        nn.init.trunc_normal_(self.model.head.out.weight, std=0.02)
        nn.init.zeros_(self.model.head.out.bias)

    def quantize(self, latent: torch.Tensor, n_quantizers: Optional[int] = None) -> torch.Tensor:
        """latent (B, C, T) -> codes (B, T, Q) int64 (eval-mode quantizer, no dropout)."""
        return self.quantizer.encode(latent, n_quantizers)

    def codes_to_emb(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, Q') -> sum_q out_project_q(codebook_q[codes_q]) (B, C, T), Q' <= Q."""
        return self.quantizer.decode(codes)

    def decode_emb(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (B, C, T) -> wav (B, 1, T * hop)."""
        return self.model(emb)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, Q') -> wav (B, 1, T * hop)."""
        return self.decode_emb(self.codes_to_emb(codes))

    def forward(self, latent: torch.Tensor, generator: Optional[torch.Generator] = None) -> AcousticDecoderOutput:
        """Training path: quantize with straight-through (and quantizer dropout), synthesize."""
        out = self.quantizer(latent, generator=generator)
        wav = self.model(out.quantized)
        return AcousticDecoderOutput(wav, out.quantized, out.ids, out.commit_loss.sum(), out.codebook_loss.sum())


class AcousticCodec(nn.Module):
    """Encoder + decoder pair. ``encode(wav (B, S) or (B, 1, S)) -> codes (B, T, Q)``,
    ``decode(codes) -> wav (B, 1, T * hop)``.

    The waveform must be at the encoder's ``sample_rate``; lengths that are not a multiple
    of the hop are right-padded with zeros to the next multiple.
    """

    def __init__(self, encoder_cfg: AcousticEncoderConfig, decoder_cfg: AcousticDecoderConfig, **decoder_kwargs):
        super().__init__()
        if encoder_cfg.out_channels != decoder_cfg.in_channels:
            raise ValueError(
                f"encoder out_channels {encoder_cfg.out_channels} != decoder in_channels {decoder_cfg.in_channels}"
            )
        if encoder_cfg.hop_length != decoder_cfg.hop_size:
            raise ValueError(
                f"encoder hop {encoder_cfg.hop_length} (product of strides) != decoder hop_size {decoder_cfg.hop_size}"
            )
        if encoder_cfg.sample_rate != decoder_cfg.sample_rate:
            raise ValueError(
                f"encoder sample_rate {encoder_cfg.sample_rate} != decoder sample_rate {decoder_cfg.sample_rate}"
            )
        self.encoder = AcousticEncoder(encoder_cfg)
        self.decoder = AcousticDecoder(decoder_cfg, **decoder_kwargs)

    @property
    def hop_length(self) -> int:
        return self.encoder.hop_length

    @property
    def sample_rate(self) -> int:
        return self.encoder.cfg.sample_rate

    def load_weights(self, encoder_file: Union[str, Path], decoder_file: Union[str, Path]) -> "AcousticCodec":
        """Load the two official files (``model.safetensors``, ``model_1.safetensors``) strictly."""
        load_weights(self.encoder, encoder_file)
        load_weights(self.decoder, decoder_file)
        return self

    @torch.no_grad()
    def encode(
        self, wav: torch.Tensor, sample_rate: Optional[int] = None, n_quantizers: Optional[int] = None
    ) -> torch.Tensor:
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise AudioError(
                f"the acoustic codec expects {self.sample_rate} Hz audio, got {sample_rate} Hz; resample first"
            )
        if wav.shape[-1] == 0:
            raise AudioError("empty waveform: nothing to encode")
        rest = wav.shape[-1] % self.hop_length
        if rest:
            wav = torch.nn.functional.pad(wav, (0, self.hop_length - rest))
        return self.decoder.quantize(self.encoder(wav), n_quantizers)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(codes)
