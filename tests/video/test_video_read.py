"""read_video: decoding, 30 -> 25 fps resampling, and one-line errors that name the file."""

import subprocess

import numpy as np
import pytest

from metis_speech.errors import MetisError
from metis_speech.video import VideoError, read_video, video_to_crops

from .conftest import MOUTH_BOX, draw_face, talking_openings, write_video


def _one_line_naming(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert isinstance(err.value, MetisError)
    return msg


def test_reads_frames_at_25_fps(face_video):
    path, frames, _ = face_video
    got, fps = read_video(path)
    assert fps == 25.0
    assert got.dtype == np.uint8 and got.shape == frames.shape
    # lossy coding, but the picture is the same
    assert np.abs(got.astype(float) - frames.astype(float)).mean() < 3.0


def test_resamples_30_fps_to_25(tmp_path):
    frames = draw_face(talking_openings(45), size=64)  # 1.5 s at 30 fps
    path = write_video(tmp_path / "thirty.mp4", frames, fps=30)
    got, fps = read_video(path)
    assert fps == 25.0
    assert abs(len(got) - 37.5) <= 1  # 1.5 s at 25 fps
    native, native_fps = read_video(path, fps=None)
    assert native_fps == pytest.approx(30.0) and len(native) == 45


def test_reads_avi(tmp_path):
    frames = draw_face(talking_openings(10), size=64)
    got, _ = read_video(write_video(tmp_path / "clip.avi", frames, codec="mpeg4"))
    assert got.shape == (10, 64, 64, 3)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoError) as e:
        read_video(path)
    assert "no such video file" in _one_line_naming(e, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError) as e:
        read_video(path)
    assert "empty" in _one_line_naming(e, path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError) as e:
        read_video(path)
    assert "not a readable video" in _one_line_naming(e, path)


def test_audio_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=0.3", str(path)], check=True)
    with pytest.raises(VideoError) as e:
        read_video(path)
    assert "no video stream" in _one_line_naming(e, path)


def test_video_without_frames(tmp_path):
    # an mp4 whose header (moov, written first) announces a video stream but whose data is cut off
    full = tmp_path / "full.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=1",
         "-c:v", "libx264", "-movflags", "+faststart", str(full)], check=True,
    )
    data = full.read_bytes()
    path = tmp_path / "noframes.mp4"
    path.write_bytes(data[: data.find(b"mdat") + 4])
    with pytest.raises(VideoError) as e:
        read_video(path)
    assert "no frames" in _one_line_naming(e, path)


def test_too_long(face_video):
    path = face_video[0]  # 1.2 s
    with pytest.raises(VideoError) as e:
        read_video(path, max_seconds=0.5)
    msg = _one_line_naming(e, path)
    assert "limit of 0.5 s" in msg and "max_seconds" in msg


def test_video_to_crops_with_box(face_video):
    path, frames, _ = face_video
    crops = video_to_crops(path, method=MOUTH_BOX)
    assert crops.shape == (len(frames), 96, 96) and crops.dtype == np.float32
