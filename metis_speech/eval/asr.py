"""ASR backends that turn generated speech into a transcript for WER / CER.

- ``pocketsphinx`` (default, offline): CMU PocketSphinx 5 with its bundled US-English
  acoustic model, language model and dictionary. Weak in absolute terms (WER 0.1-0.2 on
  clean synthetic voices) but deterministic and available everywhere; use it as a
  relative measure between systems.
- ``whisper``: Whisper-large-v3 through the ``transformers`` ASR pipeline, the backend of
  published English evaluations (Seed-TTS-eval, Metis). Needs the weights locally
  (``--asr-model`` pointing at a folder, or the Hub cache).
- ``paraformer``: Paraformer-zh through ``funasr``, the standard for Chinese (CER).

All take (S,) float audio at 16 kHz and return a plain string.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np

from .backends import BackendMissingError, EvalError, check_local, load_pretrained, need

__all__ = ["ASR_BACKENDS", "PocketSphinxASR", "WhisperASR", "ParaformerASR", "get_asr", "transcribe"]

SR = 16000
SILENCE = 1e-4  # peak below this (about -80 dBFS) is digital silence: an empty transcript


class _ASR:
    """Base: silent input gives "" (recognisers hallucinate words on digital silence)."""

    def __call__(self, wav: np.ndarray) -> str:
        wav = np.asarray(wav, np.float32)
        if wav.size == 0 or float(np.abs(wav).max()) < SILENCE:
            return ""
        return self._transcribe(wav)

    def _transcribe(self, wav: np.ndarray) -> str:
        raise NotImplementedError


class PocketSphinxASR(_ASR):
    """Offline US-English recogniser (pocketsphinx >= 5, model bundled in the wheel)."""

    name = "pocketsphinx"

    def __init__(self, model: Optional[str] = None, language: str = "en", device: str = "cpu"):
        if not language.startswith("en"):
            raise EvalError(f"pocketsphinx only has an English model; use --asr paraformer or whisper for {language!r}")
        ps = need("pocketsphinx", "pocketsphinx", "WER with the pocketsphinx backend")
        kwargs = {"samprate": SR, "loglevel": "FATAL"}
        if model:  # a folder with a PocketSphinx acoustic model
            kwargs["hmm"] = model
        self.decoder = ps.Decoder(**kwargs)

    def _transcribe(self, wav: np.ndarray) -> str:
        pcm = (np.clip(np.asarray(wav, np.float32), -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, no_search=False, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


class WhisperASR(_ASR):
    """Whisper (default ``openai/whisper-large-v3``) via ``transformers.pipeline``."""

    name = "whisper"
    default_model = "openai/whisper-large-v3"

    def __init__(self, model: Optional[str] = None, language: str = "en", device: str = "cpu"):
        model = model or self.default_model
        what = "Whisper model"
        check_local(model, what)  # before the slow transformers import
        need("transformers", "transformers", "WER with the whisper backend")
        torch = need("torch", "torch", "WER with the whisper backend")
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor, pipeline

        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        processor = load_pretrained(AutoProcessor.from_pretrained, model, what, "--asr-model")
        import transformers

        dtype_kw = {"dtype": dtype} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": dtype}
        net = load_pretrained(lambda m, **kw: AutoModelForSpeechSeq2Seq.from_pretrained(m, **dtype_kw, **kw), model, what, "--asr-model")
        self.pipe = pipeline(
            "automatic-speech-recognition",
            model=net.to(device),
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            device=device,
        )
        self.language = {"en": "english", "zh": "chinese"}.get(language[:2], language)

    def _transcribe(self, wav: np.ndarray) -> str:
        out = self.pipe(
            {"raw": np.asarray(wav, np.float32), "sampling_rate": SR},
            generate_kwargs={"language": self.language, "task": "transcribe"},
            return_timestamps=len(wav) > 30 * SR,
        )
        return out["text"].strip()


class ParaformerASR(_ASR):
    """Paraformer (default ``paraformer-zh``) via ``funasr.AutoModel``."""

    name = "paraformer"
    default_model = "paraformer-zh"

    def __init__(self, model: Optional[str] = None, language: str = "zh", device: str = "cpu"):
        funasr = need("funasr", "funasr", "CER with the paraformer backend")
        try:
            self.model = funasr.AutoModel(model=model or self.default_model, device=device, disable_update=True, disable_pbar=True)
        except Exception as e:  # noqa: BLE001 - funasr raises many kinds on a failed download
            raise BackendMissingError(
                f"Paraformer model {model or self.default_model!r} could not be loaded ({str(e).splitlines()[0][:120]}); "
                "pass --asr-model with a local folder"
            ) from None

    def _transcribe(self, wav: np.ndarray) -> str:
        res = self.model.generate(input=np.asarray(wav, np.float32), disable_pbar=True)
        return str(res[0]["text"]).strip() if res else ""


ASR_BACKENDS = {"pocketsphinx": PocketSphinxASR, "whisper": WhisperASR, "paraformer": ParaformerASR}


@lru_cache(maxsize=4)
def get_asr(name: str = "pocketsphinx", model: Optional[str] = None, language: str = "en", device: str = "cpu"):
    """A loaded ASR backend (cached per process): call it with 16 kHz (S,) audio."""
    if name not in ASR_BACKENDS:
        raise EvalError(f"unknown ASR backend {name!r}; choose one of {', '.join(ASR_BACKENDS)}")
    return ASR_BACKENDS[name](model=model, language=language, device=device)


def transcribe(wav: np.ndarray, sample_rate: int = SR, backend: str = "pocketsphinx", **kwargs) -> str:
    """Transcribe (S,) audio with the named backend."""
    if sample_rate != SR:
        from ..audio import resample

        wav = resample(wav, sample_rate, SR)
    return get_asr(backend, **kwargs)(wav)
