"""A random tiny bundle (every network, tiny preset) and synthetic audio for the task tests.

The bundle makes noise, not speech: these tests check plumbing, shapes, lengths, batching,
error handling and the CLI, not quality.
"""

import numpy as np
import pytest
import soundfile as sf

from metis_speech.bundle import random_bundle

FAST = dict(steps=2, s2a_steps=[2, 1])


def speechlike(seconds: float, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced, amplitude-modulated harmonic signal with noise bursts (syllable-like)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    wav = wav * env + 0.05 * rng.standard_normal(t.size)
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, shared_dir):
    d = tmp_path_factory.mktemp("bundle")
    return random_bundle(d, tasks=("tts", "vc", "tse", "se", "omni", "l2s"), phone_vocab=shared_dir / "g2p" / "vocab.json")


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    files = {}
    for name, secs, f0, sr in [("prompt", 2.0, 120, 16000), ("source", 1.5, 180, 22050), ("long_prompt", 32.0, 150, 16000)]:
        files[name] = d / f"{name}.wav"
        sf.write(files[name], speechlike(secs, sr, f0), sr)
    files["stereo"] = d / "stereo.flac"
    sf.write(files["stereo"], np.stack([speechlike(1.2, 24000, 200), speechlike(1.2, 24000, 210, 1)], 1), 24000)
    files["short"] = d / "short.wav"
    sf.write(files["short"], speechlike(0.5), 16000)
    files["silent"] = d / "silent.wav"
    sf.write(files["silent"], np.zeros(16000, np.float32), 16000)
    files["corrupt"] = d / "corrupt.wav"
    files["corrupt"].write_bytes(b"RIFF....WAVEfmt garbage")
    files["empty"] = d / "empty.wav"
    files["empty"].write_bytes(b"")
    files["nan"] = d / "nan.wav"
    bad = speechlike(1.5)
    bad[100] = np.nan
    sf.write(files["nan"], bad, 16000, subtype="FLOAT")
    return files


@pytest.fixture(scope="session")
def face_video(tmp_path_factory):
    """A 1.2 s, 25 fps talking-face mp4 and the crop box of its mouth."""
    from tests.video.conftest import MOUTH_BOX, draw_face, talking_openings, write_video

    path = write_video(tmp_path_factory.mktemp("video") / "face.mp4", draw_face(talking_openings(30)))
    return path, MOUTH_BOX
