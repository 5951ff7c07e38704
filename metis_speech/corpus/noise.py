"""Synthetic noises, babble, simulated rooms and mixing at a given SNR.

Every generator takes a ``numpy.random.Generator`` and a length in samples and returns
(S,) float32 at :data:`~metis_speech.corpus.config.SAMPLE_RATE`, RMS-normalised to 0.1.

Noise types seen in training: ``white``, ``pink``, ``brown`` (stationary), ``tones``,
``bursts``, ``clicks``, ``modulated``, ``babble`` (non-stationary). Held out for the test
sets only: ``hum`` (mains buzz), ``siren`` (swept tone) and ``crackle``.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import SAMPLE_RATE

__all__ = [
    "TRAIN_NOISE_TYPES",
    "TEST_ONLY_NOISE_TYPES",
    "make_noise",
    "make_babble",
    "sample_room",
    "room_rir",
    "reverberate",
    "mix_at_snr",
    "snr_db",
]

SR = SAMPLE_RATE
TRAIN_NOISE_TYPES: Tuple[str, ...] = ("white", "pink", "brown", "tones", "bursts", "clicks", "modulated", "babble")
TEST_ONLY_NOISE_TYPES: Tuple[str, ...] = ("hum", "siren", "crackle")


def _unit(x: np.ndarray, rms: float = 0.1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    level = np.sqrt(np.mean(x**2))
    return (x * (rms / level) if level > 0 else x).astype(np.float32)


def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    spec *= np.maximum(f, 20.0) ** (-exponent / 2)
    return np.fft.irfft(spec, n)


def _envelope(rng: np.random.Generator, n: int, rate_hz: float, min_gain: float) -> np.ndarray:
    """A smooth random gain curve in [min_gain, 1] changing about rate_hz times a second."""
    knots = max(2, int(n / SR * rate_hz) + 2)
    y = rng.uniform(min_gain, 1.0, knots)
    return np.interp(np.arange(n), np.linspace(0, n - 1, knots), y)


def _tones(rng, n):
    t = np.arange(n) / SR
    out = 0.03 * rng.standard_normal(n)
    for _ in range(rng.integers(1, 4)):
        f = rng.uniform(150, 3000)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * _envelope(rng, n, 1.0, 0.0)
    return out


def _bursts(rng, n):
    gate = np.zeros(n)
    pos = 0
    while pos < n:
        pos += int(rng.uniform(0.1, 0.8) * SR)
        length = int(rng.uniform(0.05, 0.5) * SR)
        gate[pos : pos + length] = rng.uniform(0.3, 1.0)
    if not gate.any():  # a clip shorter than the first gap still gets one burst
        pos = int(rng.integers(0, max(1, n // 2)))
        gate[pos : pos + max(1, n // 4)] = rng.uniform(0.3, 1.0)
    ramp = np.hanning(int(0.01 * SR))
    gate = np.convolve(gate, ramp / ramp.sum(), mode="same")
    return _colored(rng, n, rng.choice([0.0, 1.0])) * gate


def _impulses(rng, n, rate_hz, decay_s, fmin, fmax):
    out = np.zeros(n)
    count = rng.poisson(rate_hz * n / SR)
    for pos in rng.integers(0, n, count):
        length = min(int(decay_s * 6 * SR), n - pos)
        if length <= 0:
            continue
        tt = np.arange(length) / SR
        f = rng.uniform(fmin, fmax)
        out[pos : pos + length] += rng.uniform(0.2, 1.0) * np.exp(-tt / decay_s) * np.sin(2 * np.pi * f * tt)
    return out


def _clicks(rng, n):
    return _impulses(rng, n, rate_hz=rng.uniform(2, 8), decay_s=0.004, fmin=800, fmax=5000) + 0.002 * rng.standard_normal(n)


def _modulated(rng, n):
    t = np.arange(n) / SR
    rate = rng.uniform(0.5, 8.0)
    return _colored(rng, n, 1.0) * (0.55 + 0.45 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))


def _hum(rng, n):
    t = np.arange(n) / SR
    base = rng.choice([50.0, 60.0])
    out = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
    return out + 0.02 * rng.standard_normal(n)


def _siren(rng, n):
    t = np.arange(n) / SR
    lo, hi, rate = rng.uniform(500, 800), rng.uniform(1100, 1600), rng.uniform(0.2, 1.0)
    freq = lo + (hi - lo) * 0.5 * (1 + np.sin(2 * np.pi * rate * t))
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.01 * rng.standard_normal(n)


def _crackle(rng, n):
    out = np.zeros(n)
    count = rng.poisson(rng.uniform(80, 300) * n / SR)
    out[rng.integers(0, n, count)] = rng.standard_normal(count)
    return np.convolve(out, [1.0, -0.9], mode="same") + 0.01 * rng.standard_normal(n)


_GENERATORS: Dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "white": lambda rng, n: rng.standard_normal(n),
    "pink": lambda rng, n: _colored(rng, n, 1.0),
    "brown": lambda rng, n: _colored(rng, n, 2.0),
    "tones": _tones,
    "bursts": _bursts,
    "clicks": _clicks,
    "modulated": _modulated,
    "hum": _hum,
    "siren": _siren,
    "crackle": _crackle,
}


def make_noise(kind: str, n: int, rng: np.random.Generator, babble_voices: Sequence[str] = (), babble_texts: Sequence[str] = ()) -> np.ndarray:
    """(n,) noise of ``kind`` (any of TRAIN_NOISE_TYPES + TEST_ONLY_NOISE_TYPES)."""
    if kind == "babble":
        return make_babble(n, rng, babble_voices, babble_texts)
    if kind not in _GENERATORS:
        raise ValueError(f"unknown noise type {kind!r}")
    return _unit(_GENERATORS[kind](rng, n))


def make_babble(n: int, rng: np.random.Generator, voices: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """Several espeak-ng talkers (``voices``) reading ``texts`` on top of each other.

    Each talker gets a random rate and pitch and starts at a random offset; its speech is
    looped to fill ``n`` samples. Uses len(texts) // talkers sentences per talker."""
    from ..audio import resample
    from .synth import espeak_synth, normalize_level

    talkers = int(rng.integers(3, 7))
    per = max(1, len(texts) // talkers)
    out = np.zeros(n, dtype=np.float64)
    for k in range(talkers):
        voice = voices[int(rng.integers(len(voices)))]
        parts = []
        for text in texts[k * per : (k + 1) * per] or texts[:1]:
            wav, sr, _ = espeak_synth(voice, text, rate=int(rng.integers(140, 200)), pitch=int(rng.integers(25, 75)))
            parts.append(resample(wav, sr, SR))
        talk = normalize_level(np.concatenate(parts), SR)
        reps = int(np.ceil((n + len(talk)) / len(talk)))
        loop = np.tile(talk, reps)
        start = int(rng.integers(len(talk)))
        out += loop[start : start + n] * rng.uniform(0.6, 1.0)
    return _unit(out)


# --------------------------------------------------------------------------- rooms
def sample_room(rng: np.random.Generator, rt60_range: Tuple[float, float] = (0.2, 0.8)) -> Dict[str, object]:
    """A shoebox room: dims (m), RT60 (s), source and microphone positions >= 0.5 m from walls."""
    dims = [float(rng.uniform(3.0, 9.0)), float(rng.uniform(2.5, 7.0)), float(rng.uniform(2.4, 3.5))]
    pos = lambda: [float(rng.uniform(0.5, d - 0.5)) if i < 2 else float(rng.uniform(1.0, 1.9)) for i, d in enumerate(dims)]
    src, mic = pos(), pos()
    while np.linalg.norm(np.subtract(src, mic)) < 0.7:
        mic = pos()
    room = {"dims": dims, "rt60": float(rng.uniform(*rt60_range)), "source": src, "mic": mic}
    return {k: ([round(x, 3) for x in v] if isinstance(v, list) else round(v, 3)) for k, v in room.items()}


def room_rir(room: Dict[str, object], max_order_cap: int = 35) -> np.ndarray:
    """Room impulse response (S,) at 24 kHz by the image-source method (pyroomacoustics),
    shifted so the direct path is at sample 0 and scaled to a unit direct-path peak."""
    import pyroomacoustics as pra

    dims = list(room["dims"])
    e_abs, max_order = pra.inverse_sabine(float(room["rt60"]), dims)
    shoebox = pra.ShoeBox(dims, fs=SR, materials=pra.Material(e_abs), max_order=min(max_order, max_order_cap))
    shoebox.add_source(list(room["source"]))
    shoebox.add_microphone(list(room["mic"]))
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    peak = int(np.argmax(np.abs(rir)))
    rir = rir[max(0, peak - 2) :]  # keep the direct path's fractional-delay filter centred
    return (rir / np.abs(rir).max()).astype(np.float32)


def reverberate(clean: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """clean (S,) convolved with rir, cut to S samples (time-aligned with the dry signal)."""
    from scipy.signal import fftconvolve

    return fftconvolve(clean.astype(np.float64), rir.astype(np.float64))[: len(clean)].astype(np.float32)


def fit_length(x: np.ndarray, n: int, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Loop or cut ``x`` to ``n`` samples (from a random start when rng is given)."""
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1)) if rng is not None else 0
        return x[start : start + n]
    return np.tile(x, int(np.ceil(n / len(x))))[:n]


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """10 log10(sum signal**2 / sum noise**2)."""
    return float(10 * np.log10(np.sum(np.square(signal, dtype=np.float64)) / max(np.sum(np.square(noise, dtype=np.float64)), 1e-20)))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr: float, peak: float = 0.9) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale ``noise`` so that signal/noise energy = ``snr`` dB over the whole clip, add.

    Returns (mixture, signal, noise), all scaled by one common gain so the mixture peak is
    at most ``peak`` (the SNR is unchanged by that gain)."""
    signal = signal.astype(np.float64)
    noise = noise.astype(np.float64)
    gain = np.sqrt(np.sum(signal**2) / (np.sum(noise**2) * 10 ** (snr / 10) + 1e-20))
    noise = noise * gain
    mix = signal + noise
    g = min(1.0, peak / max(np.abs(mix).max(), 1e-9))
    return (mix * g).astype(np.float32), (signal * g).astype(np.float32), (noise * g).astype(np.float32)
