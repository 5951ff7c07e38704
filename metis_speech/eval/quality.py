"""Speech quality metrics: SI-SDR, wide-band PESQ, STOI / ESTOI and DNSMOS.

Every function takes float (S,) waveforms at ``sample_rate`` (16 kHz everywhere in the
harness). Intrusive metrics (SI-SDR, PESQ, STOI) compare an estimate with a clean,
time-aligned reference; the two are trimmed to their common length. DNSMOS is
non-intrusive.

Backends are imported only when used: ``pesq``, ``pystoi``, ``speechmos`` + ``onnxruntime``.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from . import dsp
from .backends import need

__all__ = ["si_sdr", "pesq_wb", "stoi", "DNSMOS", "dnsmos", "PESQ_MAX"]

PESQ_MAX = 4.644  # the highest score wide-band PESQ (P.862.2) can give
SI_SDR_EPS = 1e-10


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019); both signals are made zero-mean.

    Identical signals give a very large value (≈ 10·log10(power / 1e-10), above 90 dB)
    rather than infinity, so that means and CSV files stay finite.
    """
    est, ref = dsp.align(np.asarray(estimate, np.float64), np.asarray(reference, np.float64))
    est = est - est.mean()
    ref = ref - ref.mean()
    alpha = float(est @ ref) / (float(ref @ ref) + SI_SDR_EPS)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((target @ target + SI_SDR_EPS) / (noise @ noise + SI_SDR_EPS)))


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = 16000) -> float:
    """Wide-band PESQ (ITU-T P.862.2), -0.5 .. 4.64; NaN when PESQ finds no speech."""
    if sample_rate != 16000:
        raise ValueError("wide-band PESQ needs 16 kHz audio")
    pesq = need("pesq", "pesq", "PESQ")
    ref, deg = dsp.align(np.asarray(reference, np.float32), np.asarray(degraded, np.float32))
    if not np.any(ref) or not np.any(deg):
        return float("nan")  # PESQ normalises by the peak: a silent signal has no score
    try:
        return float(pesq.pesq(sample_rate, ref, deg, "wb"))
    except Exception:  # noqa: BLE001 - cypesq.NoUtterancesError, BufferTooShortError
        return float("nan")


def stoi(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = 16000, extended: bool = False) -> float:
    """Short-time objective intelligibility (Taal et al., 2011), 0..1; ``extended`` gives ESTOI."""
    pystoi = need("pystoi", "pystoi", "STOI")
    ref, deg = dsp.align(np.asarray(reference, np.float64), np.asarray(degraded, np.float64))
    return float(pystoi.stoi(ref, deg, sample_rate, extended=extended))


# -- DNSMOS ---------------------------------------------------------------------------------

# Polynomials that map the raw network outputs to MOS (DNS-Challenge dnsmos_local.py).
_POLY = {
    "sig": np.poly1d([-0.08397278, 1.22083953, 0.0052439]),
    "bak": np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
    "ovrl": np.poly1d([-0.06766283, 1.11546468, 0.04602535]),
}
_POLY_PERSONALIZED = {
    "sig": np.poly1d([-0.01019296, 0.02751166, 1.19576786, -0.24348726]),
    "bak": np.poly1d([-0.04976499, 0.44276479, -0.1644611, 0.96883132]),
    "ovrl": np.poly1d([-0.00533021, 0.005101, 1.18058466, -0.11236046]),
}


class DNSMOS:
    """DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS (Reddy et al., 2022), 16 kHz input.

    Runs the ONNX models bundled in the ``speechmos`` package with the procedure of the
    DNS-Challenge ``dnsmos_local.py``: clips shorter than 9.01 s are tiled, longer ones are
    scored in 9.01 s windows with a 1 s hop and averaged.
    """

    SR = 16000
    INPUT_LENGTH = 9.01

    def __init__(self, personalized: bool = False, threads: Optional[int] = None):
        """``threads``: onnxruntime intra-op threads (default 1)."""
        ort = need("onnxruntime", "onnxruntime", "DNSMOS")
        spec = importlib.util.find_spec("speechmos")
        if spec is None or spec.origin is None:
            need("speechmos", "speechmos", "DNSMOS")  # raises the one-line message
        base = Path(spec.origin).parent
        primary = base / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
        p808 = base / "dnsmos_models" / "model_v8.onnx"
        opts = ort.SessionOptions()
        # One thread by default: a 9 s window takes ~0.3 s on one core, and on a shared
        # machine more intra-op threads were measured slower, not faster.
        opts.intra_op_num_threads = threads or 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.primary = ort.InferenceSession(str(primary), opts, providers=providers)
        self.p808 = ort.InferenceSession(str(p808), opts, providers=providers)
        self.poly = _POLY_PERSONALIZED if personalized else _POLY

    def _p808_features(self, seg: np.ndarray) -> np.ndarray:
        mel = dsp.melspectrogram(seg[:-160], self.SR, n_fft=321, hop_length=160, n_mels=120)
        return ((dsp.power_to_db(mel) + 40) / 40).T.astype(np.float32)  # (T, 120)

    def __call__(self, wav: np.ndarray) -> Dict[str, float]:
        """(S,) 16 kHz audio -> {"sig", "bak", "ovrl", "p808"}."""
        audio = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
        if audio.size == 0 or not np.any(audio):
            return {k: float("nan") for k in ("sig", "bak", "ovrl", "p808")}
        len_samples = int(self.INPUT_LENGTH * self.SR)
        while len(audio) < len_samples:
            audio = np.concatenate([audio, audio])
        num_hops = int(np.floor(len(audio) / self.SR) - self.INPUT_LENGTH) + 1
        scores = {k: [] for k in ("sig", "bak", "ovrl", "p808")}
        for idx in range(num_hops):
            seg = audio[int(idx * self.SR) : int((idx + self.INPUT_LENGTH) * self.SR)]
            if len(seg) < len_samples:
                continue
            p808 = self.p808.run(None, {"input_1": self._p808_features(seg)[None]})[0][0][0]
            sig, bak, ovrl = self.primary.run(None, {"input_1": seg[None, :]})[0][0]
            scores["sig"].append(self.poly["sig"](sig))
            scores["bak"].append(self.poly["bak"](bak))
            scores["ovrl"].append(self.poly["ovrl"](ovrl))
            scores["p808"].append(p808)
        return {k: float(np.mean(v)) for k, v in scores.items()}


@lru_cache(maxsize=2)
def _dnsmos_model(personalized: bool = False) -> DNSMOS:
    return DNSMOS(personalized=personalized)


def dnsmos(wav: np.ndarray, sample_rate: int = 16000, personalized: bool = False) -> Dict[str, float]:
    """DNSMOS of (S,) audio -> {"sig", "bak", "ovrl", "p808"} (model loaded once per process)."""
    if sample_rate != DNSMOS.SR:
        from ..audio import resample

        wav = resample(wav, sample_rate, DNSMOS.SR)
    return _dnsmos_model(personalized)(wav)
