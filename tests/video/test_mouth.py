"""Mouth finding and cropping: crop box, Haar cascade, mediapipe fallback, no-face errors."""

import numpy as np
import pytest

from metis_speech.video import (
    VideoError,
    _mediapipe_available,
    crop_mouths,
    find_mouth_boxes,
    mouth_crops,
    read_video,
    video_to_crops,
)

from .conftest import MOUTH_BOX, MOUTH_CENTRE, write_video


def _tracks(crops: np.ndarray, openings: np.ndarray) -> float:
    """Correlation of the crops' mean brightness with the mouth opening (an open mouth is dark)."""
    return float(np.corrcoef(crops.mean(axis=(1, 2)), openings)[0, 1])


def test_box_crops_shape_and_range(face_video):
    _, frames, _ = face_video
    crops = mouth_crops(frames, MOUTH_BOX)
    assert crops.shape == (len(frames), 96, 96) and crops.dtype == np.float32
    assert crops.min() >= 0.0 and crops.max() <= 1.0 and crops.std() > 0.05


def test_box_crop_follows_the_mouth(face_video):
    path, _, openings = face_video
    frames, _ = read_video(path)
    assert _tracks(mouth_crops(frames, MOUTH_BOX), openings) < -0.95
    # a box on the forehead sees no change
    forehead = mouth_crops(frames, (60, 30, 40, 20))
    assert forehead.mean(axis=(1, 2)).std() < 0.01


def test_box_is_a_square_around_its_centre(face_video):
    _, frames, _ = face_video
    boxes = find_mouth_boxes(frames, (50, 100, 60, 20))
    assert np.allclose(boxes, [[80, 110, 60]] * len(frames))
    per_frame = find_mouth_boxes(frames, np.tile([50, 100, 60, 20], (len(frames), 1)))
    assert np.allclose(per_frame, boxes)


def test_crop_outside_the_frame_repeats_the_border():
    frames = np.zeros((2, 40, 40, 3), dtype=np.uint8)
    frames[:, :, :20] = 255
    crops = crop_mouths(frames, np.array([[20.0, 20.0, 80.0]] * 2))  # 20 px outside on each side
    assert crops.shape == (2, 96, 96)
    assert crops[:, :, :40].min() > 0.99 and crops[:, :, -40:].max() < 0.01


@pytest.mark.parametrize("box", [(10, 10, 0, 20), (500, 10, 20, 20), (1, 2, 3)])
def test_bad_crop_box(face_video, box):
    _, frames, _ = face_video
    with pytest.raises(VideoError, match="crop box"):
        mouth_crops(frames, box, source="clip.mp4")


def test_no_frames_given():
    with pytest.raises(VideoError, match="clip.mp4: the video has no frames"):
        mouth_crops(np.zeros((0, 32, 32, 3), dtype=np.uint8), (0, 0, 8, 8), source="clip.mp4")


def test_unknown_method(face_video):
    with pytest.raises(VideoError, match="unknown mouth method 'lips'"):
        mouth_crops(face_video[1], "lips")


# ---------------------------------------------------------------- Haar (OpenCV)
def test_haar_finds_the_mouth(face_video):
    pytest.importorskip("cv2")
    path, _, openings = face_video
    frames, _ = read_video(path)
    boxes = find_mouth_boxes(frames, "haar")
    cx, cy, side = boxes.T
    # the square contains the mouth's centre in every frame and is steady over time
    assert (np.abs(cx - MOUTH_CENTRE[0]) < side / 2).all() and (np.abs(cy - MOUTH_CENTRE[1]) < side / 2).all()
    assert np.ptp(cx) < 4 and np.ptp(cy) < 4 and np.ptp(side) < 4
    assert _tracks(crop_mouths(frames, boxes), openings) < -0.9


def test_haar_no_face(tmp_path):
    pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    frames = np.repeat(np.linspace(0, 255, 96, dtype=np.uint8)[None, None, :, None], 96, axis=1)
    frames = np.repeat(frames, 8, axis=0).repeat(3, axis=-1) // 2 + rng.integers(0, 20, (8, 96, 96, 3), dtype=np.uint8)
    path = write_video(tmp_path / "wall.mp4", frames.astype(np.uint8))
    with pytest.raises(VideoError) as e:
        video_to_crops(path, method="haar")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "no face found" in msg and "crop box (x, y, w, h)" in msg


def test_auto_method(face_video):
    pytest.importorskip("cv2")
    path, frames, openings = face_video
    crops = video_to_crops(path)  # mediapipe when installed, else Haar
    assert crops.shape == (len(frames), 96, 96)
    assert _tracks(crops, openings) < -0.9


def test_mediapipe_missing_is_a_clear_error(face_video):
    if _mediapipe_available():
        pytest.skip("mediapipe is installed")
    with pytest.raises(VideoError) as e:
        mouth_crops(face_video[1], "mediapipe", source="clip.mp4")
    msg = str(e.value)
    assert msg.startswith("clip.mp4:") and "mediapipe==0.10.21" in msg and "crop box" in msg


@pytest.mark.parametrize("speaker", ["spk0"])  # found only on the softened image
def test_haar_on_corpus_faces(speaker):
    """The project's own talking-face renderer (metis_speech.corpus.face), used for L2S data."""
    pytest.importorskip("cv2")
    pytest.importorskip("PIL")
    from metis_speech.corpus.face import face_for, mouth_track, render_frames

    face = face_for(speaker)
    frames = render_frames(mouth_track([("sil", 0, 0.1), ("aa", 0.1, 0.3), ("m", 0.3, 0.4)], 0.4), face, seed=0)
    cx, cy, side = find_mouth_boxes(frames, "haar").T
    x0, y0, x1, y1 = face.mouth_box()  # holds the lips in every frame
    lip_x, lip_y = (x0 + x1) / 2, 0.71 * frames.shape[1]  # the renderer's lip line
    assert (np.abs(cx - lip_x) < 0.2 * side).all() and (np.abs(cy - lip_y) < 0.2 * side).all()
