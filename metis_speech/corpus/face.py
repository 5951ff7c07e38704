"""Silent talking-face videos whose mouth follows phoneme timings (for lip-to-speech).

Pipeline: phones ``[(label, start_s, end_s)]`` -> articulatory targets per phone
(:func:`viseme`: jaw opening, lip rounding (-1 spread .. 1 rounded), lip closure, teeth and
tongue visibility) -> a coarticulated track sampled at 25 fps (:func:`mouth_track`) ->
frames drawn with PIL (:func:`render_frames`, (N, H, W, 3) uint8) -> H.264 mp4 through
ffmpeg (:func:`write_video`). Each speaker gets its own face (:func:`face_for`): face shape,
skin, hair, eye and lip colours, mouth size and background, drawn from a hash of its name.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .config import FPS, CorpusError

__all__ = ["Face", "face_for", "viseme", "mouth_track", "render_frames", "write_video", "render_video", "frame_count", "VIDEO_SIZE"]

VIDEO_SIZE = 224  # square frames, like the face crops of LRS3-style pipelines
_SS = 2  # supersampling factor for anti-aliased drawing

# jaw, round (-1 spread .. +1 rounded), closure, teeth, tongue
_REST = (0.0, 0.0, 1.0, 0.0, 0.0)
_ARPA: Dict[str, Tuple[float, float, float, float, float]] = {
    "p": (0.05, 0.0, 1.0, 0.0, 0.0), "b": (0.05, 0.0, 1.0, 0.0, 0.0), "m": (0.05, 0.0, 1.0, 0.0, 0.0), "em": (0.05, 0.0, 1.0, 0.0, 0.0),
    "f": (0.15, -0.2, 0.5, 1.0, 0.0), "v": (0.15, -0.2, 0.5, 1.0, 0.0),
    "th": (0.22, 0.0, 0.0, 0.8, 1.0), "dh": (0.22, 0.0, 0.0, 0.8, 1.0),
    "t": (0.18, -0.1, 0.0, 0.9, 0.4), "d": (0.18, -0.1, 0.0, 0.9, 0.4), "n": (0.18, -0.1, 0.0, 0.8, 0.4),
    "dx": (0.2, 0.0, 0.0, 0.8, 0.4), "nx": (0.18, 0.0, 0.0, 0.8, 0.4), "en": (0.18, 0.0, 0.0, 0.8, 0.4),
    "s": (0.12, -0.3, 0.0, 1.0, 0.0), "z": (0.12, -0.3, 0.0, 1.0, 0.0),
    "l": (0.32, 0.0, 0.0, 0.6, 0.8), "el": (0.32, 0.0, 0.0, 0.6, 0.8),
    "sh": (0.15, 0.6, 0.0, 0.9, 0.0), "zh": (0.15, 0.6, 0.0, 0.9, 0.0), "ch": (0.15, 0.5, 0.0, 0.9, 0.0), "jh": (0.15, 0.5, 0.0, 0.9, 0.0),
    "k": (0.35, 0.0, 0.0, 0.4, 0.0), "g": (0.35, 0.0, 0.0, 0.4, 0.0), "ng": (0.3, 0.0, 0.0, 0.4, 0.0), "hh": (0.4, 0.0, 0.0, 0.3, 0.0),
    "r": (0.25, 0.5, 0.0, 0.3, 0.0), "w": (0.12, 1.0, 0.0, 0.0, 0.0), "y": (0.15, -0.6, 0.0, 0.7, 0.0),
    "iy": (0.22, -0.8, 0.0, 0.8, 0.0), "ih": (0.32, -0.5, 0.0, 0.6, 0.0), "ix": (0.3, -0.4, 0.0, 0.5, 0.0),
    "ey": (0.45, -0.4, 0.0, 0.6, 0.0), "eh": (0.55, -0.2, 0.0, 0.5, 0.2), "ae": (0.75, -0.3, 0.0, 0.5, 0.3),
    "aa": (1.0, 0.0, 0.0, 0.3, 0.4), "ah": (0.6, 0.0, 0.0, 0.4, 0.2), "ax": (0.45, 0.0, 0.0, 0.4, 0.1),
    "ao": (0.8, 0.5, 0.0, 0.2, 0.3), "aw": (0.85, 0.3, 0.0, 0.3, 0.3), "ay": (0.85, -0.2, 0.0, 0.4, 0.3),
    "ow": (0.55, 0.8, 0.0, 0.1, 0.1), "oy": (0.6, 0.6, 0.0, 0.2, 0.1), "uh": (0.35, 0.7, 0.0, 0.1, 0.0),
    "uw": (0.25, 1.0, 0.0, 0.0, 0.0), "er": (0.35, 0.45, 0.0, 0.3, 0.0), "axr": (0.35, 0.45, 0.0, 0.3, 0.0),
}
_SILENCE = {"pau", "h#", "sil", "brth", "ssil", "_", "_:", "_!", "||", "%"}
# espeak-ng phoneme mnemonics -> the ARPAbet class with the same mouth shape
_ESPEAK: Dict[str, str] = {
    "a": "ae", "a#": "ah", "A:": "aa", "A@": "aa", "aa": "ae", "aI": "ay", "aI@": "ay", "aU": "aw", "V": "ah",
    "0": "aa", "O:": "ao", "O@": "ao", "o@": "ao", "O": "ao", "OI": "oy", "oU": "ow", "o": "ow", "e@": "eh",
    "E": "eh", "eI": "ey", "e": "eh", "@": "ax", "@2": "ax", "@5": "ax", "@L": "el", "3:": "er", "3": "er",
    "i:": "iy", "i": "iy", "I": "ih", "I2": "ih", "I#": "ih", "U": "uh", "u:": "uw", "u": "uw", "U@": "uh",
    "i@": "ih", "i@3": "ih", "T": "th", "D": "dh", "S": "sh", "Z": "zh", "tS": "ch", "dZ": "jh", "N": "ng",
    "h": "hh", "r-": "r", "*": "dx", "j": "y", "?": "hh", "l/": "l", "t#": "t", "d#": "d", "n-": "n", "m-": "m",
}


def viseme(phone: str) -> Tuple[float, float, float, float, float]:
    """(jaw, round, closure, teeth, tongue) target of one ARPAbet or espeak-ng phone."""
    p = phone.strip()
    if not p or p in _SILENCE or p.startswith("_"):
        return _REST
    for cand in (p, p.lower(), _ESPEAK.get(p), _ESPEAK.get(p.rstrip(":;#/0123456789")), p.rstrip("012").lower()):
        if cand and cand in _ARPA:
            return _ARPA[cand]
    if re.match(r"[aeiouAEIOUV@03]", p):
        return _ARPA["ax"]
    return _ARPA["k"]  # an unknown consonant: a neutral, slightly open mouth


def frame_count(duration_s: float, fps: int = FPS) -> int:
    """Frames of a video covering ``duration_s`` of audio: ceil(duration * fps)."""
    return max(1, int(math.ceil(duration_s * fps - 1e-6)))


def mouth_track(phones: Sequence[Tuple[str, float, float]], duration_s: float, fps: int = FPS) -> np.ndarray:
    """(N, 5) articulatory track at the frame centres, N = frame_count(duration_s).

    Targets are held over each phone on a 200 Hz grid and smoothed with a 30 ms Gaussian
    (coarticulation); closures keep their minimum opening."""
    grid_hz = 200
    n_grid = int(math.ceil(duration_s * grid_hz)) + 1
    grid = np.tile(np.asarray(_REST, dtype=np.float64), (n_grid, 1))
    for label, start, end in phones:
        a, b = int(round(start * grid_hz)), int(round(end * grid_hz))
        if b > a:
            grid[a:b] = viseme(label)
    sigma = 0.03 * grid_hz
    k = np.arange(-3 * int(sigma), 3 * int(sigma) + 1)
    kernel = np.exp(-0.5 * (k / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(grid, ((len(k) // 2, len(k) // 2), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(grid.shape[1])], axis=1)
    n = frame_count(duration_s, fps)
    idx = np.clip(np.round((np.arange(n) + 0.5) / fps * grid_hz).astype(int), 0, n_grid - 1)
    return smooth[idx].astype(np.float32)


@dataclass(frozen=True)
class Face:
    """Per-speaker appearance; lengths are fractions of the frame size."""

    skin: Tuple[int, int, int]
    hair: Tuple[int, int, int]
    iris: Tuple[int, int, int]
    lips: Tuple[int, int, int]
    background: Tuple[int, int, int]
    face_w: float
    face_h: float
    chin: float
    eye_dx: float
    eye_size: float
    mouth_w: float
    lip_thick: float
    hair_style: int

    def mouth_box(self, size: int = VIDEO_SIZE) -> List[int]:
        """[x0, y0, x1, y1] pixels that contain the mouth in every frame."""
        cx, cy = 0.5 * size, 0.71 * size
        hw = (self.mouth_w * 1.2 + 0.03) * size
        return [int(cx - hw), int(cy - 0.09 * size), int(math.ceil(cx + hw)), int(math.ceil(cy + 0.13 * size))]

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


_SKINS = ((255, 224, 196), (241, 194, 159), (224, 172, 138), (198, 134, 104), (160, 110, 80), (128, 88, 64), (236, 200, 176))
_HAIRS = ((35, 25, 20), (70, 45, 25), (120, 80, 40), (200, 160, 90), (150, 150, 150), (110, 40, 20))
_IRIS = ((70, 50, 30), (60, 100, 150), (70, 120, 70), (100, 80, 50))


def face_for(speaker: str, seed: int = 0) -> Face:
    """The face of ``speaker``: a deterministic function of its name and the seed."""
    h = hashlib.sha256(f"{seed}/{speaker}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(h[:8], "big"))

    def jitter(c, amount=12):
        return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)

    skin = jitter(_SKINS[rng.integers(len(_SKINS))])
    lips = tuple(int(v) for v in np.clip(np.array(skin) * np.array([0.85, 0.6, 0.62]) + np.array([25, 0, 5]), 0, 255))
    bg = tuple(int(v) for v in rng.integers(150, 235, 3))
    return Face(
        skin=skin, hair=jitter(_HAIRS[rng.integers(len(_HAIRS))]), iris=jitter(_IRIS[rng.integers(len(_IRIS))]), lips=lips,
        background=bg, face_w=float(rng.uniform(0.27, 0.34)), face_h=float(rng.uniform(0.36, 0.42)),
        chin=float(rng.uniform(0.55, 0.85)), eye_dx=float(rng.uniform(0.11, 0.14)), eye_size=float(rng.uniform(0.035, 0.05)),
        mouth_w=float(rng.uniform(0.075, 0.1)), lip_thick=float(rng.uniform(0.012, 0.022)), hair_style=int(rng.integers(3)),
    )


def _ellipse(draw, cx, cy, rx, ry, fill):
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)


def _face_outline(cx, cy, rx, ry, chin, drop, n=64):
    """Head contour: an ellipse whose lower half narrows to the chin and drops with the jaw."""
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = math.cos(t), math.sin(t)
        if y > 0:  # lower half
            x *= 1 - (1 - chin) * y**2
            y = y * (ry + drop) / ry
        pts.append((cx + rx * x, cy + ry * y))
    return pts


def render_frames(track: np.ndarray, face: Face, seed: int = 0, size: int = VIDEO_SIZE) -> np.ndarray:
    """(N, 5) mouth track -> (N, size, size, 3) uint8 frames of ``face`` talking.

    Adds a slow head sway and eye blinks (seeded) so that frames are not static apart from
    the mouth."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    S = size * _SS
    n = len(track)
    blink = np.zeros(n, dtype=bool)
    t = int(rng.integers(FPS, 3 * FPS))
    while t < n:
        blink[t : t + 3] = True
        t += int(rng.integers(2 * FPS, 5 * FPS))
    phase = rng.uniform(0, 2 * math.pi, 2)
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    darker = lambda c, f: tuple(int(v * f) for v in c)
    for i, (jaw, rnd, close, teeth, tongue) in enumerate(track.astype(np.float64)):
        img = Image.new("RGB", (S, S), face.background)
        d = ImageDraw.Draw(img)
        sec = i / FPS
        ox = 0.006 * S * math.sin(2 * math.pi * 0.3 * sec + phase[0])
        oy = 0.004 * S * math.sin(2 * math.pi * 0.23 * sec + phase[1])
        cx, cy = 0.5 * S + ox, 0.47 * S + oy
        rx, ry = face.face_w * S, face.face_h * S
        opening = 0.1 * S * jaw * (1 - close)
        drop = 0.35 * opening
        # neck, hair (back), ears, head
        d.rectangle([cx - 0.13 * S, cy + 0.2 * S, cx + 0.13 * S, S], fill=darker(face.skin, 0.85))
        _ellipse(d, cx, cy - 0.1 * S, rx * 1.08, ry * 0.95, face.hair)
        for side in (-1, 1):
            _ellipse(d, cx + side * rx * 0.98, cy + 0.02 * S, 0.04 * S, 0.07 * S, darker(face.skin, 0.93))
        d.polygon(_face_outline(cx, cy, rx, ry, face.chin, drop), fill=face.skin)
        if face.hair_style == 0:  # fringe
            d.chord([cx - rx, cy - ry * 1.02, cx + rx, cy - ry * 0.35], 180, 360, fill=face.hair)
        elif face.hair_style == 1:  # side parting
            d.pieslice([cx - rx * 1.05, cy - ry * 1.05, cx + rx * 1.05, cy - 0.2 * ry], 190, 330, fill=face.hair)
        # eyes and brows
        ey = cy - 0.06 * S
        for side in (-1, 1):
            ex = cx + side * face.eye_dx * S
            es = face.eye_size * S
            if blink[i]:
                d.line([ex - es, ey, ex + es, ey], fill=darker(face.skin, 0.6), width=max(2, int(0.006 * S)))
            else:
                _ellipse(d, ex, ey, es, es * 0.6, (245, 245, 240))
                _ellipse(d, ex, ey, es * 0.45, es * 0.45, face.iris)
                _ellipse(d, ex, ey, es * 0.2, es * 0.2, (15, 15, 15))
            d.line([ex - es * 1.1, ey - es * 1.4, ex + es * 1.1, ey - es * 1.6 + side * 0.0], fill=darker(face.hair, 0.9), width=max(3, int(0.012 * S)))
        # nose
        ny = cy + 0.07 * S
        d.line([cx, ey + 0.01 * S, cx - 0.015 * S, ny], fill=darker(face.skin, 0.8), width=max(2, int(0.005 * S)))
        d.arc([cx - 0.035 * S, ny - 0.015 * S, cx + 0.035 * S, ny + 0.015 * S], 0, 180, fill=darker(face.skin, 0.75), width=max(2, int(0.005 * S)))
        # mouth
        mx, my = cx, 0.71 * S + oy + 0.5 * drop
        mw = face.mouth_w * S * (1 - 0.3 * max(rnd, 0) + 0.15 * max(-rnd, 0))
        lt = face.lip_thick * S * (1 + 0.4 * max(rnd, 0))
        _ellipse(d, mx, my, mw, opening / 2 + lt, face.lips)
        if opening > 0.004 * S:
            iw, ih = mw * (0.82 - 0.3 * max(rnd, 0)), opening / 2
            # the mouth interior is drawn on a small layer and pasted through an ellipse mask
            x0, y0 = int(mx - iw) - 1, int(my - ih) - 1
            w, h = int(2 * iw) + 3, int(2 * ih) + 3
            lx, ly = mx - x0, my - y0  # centre in layer coordinates
            mask = Image.new("L", (w, h), 0)
            ImageDraw.Draw(mask).ellipse([lx - iw, ly - ih, lx + iw, ly + ih], fill=255)
            inner = Image.new("RGB", (w, h), (45, 12, 18))
            di = ImageDraw.Draw(inner)
            if teeth > 0.05:
                th = min(ih * 0.7, 0.025 * S) * teeth
                di.rectangle([lx - iw, ly - ih, lx + iw, ly - ih + th], fill=(235, 235, 225))
            if tongue > 0.05:
                tr = iw * 0.7
                top = ly + ih - 2 * ih * 0.6 * tongue
                di.ellipse([lx - tr, top, lx + tr, ly + ih + tr * 0.5], fill=(200, 90, 100))
            img.paste(inner, (x0, y0), mask)
        else:
            d.line([mx - mw * 0.95, my, mx + mw * 0.95, my], fill=darker(face.lips, 0.55), width=max(2, int(0.005 * S)))
        frames[i] = np.asarray(img.reduce(_SS))
    return frames


def write_video(path: Path, frames: np.ndarray, fps: int = FPS) -> Path:
    """(N, H, W, 3) uint8 -> silent H.264 mp4 (yuv420p), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, h, w, _ = frames.shape
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=str(path.parent))
    os.close(fd)
    cmd = [
        "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-an", "-c:v", "libx264", "-preset", "superfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
        "-g", str(fps), "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1", "-movflags", "+faststart", tmp,
    ]
    try:
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise CorpusError(f"ffmpeg could not write {path.name}: {proc.stderr.decode(errors='replace').strip()[-200:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def render_video(path: Path, phones, duration_s: float, face: Face, seed: int = 0) -> int:
    """Render and write the talking-face video of one utterance; returns its frame count."""
    track = mouth_track(phones, duration_s)
    write_video(path, render_frames(track, face, seed=seed))
    return len(track)
