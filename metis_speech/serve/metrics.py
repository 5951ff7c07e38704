"""Server metrics in the Prometheus text exposition format (version 0.0.4).

Counters and histograms are kept per label set in plain dicts under one lock (updates come
from the event loop and from the model thread); gauges are read when ``/metrics`` is asked.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, List, Tuple

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

Labels = Tuple[Tuple[str, str], ...]


def _fmt_labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.sum += v
        self.count += 1


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._counters: Dict[str, Dict[Labels, float]] = {}
        self._hists: Dict[str, Dict[Labels, _Histogram]] = {}
        self._gauges: Dict[str, Callable[[], float]] = {}
        self._help: Dict[str, Tuple[str, str]] = {}
        self._buckets: Dict[str, Tuple[float, ...]] = {}
        self.counter("metis_requests_total", "HTTP requests by route and status code")
        self.histogram("metis_request_seconds", "HTTP request latency by route (until the last byte for streams)",
                       LATENCY_BUCKETS)
        self.counter("metis_audio_seconds_total", "seconds of audio generated, by task")
        self.counter("metis_items_total", "items run by the model, by task")
        self.histogram("metis_batch_size", "items per batched model call, by task", BATCH_BUCKETS)
        self.histogram("metis_batch_seconds", "seconds per batched model call, by task", LATENCY_BUCKETS)

    def counter(self, name: str, help_text: str) -> None:
        self._help[name] = ("counter", help_text)
        self._counters[name] = {}

    def histogram(self, name: str, help_text: str, buckets) -> None:
        self._help[name] = ("histogram", help_text)
        self._hists[name] = {}
        self._buckets[name] = tuple(buckets)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._help[name] = ("gauge", help_text)
        self._gauges[name] = read

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            c = self._counters[name]
            c[key] = c.get(key, 0.0) + value

    def observe(self, name: str, value: float, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            h = self._hists[name]
            if key not in h:
                h[key] = _Histogram(self._buckets[name])
            h[key].observe(value)

    def render(self) -> str:
        lines: List[str] = []
        with self._lock:
            for name, (kind, help_text) in self._help.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                if kind == "counter":
                    for labels, v in sorted(self._counters[name].items()):
                        lines.append(f"{name}{_fmt_labels(labels)} {v:g}")
                elif kind == "histogram":
                    for labels, h in sorted(self._hists[name].items()):
                        for b, c in zip(h.buckets, h.counts):
                            le = 'le="%g"' % b
                            lines.append(f"{name}_bucket{_fmt_labels(labels, le)} {c}")
                        inf = 'le="+Inf"'
                        lines.append(f"{name}_bucket{_fmt_labels(labels, inf)} {h.count}")
                        lines.append(f"{name}_sum{_fmt_labels(labels)} {h.sum:g}")
                        lines.append(f"{name}_count{_fmt_labels(labels)} {h.count}")
                else:
                    lines.append(f"{name} {float(self._gauges[name]()):g}")
        return "\n".join(lines) + "\n"
