"""Bad input is refused before any model is chosen, resolved or downloaded: every task, every
kind of bad input, exit status 2, one line naming the input, no output file, quickly.

The model source is ``hub`` (the slowest to reach) and choosing a model fails the test, so a
check that ran after model resolution could not pass. The time bound is generous for a
loaded CI machine; the checks themselves take well under a second.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from metis_speech.cli import main

LIMIT_S = 10.0  # in-process, per command
SUBPROCESS_LIMIT_S = 30.0  # a fresh interpreter, imports included

GOOD = {
    "tts": {"--text": "Hello there.", "--prompt": "prompt", "--prompt-text": "A short test.", "--language": "en"},
    "vc": {"--source": "source", "--prompt": "prompt"},
    "tse": {"--mixture": "source", "--prompt": "prompt"},
    "se": {"--input": "source"},
    "l2s": {"--video": "video", "--prompt": "prompt"},
}

# (task, the flag made bad, its bad value, what the one line must say)
CASES = [
    ("tts", "--text", "", "missing --text"),
    ("tts", "--text", "  ", "--text is empty"),
    ("tts", "--text", "?!", "yields no phones"),
    ("tts", "--text", "...", "yields no phones"),
    ("tts", "--prompt-text", "   ", "--prompt-text is empty"),
    ("tts", "--prompt", "missing", "no such file"),
    ("tts", "--prompt", "silent", "silent"),
    ("tts", "--prompt", "short", "at least 1 s"),
    ("tts", "--prompt", "corrupt", "--prompt"),
    ("tts", "--duration", "0", "--duration must be between"),
    ("tts", "--phone-guidance", "-1", "--phone-guidance must be between"),
    ("tts", "--phone-guidance", "inf", "--phone-guidance must be between"),
    ("tts", "--max-prompt-s", "-1", "--max-prompt-s must be between 0 and 30 seconds"),
    ("tts", "--max-prompt-s", "1e9", "--max-prompt-s must be between 0 and 30 seconds"),
    ("vc", "--source", "zero_bytes", "empty"),
    ("vc", "--source", "no_samples", "no samples"),
    ("vc", "--source", "silent", "silent"),
    ("vc", "--source", "too_long", "the limit is 300 s"),
    ("vc", "--source", "directory", "is a directory"),
    ("vc", "--prompt", "short", "at least 1 s"),
    ("vc", "--prompt", "nan", "NaN"),
    ("tse", "--mixture", "missing", "no such file"),
    ("tse", "--mixture", "corrupt", "--mixture"),
    ("tse", "--prompt", "silent", "silent"),
    ("tse", "--prompt", "zero_bytes", "empty"),
    ("se", "--input", "missing", "no such file"),
    ("se", "--input", "silent", "silent"),
    ("se", "--input", "nan", "NaN"),
    ("se", "--input", "too_long", "the limit is 300 s"),
    ("se", "--input", "no_samples", "no samples"),
    ("l2s", "--video", "missing", "no such video file"),
    ("l2s", "--video", "zero_bytes", "empty"),
    ("l2s", "--video", "not_a_video", "not a readable video"),
    ("l2s", "--video", "prompt", "no video stream"),
    ("l2s", "--prompt", "silent", "silent"),
]


@pytest.fixture(scope="module")
def bad_files(audio_files, face_video, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {k: str(v) for k, v in audio_files.items()}
    files["video"] = str(face_video[0])
    files["missing"] = str(d / "missing.wav")
    files["zero_bytes"] = str(d / "zero.wav")
    (d / "zero.wav").write_bytes(b"")
    files["no_samples"] = str(d / "no_samples.wav")
    sf.write(files["no_samples"], np.zeros(0, np.float32), 16000)
    files["too_long"] = str(d / "long.wav")
    sf.write(files["too_long"], np.full(301 * 8000, 0.1, np.float32), 8000, subtype="PCM_16")
    files["directory"] = str(d)
    files["not_a_video"] = str(d / "not_a_video.mp4")
    (d / "not_a_video.mp4").write_text("this is text, not a video")
    return files


@pytest.fixture
def no_model(monkeypatch):
    """Choosing, resolving or fetching a model fails the test."""
    def forbidden(*a, **k):
        raise AssertionError("a model was chosen before the inputs were checked")

    monkeypatch.setattr("metis_speech.shipped.choose_source", forbidden)
    monkeypatch.setattr("metis_speech.hub.resolve", forbidden)
    monkeypatch.setattr("metis_speech.hub.check_reachable", forbidden)


def _argv(task, flag, value, files, out):
    args = dict(GOOD[task], **{flag: value})
    argv = [task]
    for k, v in args.items():
        argv += [k, files.get(v, v) if k not in ("--text", "--prompt-text") else v]
    return argv + ["--model", "hub", "--out", str(out)]


@pytest.mark.parametrize("task,flag,value,says", CASES, ids=[f"{t}{f}={v.strip() or repr(v)}" for t, f, v, _ in CASES])
def test_bad_input_is_refused_before_any_model(task, flag, value, says, bad_files, no_model, tmp_path, capsys):
    out = tmp_path / "out.wav"
    t0 = time.perf_counter()
    rc = main(_argv(task, flag, value, bad_files, out))
    took = time.perf_counter() - t0
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert rc == 2, cap.err
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    assert says in lines[0]
    assert flag in lines[0], f"the message does not name {flag}: {lines[0]}"
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert took < LIMIT_S, f"{took:.1f} s"


def test_every_task_and_input_kind_is_covered():
    assert {t for t, *_ in CASES} == set(GOOD)
    assert {f for t, f, *_ in CASES} >= {f for good in GOOD.values() for f in good if f != "--language"}


def test_batch_names_the_bad_item(bad_files, no_model, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "input": "%s"}\n{"id": "b", "input": "%s"}\n' % (bad_files["source"], bad_files["silent"]))
    rc = main(["se", "--batch", str(items), "--out-dir", str(tmp_path / "out"), "--model", "hub"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "item b --input" in err[0] and "silent" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task,flag,value", [("tts", "--prompt", "silent"), ("vc", "--source", "no_samples"),
                                             ("tse", "--mixture", "missing"), ("se", "--input", "corrupt"),
                                             ("l2s", "--video", "not_a_video")])
def test_bad_input_as_a_user_runs_it(task, flag, value, bad_files, tmp_path):
    """A fresh `python -m metis_speech` with the default model source and the Hub made
    unreachable: still one line, exit 2, nothing written, no network wait."""
    out = tmp_path / "out.wav"
    argv = _argv(task, flag, value, bad_files, out)
    argv = argv[: argv.index("--model")] + ["--out", str(out)]
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "cache"))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "metis_speech", *argv], capture_output=True, text=True, env=env,
                       timeout=120)
    took = time.perf_counter() - t0
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], r.stderr
    assert not out.exists()
    assert took < SUBPROCESS_LIMIT_S, f"{took:.1f} s"


@pytest.mark.parametrize("task,call,says", [
    ("tts", lambda m, f: m.tts("  ", f["prompt"], "A test."), "text is empty"),
    ("tts", lambda m, f: m.tts("Hello.", f["short"], "A test."), "prompt"),
    ("vc", lambda m, f: m.vc(f["silent"], f["prompt"]), "source"),
    ("tse", lambda m, f: m.tse(f["source"], f["missing"]), "no such file"),
    ("se", lambda m, f: m.se((np.zeros(1600, np.float32), 16000)), "silent"),
    ("l2s", lambda m, f: m.l2s(f["not_a_video"], f["prompt"]), "not a readable video"),
])
def test_python_api_checks_inputs_before_loading(task, call, says, bad_files, monkeypatch, tmp_path):
    """The task methods of a lazily loaded model refuse bad input before loading (or
    downloading) any network."""
    from metis_speech import Metis
    from metis_speech.errors import MetisError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))

    def forbidden(*a, **k):
        raise AssertionError("a network was loaded before the inputs were checked")

    monkeypatch.setattr("metis_speech.hub.resolve", forbidden)
    monkeypatch.setattr("metis_speech.hub.check_reachable", forbidden)
    model = Metis.from_pretrained(task, "hub", device="cpu", lazy=True)
    with pytest.raises(MetisError) as e:
        call(model, bad_files)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert model.loaded == []
