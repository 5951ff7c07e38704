"""Speaker embeddings and speaker similarity (SIM): cosine of output vs prompt embeddings.

- ``resemblyzer`` (default, offline): the GE2E d-vector encoder bundled in the
  ``resemblyzer`` wheel (Wan et al., 2018). Its own preprocessing is kept (volume
  normalisation to -30 dBFS, webrtcvad silence trimming, 1.6 s partials at 1.3 per
  second, averaged and L2-normalised); only the mel spectrogram is computed with
  :mod:`.dsp` instead of librosa (same values, no numba compile).
- ``wavlm``: a WavLM x-vector model through ``transformers`` (``WavLMForXVector``),
  e.g. ``microsoft/wavlm-base-plus-sv`` or a local fine-tuned WavLM-large, given with
  ``--sv-model``. Published evaluations (Seed-TTS-eval, Metis) use WavLM-large + ECAPA-TDNN
  from the UniSpeech repository; a ``transformers`` export of such a model plugs in here.

Embeddings are (D,) unit vectors; SIM is their dot product, in [-1, 1].
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Optional

import numpy as np

from . import dsp
from .backends import EvalError, check_local, load_pretrained, need

__all__ = ["SV_BACKENDS", "ResemblyzerSV", "WavLMSV", "get_speaker_encoder", "speaker_embedding", "speaker_similarity"]

SR = 16000


class ResemblyzerSV:
    """GE2E speaker encoder from ``resemblyzer`` -> 256-d embedding."""

    name = "resemblyzer"

    def __init__(self, model: Optional[str] = None, device: str = "cpu"):
        with warnings.catch_warnings():  # webrtcvad imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            rz = need("resemblyzer", "resemblyzer", "speaker similarity (resemblyzer)")
        self.audio = need("resemblyzer.audio", "resemblyzer", "speaker similarity (resemblyzer)")
        self.hp = need("resemblyzer.hparams", "resemblyzer", "speaker similarity (resemblyzer)")
        self.encoder = rz.VoiceEncoder(device=device, verbose=False, weights_fpath=model)
        self.encoder.eval()

    def _preprocess(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, np.float64)
        if not np.any(wav):
            raise EvalError("cannot embed a silent waveform")
        wav = self.audio.normalize_volume(wav, self.hp.audio_norm_target_dBFS, increase_only=True)
        trimmed = self.audio.trim_long_silences(np.clip(wav, -1.0, 1.0))
        # webrtcvad may find no speech at all (noise, very short clips): keep the whole clip then
        return trimmed if len(trimmed) >= SR // 4 else wav

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        import torch

        wav = self._preprocess(wav).astype(np.float32)
        enc = self.encoder
        wav_slices, mel_slices = enc.compute_partial_slices(len(wav), rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop >= len(wav):
            wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
        hp = self.hp
        mel = dsp.melspectrogram(
            wav,
            SR,
            n_fft=int(SR * hp.mel_window_length / 1000),
            hop_length=int(SR * hp.mel_window_step / 1000),
            n_mels=hp.mel_n_channels,
        ).T  # (T, 40)
        mels = np.stack([mel[s] for s in mel_slices])  # (P, 160, 40)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 3-layer LSTM on a few 1.6 s partials: one thread is fastest
        try:
            with torch.no_grad():
                partial = enc(torch.from_numpy(mels).to(enc.device)).cpu().numpy()
        finally:
            torch.set_num_threads(threads)
        emb = partial.mean(axis=0)
        return emb / np.linalg.norm(emb)


class WavLMSV:
    """WavLM x-vector speaker verification model via ``transformers`` -> unit embedding."""

    name = "wavlm"
    default_model = "microsoft/wavlm-base-plus-sv"

    def __init__(self, model: Optional[str] = None, device: str = "cpu"):
        model = model or self.default_model
        what = "WavLM speaker model"
        check_local(model, what)  # before the slow transformers import
        need("transformers", "transformers", "speaker similarity (wavlm)")
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.extractor = load_pretrained(AutoFeatureExtractor.from_pretrained, model, what, "--sv-model")
        self.model = load_pretrained(WavLMForXVector.from_pretrained, model, what, "--sv-model").to(device).eval()
        self.device = device

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        import torch

        inputs = self.extractor(np.asarray(wav, np.float32), sampling_rate=SR, return_tensors="pt")
        with torch.no_grad():
            emb = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings[0].cpu().numpy()
        return emb / np.linalg.norm(emb)


SV_BACKENDS = {"resemblyzer": ResemblyzerSV, "wavlm": WavLMSV}


@lru_cache(maxsize=2)
def get_speaker_encoder(name: str = "resemblyzer", model: Optional[str] = None, device: str = "cpu"):
    """A loaded speaker encoder (cached per process): call it with 16 kHz (S,) audio."""
    if name not in SV_BACKENDS:
        raise EvalError(f"unknown speaker-similarity backend {name!r}; choose one of {', '.join(SV_BACKENDS)}")
    return SV_BACKENDS[name](model=model, device=device)


def speaker_embedding(wav: np.ndarray, sample_rate: int = SR, backend: str = "resemblyzer", **kwargs) -> np.ndarray:
    """(D,) unit speaker embedding of (S,) audio."""
    if sample_rate != SR:
        from ..audio import resample

        wav = resample(wav, sample_rate, SR)
    return get_speaker_encoder(backend, **kwargs)(wav)


def speaker_similarity(a: np.ndarray, b: np.ndarray, sample_rate: int = SR, backend: str = "resemblyzer", **kwargs) -> float:
    """Cosine similarity of the speaker embeddings of two (S,) waveforms."""
    ea = speaker_embedding(a, sample_rate, backend, **kwargs)
    eb = speaker_embedding(b, sample_rate, backend, **kwargs)
    return float(np.dot(ea, eb))
