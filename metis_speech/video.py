"""Video input for lip-to-speech: a file -> 25 fps frames -> 96×96 grayscale mouth crops.

Pipeline (each step usable on its own)::

    read_video(path)            (N, h, w, 3) uint8 RGB at 25 fps   ffmpeg rawvideo pipe, fps filter
    find_mouth_boxes(frames)    (N, 3) float: centre x, centre y, side (pixels), smoothed over time
    crop_mouths(frames, boxes)  (N, 96, 96) float32 in [0, 1], grayscale
    mouth_crops(frames, method) = the two above; video_to_crops(path) = all three

The crops feed :class:`metis_speech.models.visual.VisualEncoder`.

Mouth finding (``method``):

- an explicit crop box ``(x, y, w, h)`` in pixels (or a (N, 4) array of per-frame boxes): the
  square of side ``max(w, h)`` centred on the box; needs nothing beyond numpy and torch;
- ``"mediapipe"``: the face-mesh lip landmarks (optional: ``mediapipe==0.10.21`` pins numpy<2,
  so it is imported lazily and never required);
- ``"haar"``: OpenCV's frontal-face Haar cascade (``opencv-python-headless``); the mouth is
  the lower-middle part of the face box;
- ``"auto"``: mediapipe when importable, else Haar.

Every failure is a one-line :class:`VideoError` naming the file: missing, empty, corrupt or
non-video files, a video without frames, one longer than ``max_seconds``, and a video in which
no face is found (the message says that a crop box can be given instead).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .errors import MetisError

__all__ = [
    "VideoError",
    "FPS",
    "CROP_SIZE",
    "MAX_VIDEO_SECONDS",
    "read_video",
    "probe_video",
    "find_mouth_boxes",
    "crop_mouths",
    "mouth_crops",
    "video_to_crops",
    "to_gray",
]

FPS = 25  # frame rate of the visual encoder
CROP_SIZE = 96  # side of the mouth crops
MAX_VIDEO_SECONDS = 600.0  # default limit of read_video (10 minutes)

# Mouth square relative to a Haar face box (x, y, w, h): centre at (x + 0.5 w, y + r h), side
# 0.5 w, where r is where the lips are found (see _lip_row), else 0.78: Haar boxes span
# brows to chin, and the mouth sits at about 3/4 of their height.
_HAAR_MOUTH_Y = 0.78
_HAAR_MOUTH_SIDE = 0.5
# Mouth square relative to the mediapipe lip corners: side = 1.8 × mouth width.
_MP_MOUTH_SIDE = 1.8
_MP_LIPS = (61, 291, 0, 17, 13, 14, 78, 308)  # corners, outer/inner upper and lower lip midpoints

PathLike = Union[str, os.PathLike]
Box = Tuple[float, float, float, float]


class VideoError(MetisError):
    """A video cannot be read, has no frames, is too long, or shows no face."""


# ---------------------------------------------------------------- reading
def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(cmd), capture_output=True)
    except FileNotFoundError:
        raise VideoError(f"{cmd[0]} is not installed; it is needed to read videos (apt-get install ffmpeg)") from None


def _last_line(stderr: bytes) -> str:
    lines = [l.strip() for l in stderr.decode(errors="replace").splitlines() if l.strip()]
    return lines[-1][:200] if lines else "no message"


def _probe(path: Path) -> dict:
    """Width, height (after rotation), duration (s or None) and frame rate of the first video stream."""
    proc = _run([
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
        "stream=width,height,avg_frame_rate,r_frame_rate,duration:stream_tags=rotate:stream_side_data=rotation:format=duration",
        "-of", "json", str(path),
    ])
    if proc.returncode != 0:
        why = _last_line(proc.stderr).replace(f"{path}: ", "")
        raise VideoError(f"{path}: not a readable video (corrupt or not a video file): {why}")
    info = json.loads(proc.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams or not streams[0].get("width"):
        raise VideoError(f"{path}: has no video stream (accepted: mp4, avi, mkv, webm, mov with video)")
    s = streams[0]
    w, h = int(s["width"]), int(s["height"])
    rot = 0
    try:
        rot = int(float((s.get("tags") or {}).get("rotate", 0)))
    except ValueError:
        pass
    for sd in s.get("side_data_list") or []:
        if "rotation" in sd:
            rot = int(float(sd["rotation"]))
    if rot % 180:  # ffmpeg auto-rotates, so the decoded frames are transposed
        w, h = h, w

    def _num(x):
        try:
            return float(x)
        except (TypeError, ValueError):
            return None

    def _rate(x):
        try:
            a, b = str(x).split("/")
            return float(a) / float(b) if float(b) else None
        except ValueError:
            return None

    duration = _num(s.get("duration")) or _num((info.get("format") or {}).get("duration"))
    rate = _rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate"))
    return {"width": w, "height": h, "duration": duration, "fps": rate}


def probe_video(path: PathLike, what: str = "video", max_seconds: float = MAX_VIDEO_SECONDS) -> float:
    """Check, quickly and without decoding it all, that ``path`` is a video with at least one
    decodable frame and at most ``max_seconds`` long; returns its duration (0 when the file
    does not say). ``what`` names the input in the one-line :class:`VideoError`."""
    path = Path(path)
    label = f"{what} {path}"
    if not path.is_file():
        raise VideoError(f"{label}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{label}: the video file is empty (0 bytes)")
    try:
        info = _probe(path)
    except VideoError as e:  # name the input when the message is about the file
        raise VideoError(f"{what} {e}" if str(e).startswith(str(path)) else str(e)) from None
    if info["duration"] is not None and info["duration"] > max_seconds:
        raise VideoError(f"{label}: video is {info['duration']:.1f} s long, more than the limit of {max_seconds:g} s")
    w, h = info["width"], info["height"]
    proc = _run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-an", "-sn",
                 "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    if len(proc.stdout) < w * h * 3:
        why = f": {_last_line(proc.stderr)}" if proc.returncode else ""
        raise VideoError(f"{label}: the video has no frames that can be decoded{why}")
    return float(info["duration"] or 0.0)


def read_video(
    path: PathLike, fps: Optional[float] = FPS, max_seconds: float = MAX_VIDEO_SECONDS
) -> Tuple[np.ndarray, float]:
    """Decode the first video stream of ``path`` to RGB frames.

    fps: output frame rate (ffmpeg's ``fps`` filter drops/duplicates frames to reach it);
    ``None`` keeps the file's own rate. Returns ``(frames, fps)`` with frames (N, h, w, 3)
    uint8. Raises :class:`VideoError` for a missing, empty, corrupt or frameless file, or one
    longer than ``max_seconds``.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the video file is empty (0 bytes)")
    info = _probe(path)
    if info["duration"] is not None and info["duration"] > max_seconds:
        raise VideoError(
            f"{path}: video is {info['duration']:.1f} s long, more than the limit of {max_seconds:g} s "
            "(cut it, or raise max_seconds)"
        )
    out_fps = float(fps) if fps else (info["fps"] or float(FPS))
    w, h = info["width"], info["height"]
    max_frames = int(max_seconds * out_fps) + 1
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-an", "-sn"]
    if fps:
        cmd += ["-vf", f"fps={float(fps):g}"]
    cmd += ["-frames:v", str(max_frames + 1), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = _run(cmd)
    frame_bytes = w * h * 3
    n = len(proc.stdout) // frame_bytes
    if n == 0:
        why = f" (truncated or corrupt?): {_last_line(proc.stderr)}" if proc.returncode else ""
        raise VideoError(f"{path}: the video has no frames that can be decoded{why}")
    if proc.returncode != 0:
        raise VideoError(f"{path}: ffmpeg could not decode the video (corrupt?): {_last_line(proc.stderr)}")
    if n > max_frames:
        raise VideoError(
            f"{path}: video is longer than the limit of {max_seconds:g} s (cut it, or raise max_seconds)"
        )
    frames = np.frombuffer(proc.stdout, dtype=np.uint8, count=n * frame_bytes).reshape(n, h, w, 3)
    return frames, out_fps


# ---------------------------------------------------------------- mouth boxes
def to_gray(frames: np.ndarray) -> np.ndarray:
    """(N, h, w, 3) uint8 RGB -> (N, h, w) float32 luma in [0, 255] (ITU-R BT.601 weights)."""
    return frames[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge padding; x: (N,) -> (N,)."""
    if window <= 1 or len(x) < 2:
        return x
    window = min(window, 2 * (len(x) // 2) + 1) | 1
    pad = window // 2
    xp = np.pad(x, (pad, pad), mode="edge")
    return np.convolve(xp, np.ones(window) / window, mode="valid")


def _fill_and_smooth(raw: np.ndarray, found: np.ndarray, centre_window: int = 5, size_window: int = 25) -> np.ndarray:
    """raw (N, 3) boxes (cx, cy, side), found (N,) bool -> (N, 3): frames without a detection
    are interpolated from their neighbours, outliers tamed by a 5-frame median, then the
    centre and the side are averaged over ``centre_window`` / ``size_window`` frames."""
    t = np.arange(len(raw))
    out = np.empty_like(raw, dtype=np.float64)
    for j in range(3):
        col = np.interp(t, t[found], raw[found, j])
        if len(col) >= 5:  # running median against single-frame false detections
            padded = np.pad(col, (2, 2), mode="edge")
            col = np.median(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)
        out[:, j] = _smooth(col, centre_window if j < 2 else size_window)
    return out


def _lip_row(cv2, frame: np.ndarray, fx: float, fy: float, fw: float, fh: float) -> Optional[float]:
    """Height of the lips inside a face box, as a fraction of the box height, or None.

    Lips are redder than skin: the rows of the lower face whose mean YCrCb Cr stands out
    above the median (by 4+ levels), weighted by how much, give the mouth's centre row."""
    h, w = frame.shape[:2]
    x0, x1 = int(max(0, fx + 0.3 * fw)), int(min(w, fx + 0.7 * fw))
    y0, y1 = int(max(0, fy + 0.55 * fh)), int(min(h, fy + 1.15 * fh))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    patch = np.ascontiguousarray(frame[y0:y1, x0:x1, :3])
    rows = cv2.cvtColor(patch, cv2.COLOR_RGB2YCrCb)[..., 1].astype(np.float64).mean(axis=1)
    base = np.median(rows)
    if rows.max() - base < 4.0:
        return None
    weight = np.clip(rows - (base + 0.5 * (rows.max() - base)), 0, None)
    return (y0 + (weight * np.arange(len(rows))).sum() / weight.sum() - fy) / fh


def _haar_boxes(frames: np.ndarray, source: str) -> Tuple[np.ndarray, np.ndarray]:
    try:
        import cv2
    except ImportError:
        raise VideoError(
            f"{source}: face detection needs OpenCV (pip install opencv-python-headless); "
            "or give the mouth region as a crop box (x, y, w, h)"
        ) from None
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    if cascade.empty():
        raise VideoError(f"{source}: OpenCV's Haar face model is missing from this cv2 install")
    t, h, w = frames.shape[:3]
    scale = min(1.0, 360.0 / max(h, w))  # detect on at most 360 px for speed
    gray = to_gray(frames)
    raw = np.zeros((t, 3))
    found = np.zeros(t, dtype=bool)
    prev = None
    faces_found, lip_rows = [], []
    for i in range(t):
        g = gray[i]
        if scale < 1.0:
            g = cv2.resize(g, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
        g = np.clip(g, 0, 255).astype(np.uint8)
        min_side = max(24, int(0.15 * min(g.shape)))
        faces = ()
        # second try on a softened image: hard-edged (drawn, sharpened) faces are often missed
        for sigma in (0.0, max(1.0, 0.012 * min(g.shape))):
            gi = cv2.GaussianBlur(g, (0, 0), sigma) if sigma else g
            faces = cascade.detectMultiScale(cv2.equalizeHist(gi), scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side))
            if len(faces):
                break
        if len(faces) == 0:
            continue
        faces = np.asarray(faces, dtype=np.float64) / scale
        if prev is None:
            fx, fy, fw, fh = max(faces, key=lambda f: f[2] * f[3])
        else:  # the face nearest to the previous one
            fx, fy, fw, fh = min(faces, key=lambda f: np.hypot(f[0] + f[2] / 2 - prev[0], f[1] + f[3] / 2 - prev[1]))
        prev = (fx + fw / 2, fy + fh / 2)
        faces_found.append((i, fx, fy, fw, fh))
        lip = _lip_row(cv2, frames[i], fx, fy, fw, fh)
        if lip is not None:
            lip_rows.append(lip)
    # one mouth height for the whole video (the lips' median place in the face box), so that
    # the crop follows the head but not the jaw; the geometric guess when no lips stand out
    mouth_y = float(np.median(lip_rows)) if len(lip_rows) >= max(1, len(faces_found) // 4) else _HAAR_MOUTH_Y
    for i, fx, fy, fw, fh in faces_found:
        raw[i] = (fx + 0.5 * fw, fy + mouth_y * fh, _HAAR_MOUTH_SIDE * fw)
        found[i] = True
    return raw, found


def _mediapipe_available() -> bool:
    try:
        import mediapipe  # noqa: F401
    except Exception:  # ImportError, or a numpy ABI mismatch
        return False
    return True


def _mediapipe_boxes(frames: np.ndarray, source: str) -> Tuple[np.ndarray, np.ndarray]:
    try:
        import mediapipe as mp
    except Exception:
        raise VideoError(
            f"{source}: method 'mediapipe' needs mediapipe (pip install mediapipe==0.10.21, which "
            "requires numpy<2); use method 'haar', or give the mouth region as a crop box (x, y, w, h)"
        ) from None
    t, h, w = frames.shape[:3]
    raw = np.zeros((t, 3))
    found = np.zeros(t, dtype=bool)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False) as mesh:
        for i in range(t):
            res = mesh.process(np.ascontiguousarray(frames[i, ..., :3]))
            if not res.multi_face_landmarks:
                continue
            lm = res.multi_face_landmarks[0].landmark
            pts = np.array([(lm[k].x * w, lm[k].y * h) for k in _MP_LIPS])
            width = np.hypot(*(pts[1] - pts[0]))
            cx, cy = pts.mean(axis=0)
            raw[i] = (cx, cy, _MP_MOUTH_SIDE * width)
            found[i] = True
    return raw, found


def _check_frames(frames: np.ndarray, source: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:  # grayscale (N, h, w)
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise VideoError(f"{source}: expected frames (t, h, w, 3), got shape {frames.shape}")
    if len(frames) == 0:
        raise VideoError(f"{source}: the video has no frames")
    return frames


def find_mouth_boxes(
    frames: np.ndarray, method: Union[str, Box, np.ndarray] = "auto", source: str = "video"
) -> np.ndarray:
    """Mouth squares per frame: (N, h, w, 3) uint8 -> (N, 3) float64 (centre x, centre y, side).

    ``method``: "auto" | "mediapipe" | "haar" | a crop box (x, y, w, h) | a (N, 4) array of
    boxes. ``source`` names the video in error messages. Detected boxes are smoothed over
    time; frames without a detection take their neighbours' box. Raises :class:`VideoError`
    when no face is found in any frame.
    """
    frames = _check_frames(frames, source)
    t, h, w = frames.shape[:3]
    if not isinstance(method, str):
        boxes = np.asarray(method, dtype=np.float64)
        if boxes.shape == (4,):
            boxes = np.tile(boxes, (t, 1))
        if boxes.shape != (t, 4):
            raise VideoError(f"{source}: a crop box must be (x, y, w, h) or one per frame ({t}, 4); got shape {boxes.shape}")
        x, y, bw, bh = boxes.T
        if (bw <= 0).any() or (bh <= 0).any():
            raise VideoError(f"{source}: crop box width and height must be positive")
        if ((x >= w) | (y >= h) | (x + bw <= 0) | (y + bh <= 0)).any():
            raise VideoError(f"{source}: crop box {tuple(boxes[0])} lies outside the {w}x{h} frame")
        return np.stack([x + bw / 2, y + bh / 2, np.maximum(bw, bh)], axis=1)
    if method == "auto":
        method = "mediapipe" if _mediapipe_available() else "haar"
    if method == "mediapipe":
        raw, found = _mediapipe_boxes(frames, source)
    elif method == "haar":
        raw, found = _haar_boxes(frames, source)
    else:
        raise VideoError(f"{source}: unknown mouth method {method!r}; use auto, mediapipe, haar or a crop box (x, y, w, h)")
    if not found.any():
        raise VideoError(
            f"{source}: no face found in any of its {t} frames ({method}); give the mouth region as a crop box (x, y, w, h)"
        )
    return _fill_and_smooth(raw, found)


def crop_mouths(frames: np.ndarray, boxes: np.ndarray, size: int = CROP_SIZE, source: str = "video") -> np.ndarray:
    """Cut and resize the mouth squares: frames (N, h, w, 3) uint8, boxes (N, 3) -> (N, size, size)
    float32 grayscale in [0, 1]. Parts of a square outside the frame repeat the border pixels."""
    import torch
    import torch.nn.functional as F

    frames = _check_frames(frames, source)
    t, h, w = frames.shape[:3]
    gray = to_gray(frames) / 255.0
    out = np.empty((t, size, size), dtype=np.float32)
    for i, (cx, cy, side) in enumerate(np.asarray(boxes, dtype=np.float64)):
        side = max(int(round(side)), 2)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        ys = np.clip(np.arange(y0, y0 + side), 0, h - 1)
        xs = np.clip(np.arange(x0, x0 + side), 0, w - 1)
        patch = torch.from_numpy(np.ascontiguousarray(gray[i][np.ix_(ys, xs)]))[None, None]
        resized = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
        out[i] = resized[0, 0].clamp_(0.0, 1.0).numpy()
    return out


def mouth_crops(
    frames: np.ndarray, method: Union[str, Box, np.ndarray] = "auto", size: int = CROP_SIZE, source: str = "video"
) -> np.ndarray:
    """(N, h, w, 3) uint8 frames -> (N, 96, 96) float32 grayscale mouth crops in [0, 1].

    ``method``: "auto" | "mediapipe" | "haar" | crop box (x, y, w, h) (see :func:`find_mouth_boxes`).
    """
    boxes = find_mouth_boxes(frames, method, source=source)
    return crop_mouths(frames, boxes, size=size, source=source)


def video_to_crops(
    path: PathLike,
    method: Union[str, Box, np.ndarray] = "auto",
    fps: float = FPS,
    max_seconds: float = MAX_VIDEO_SECONDS,
    size: int = CROP_SIZE,
) -> np.ndarray:
    """A video file -> (N, 96, 96) float32 mouth crops at ``fps`` (25), ready for the visual
    encoder (``encoder(torch.from_numpy(crops)[None])``)."""
    frames, _ = read_video(path, fps=fps, max_seconds=max_seconds)
    return mouth_crops(frames, method, size=size, source=str(path))
