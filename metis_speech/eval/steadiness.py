"""Steadiness of long outputs across generation-window boundaries (loudness and speaker).

SE, TSE and VC generate a long input in windows (``Metis.window_s``), each carrying the end
of the previous window's tokens as context. A model that drifts between windows changes
loudness or voice at the boundaries. This module measures that on one output waveform:

- at every boundary b, the ``seg_s`` seconds before and after it: the loudness step
  ``|L(after) - L(before)|`` (dB, active-speech level, see :func:`active_level_db`) and the
  speaker similarity ``cos(e(before), e(after))`` (resemblyzer by default);
- the same at control points in the middle of windows, where nothing but the speech itself
  changes: what a model without boundary drift shows at a boundary;
- per window: its level and its similarity to the first window (slow drift).

:func:`steadiness` returns those numbers; ``boundary_excess_db`` (mean boundary step minus
mean control step) and ``boundary_sim_drop`` (mean control similarity minus mean boundary
similarity) are near 0 for a steady model and grow with drift.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..audio import active_level_db

__all__ = ["Steadiness", "active_level_db", "steadiness"]


@dataclass
class Steadiness:
    boundaries_s: List[float]
    boundary_steps_db: List[float]  # |L(after) - L(before)| per boundary
    control_steps_db: List[float]  # the same at mid-window control points
    boundary_sims: List[float] = field(default_factory=list)  # cos(e(before), e(after)) per boundary
    control_sims: List[float] = field(default_factory=list)
    window_levels_db: List[float] = field(default_factory=list)
    window_sims_to_first: List[float] = field(default_factory=list)

    @property
    def boundary_excess_db(self) -> float:
        """Mean loudness step at boundaries minus at control points (≈0 when steady)."""
        return float(np.mean(self.boundary_steps_db) - np.mean(self.control_steps_db))

    @property
    def boundary_sim_drop(self) -> Optional[float]:
        """Mean control similarity minus mean boundary similarity (≈0 when steady)."""
        if not self.boundary_sims or not self.control_sims:
            return None
        return float(np.mean(self.control_sims) - np.mean(self.boundary_sims))

    @property
    def level_spread_db(self) -> float:
        """Largest minus smallest window level."""
        return float(max(self.window_levels_db) - min(self.window_levels_db))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(boundary_excess_db=self.boundary_excess_db, boundary_sim_drop=self.boundary_sim_drop,
                 level_spread_db=self.level_spread_db)
        return d


def _controls(boundaries: Sequence[float], duration: float, seg_s: float) -> List[float]:
    """Mid points of the windows (between consecutive boundaries, and the first/last window)
    that leave ``seg_s`` on both sides."""
    edges = [0.0, *boundaries, duration]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    return [m for m in mids if m - seg_s >= 0 and m + seg_s <= duration]


def steadiness(
    wav: np.ndarray,
    sample_rate: int,
    boundaries_s: Sequence[float],
    seg_s: float = 2.0,
    embed: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> Steadiness:
    """Loudness / speaker steadiness of (S,) ``wav`` across ``boundaries_s`` (seconds).

    embed: (S,) audio at ``sample_rate`` -> (D,) unit speaker embedding, or None to leave
    the speaker part out; default: resemblyzer (:func:`.speaker.speaker_embedding`).
    Raises ValueError when no boundary (or no window middle) has ``seg_s`` on both sides.
    """
    wav = np.asarray(wav, np.float32)
    duration = len(wav) / sample_rate
    bounds = [b for b in boundaries_s if b - seg_s >= 0 and b + seg_s <= duration]
    if not bounds:
        raise ValueError(f"no window boundary with {seg_s} s of audio on both sides in {duration:.1f} s")
    if embed is None:
        from .speaker import speaker_embedding

        def embed(x):
            return speaker_embedding(x, sample_rate)

    seg = int(seg_s * sample_rate)

    def around(t: float):
        i = int(round(t * sample_rate))
        return wav[i - seg : i], wav[i : i + seg]

    def step_and_sim(points):
        steps, sims = [], []
        for t in points:
            a, b = around(t)
            steps.append(abs(active_level_db(b, sample_rate) - active_level_db(a, sample_rate)))
            ea, eb = embed(a), embed(b)
            if ea is not None and eb is not None:
                sims.append(float(np.dot(ea, eb)))
        return steps, sims

    b_steps, b_sims = step_and_sim(bounds)
    controls = _controls(list(boundaries_s), duration, seg_s)
    if not controls:
        raise ValueError(f"windows too short for {seg_s} s control segments")
    c_steps, c_sims = step_and_sim(controls)
    edges = [0.0, *boundaries_s, duration]
    windows = [wav[int(a * sample_rate) : int(b * sample_rate)] for a, b in zip(edges[:-1], edges[1:])]
    levels = [active_level_db(w, sample_rate) for w in windows]
    embs = [embed(w) for w in windows]
    sims_first = [float(np.dot(embs[0], e)) for e in embs if e is not None] if embs[0] is not None else []
    return Steadiness(list(bounds), b_steps, c_steps, b_sims, c_sims, levels, sims_first)
