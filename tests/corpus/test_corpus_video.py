"""L2S videos: 25 fps, one frame per 40 ms of audio, and a mouth that opens when speech is heard."""

import json
import math
import subprocess

import numpy as np
import pytest
import soundfile as sf

from metis_speech.corpus.face import face_for, frame_count, mouth_track, render_frames, viseme

from .util import read_jsonl


def _probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=r_frame_rate,nb_read_frames,width,height,codec_name", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)["streams"][0]


def _frames(path):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 224, 224, 3)


def _videos(corpus):
    """(video, audio, mouth_box) of every L2S test item and a few training utterances."""
    items = [(corpus / "tests" / r["input"], corpus / "tests" / r["reference"], r["mouth_box"], r["n_frames"]) for r in read_jsonl(corpus / "tests" / "l2s.jsonl")]
    faces = json.loads((corpus / "faces.json").read_text())
    train = [r for r in read_jsonl(corpus / "train.jsonl") if "video" in r][:3]
    assert train, "training utterances carry no video"
    # training rows carry their speaker's mouth box (metis prepare --task visual|l2s uses it)
    assert all(r["mouth_box"] == faces[r["speaker"]]["mouth_box"] for r in train)
    items += [(corpus / r["video"], corpus / r["audio"], faces[r["speaker"]]["mouth_box"], frame_count(r["duration"])) for r in train]
    return items


def test_fps_and_frame_count_match_the_audio(corpus):
    for video, audio, _, n_frames in _videos(corpus):
        info = _probe(video)
        duration = sf.info(str(audio)).frames / 24000
        assert info["r_frame_rate"] == "25/1" and info["codec_name"] == "h264"
        assert (info["width"], info["height"]) == (224, 224)
        assert int(info["nb_read_frames"]) == n_frames == math.ceil(duration * 25 - 1e-6)


def test_mouth_opening_follows_speech_activity(corpus):
    for video, audio, box, _ in _videos(corpus):
        frames = _frames(video)
        x0, y0, x1, y1 = box
        luma = frames[:, y0:y1, x0:x1].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        opening = (luma < 60).mean(axis=(1, 2))  # dark mouth interior seen in the mouth box
        wav, sr = sf.read(str(audio))
        hop = sr // 25
        energy = np.array([np.sqrt(np.mean(wav[k * hop : (k + 1) * hop] ** 2) + 1e-12) for k in range(len(frames))])
        active = energy > 0.1 * energy.max()
        assert active.any() and (~active).any()
        r = np.corrcoef(opening, np.log(energy))[0, 1]
        assert r > 0.3, f"{video.name}: mouth opening vs speech energy correlation {r:.2f}"
        assert opening[active].mean() > 2 * opening[~active].mean(), video.name


def test_visemes():
    jaw, rnd, close, teeth, tongue = viseme("pau")
    assert close == 1 and jaw == 0
    assert viseme("aa")[0] > 0.8 and viseme("A:")[0] > 0.8  # ARPAbet and espeak-ng
    assert viseme("p")[2] == 1 and viseme("m")[2] == 1 and viseme("b")[2] == 1
    assert viseme("uw")[1] > 0.8 and viseme("u:")[1] > 0.8 and viseme("iy")[1] < 0
    assert viseme("th")[4] > 0.5 and viseme("f")[3] > 0.5
    assert viseme("zzz_unknown") is not None


def test_track_and_frames_shape_and_faces_differ():
    phones = [("pau", 0.0, 0.3), ("hh", 0.3, 0.4), ("aa", 0.4, 0.7), ("pau", 0.7, 1.0)]
    track = mouth_track(phones, 1.0)
    assert track.shape == (25, 5)
    assert track[2, 0] < 0.1 and track[13, 0] > 0.6  # closed in silence, open on /aa/
    a, b = face_for("spk-a"), face_for("spk-b")
    assert a != b and face_for("spk-a") == a
    frames = render_frames(track[:3], a)
    assert frames.shape == (3, 224, 224, 3) and frames.dtype == np.uint8
