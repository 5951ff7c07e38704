"""Speed of a system under test: wall time, real-time factor and peak memory.

Two ways to use it::

    m = measure(model.tts, text, prompt)          # calls the function
    print(m.rtf, m.peak_rss_mb, m.result.shape)   # RTF from the returned audio

    with measure(sample_rate=24000) as m:          # or around any block
        wav = model.tts(text, prompt)
        m.set_audio(wav)                           # or m.audio_seconds = 4.2
    print(m.summary())

RTF = wall time / seconds of audio produced (below 1 is faster than real time). Peak
CPU memory is the peak resident set size during the call, sampled every 5 ms from
``/proc/self/statm`` (falling back to ``getrusage``, a process-lifetime peak); peak GPU
memory is ``torch.cuda.max_memory_allocated`` over the call when torch with CUDA is already
imported by the caller (this module never imports torch itself).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np

__all__ = ["Measurement", "measure"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _lifetime_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _cuda():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch
    return None


@dataclass
class Measurement:
    """Result of :func:`measure`; also the context manager itself."""

    sample_rate: Optional[int] = None
    interval_s: float = 0.005
    wall_s: float = float("nan")
    audio_seconds: Optional[float] = None
    peak_rss_mb: float = float("nan")
    start_rss_mb: float = float("nan")
    peak_cuda_mb: Optional[float] = None
    result: Any = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: Optional[threading.Thread] = field(default=None, repr=False)
    _peak: int = field(default=0, repr=False)
    _t0: float = field(default=0.0, repr=False)

    @property
    def rtf(self) -> float:
        """Real-time factor: wall seconds per second of audio (NaN until the audio length is known)."""
        if not self.audio_seconds:
            return float("nan")
        return self.wall_s / self.audio_seconds

    def set_audio(self, wav: Any, sample_rate: Optional[int] = None) -> None:
        """Record the produced audio ((S,) or (..., S) array or tensor) to compute the RTF."""
        sr = sample_rate or self.sample_rate
        if sr is None:
            raise ValueError("set_audio needs a sample_rate (here or in measure(sample_rate=...))")
        self.audio_seconds = int(np.shape(wav)[-1]) / float(sr)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = _rss_bytes()
            if rss is not None and rss > self._peak:
                self._peak = rss

    def __enter__(self) -> "Measurement":
        cuda = _cuda()
        if cuda is not None:
            cuda.cuda.synchronize()
            cuda.cuda.reset_peak_memory_stats()
        rss = _rss_bytes()
        self._peak = rss or 0
        self.start_rss_mb = (rss or _lifetime_peak_bytes()) / 2**20
        self._stop.clear()
        if rss is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        cuda = _cuda()
        if cuda is not None:
            cuda.cuda.synchronize()
        self.wall_s = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            rss = _rss_bytes()
            self.peak_rss_mb = max(self._peak, rss or 0) / 2**20
        else:
            self.peak_rss_mb = _lifetime_peak_bytes() / 2**20
        if cuda is not None:
            self.peak_cuda_mb = cuda.cuda.max_memory_allocated() / 2**20

    def summary(self) -> Dict[str, Optional[float]]:
        """{"wall_s", "audio_s", "rtf", "peak_rss_mb", "peak_cuda_mb"} for logs and manifests."""
        return {
            "wall_s": self.wall_s,
            "audio_s": self.audio_seconds,
            "rtf": self.rtf,
            "peak_rss_mb": self.peak_rss_mb,
            "peak_cuda_mb": self.peak_cuda_mb,
        }


def measure(fn: Optional[Callable[..., Any]] = None, *args: Any, sample_rate: Optional[int] = None, **kwargs: Any) -> Measurement:
    """Time ``fn(*args, **kwargs)`` (or, without ``fn``, return a context manager).

    When ``fn`` returns audio (an array or tensor, or a ``(wav, sr)`` tuple) its length sets
    ``audio_seconds``; give ``sample_rate`` unless the function returns it.
    """
    m = Measurement(sample_rate=sample_rate)
    if fn is None:
        return m
    with m:
        m.result = fn(*args, **kwargs)
    out = m.result
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], (int, np.integer)):
        m.set_audio(out[0], int(out[1]))
    elif sample_rate is not None and hasattr(out, "shape"):
        m.set_audio(out, sample_rate)
    return m
