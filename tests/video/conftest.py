"""Synthetic talking-face videos for the video tests (numpy drawing + ffmpeg, no other deps).

``draw_face(openings)`` paints a cartoon face (hair, head, eyes with brows, nose, lips) whose
mouth opening follows ``openings`` (0 closed .. 1 wide open); ``write_video`` encodes frames
with ffmpeg. ``MOUTH_BOX`` is the (x, y, w, h) box that holds the mouth in every frame.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SIZE = 160  # frame side, pixels
MOUTH_CENTRE = (80.0, 114.0)  # (x, y) of the mouth's centre
MOUTH_BOX = (52, 96, 56, 40)  # (x, y, w, h)

if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
    pytest.skip("ffmpeg/ffprobe not installed (apt-get install ffmpeg)", allow_module_level=True)


def _ellipse(img, cx, cy, rx, ry, colour):
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    m = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0
    img[m] = colour


def _soften(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (h, w, 3) image: camera-like soft edges instead of the
    aliased steps of the drawing (OpenCV's Haar face detector misses the hard-edged cartoon)."""
    r = int(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    x = np.pad(img.astype(np.float32), ((r, r), (r, r), (0, 0)), mode="edge")
    x = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, x)
    x = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, x)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def draw_face(openings, size: int = SIZE) -> np.ndarray:
    """openings (t,) in [0, 1] -> (t, size, size, 3) uint8 frames of a face whose mouth opens
    and closes with ``openings``."""
    s = size / 160.0
    frames = np.empty((len(openings), size, size, 3), dtype=np.uint8)
    skin, hair, lips = (224, 180, 150), (60, 40, 25), (170, 80, 80)
    for i, op in enumerate(openings):
        img = np.full((size, size, 3), (200, 210, 220), dtype=np.uint8)
        _ellipse(img, 80 * s, 66 * s, 50 * s, 52 * s, hair)
        _ellipse(img, 80 * s, 82 * s, 44 * s, 56 * s, skin)
        for ex in (62, 98):
            img[int(56 * s) : int(59 * s), int((ex - 10) * s) : int((ex + 10) * s)] = hair  # brows
            _ellipse(img, ex * s, 68 * s, 9 * s, 5 * s, (245, 245, 245))
            _ellipse(img, ex * s, 68 * s, 4 * s, 4 * s, (30, 30, 30))
        img[int(72 * s) : int(94 * s), int(78 * s) : int(82 * s)] = (190, 145, 120)  # nose
        _ellipse(img, 80 * s, 95 * s, 9 * s, 3 * s, (170, 125, 100))
        _ellipse(img, MOUTH_CENTRE[0] * s, MOUTH_CENTRE[1] * s, 20 * s, (4 + 11 * op) * s, lips)
        if op > 0.05:
            _ellipse(img, MOUTH_CENTRE[0] * s, MOUTH_CENTRE[1] * s, 16 * s, 10 * op * s, (40, 10, 15))
        frames[i] = _soften(img, 1.5 * s)
    return frames


def talking_openings(n: int) -> np.ndarray:
    """(n,) mouth openings: closed, open, closed, open, closed (smooth)."""
    t = np.arange(n) / max(n - 1, 1)
    return np.clip(np.sin(2 * np.pi * t * 2) * 1.2, 0, 1).astype(np.float32)


def write_video(path: Path, frames: np.ndarray, fps: float = 25, codec: str = "libx264") -> Path:
    n, h, w, _ = frames.shape
    cmd = [
        "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
        "-i", "-", "-an", "-c:v", codec, "-pix_fmt", "yuv420p", "-threads", "1",
    ]
    if codec == "libx264":
        cmd += ["-preset", "ultrafast", "-crf", "12"]
    subprocess.run(cmd + [str(path)], input=np.ascontiguousarray(frames).tobytes(), check=True)
    return Path(path)


@pytest.fixture(scope="session")
def face_video(tmp_path_factory):
    """(path, frames, openings): a 1.2 s, 25 fps mp4 of the talking face."""
    openings = talking_openings(30)
    frames = draw_face(openings)
    path = write_video(tmp_path_factory.mktemp("video") / "face.mp4", frames)
    return path, frames, openings
