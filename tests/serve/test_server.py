"""``metis serve`` with the shipped small model, driven over HTTP as a client would."""

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from .conftest import PROMPT, PROMPT_TEXT, error_of

SERVED = ("tts", "vc", "tse", "se")
THREE = "The sun came out over the hills. A dog barked twice at the gate. Then the street was quiet again."


def speak(server, **fields):
    body = {"model": "metis", "voice": "default", "response_format": "wav", "seed": 7, **fields}
    return server.client.post("/v1/audio/speech", json=body)


def wav_of(r):
    assert r.status_code == 200, r.text[:500]
    wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    return wav, sr


def test_health_models_page(small_server):
    c = small_server.client
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "small" and "tts" in h["tasks"] and h["sample_rate"] == 24000
    from metis_speech.shipped import small_model_tasks

    assert h["tasks"] == [t for t in SERVED if t in small_model_tasks()]  # read from the model, not fixed
    m = c.get("/v1/models").json()
    assert m["object"] == "list" and {"metis", "metis-tts"} <= {x["id"] for x in m["data"]}
    page = c.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/audio/speech" in page.text and "MediaRecorder" in page.text


def test_speech_formats(small_server):
    formats = ["wav", "flac", "mp3", "opus", "pcm", "aac"]
    with ThreadPoolExecutor(len(formats)) as pool:  # concurrent: they also go through the batcher together
        replies = list(pool.map(lambda f: speak(small_server, input="Hello there, this is a test.", response_format=f),
                                formats))
    for fmt, r in zip(formats, replies):
        assert r.status_code == 200, (fmt, r.text[:300])
        assert r.headers["content-type"].startswith({"mp3": "audio/mpeg", "opus": "audio/ogg"}.get(fmt, f"audio/{fmt}"))
        dur = float(r.headers["x-audio-duration"])
        assert 0.5 < dur < 5
        if fmt == "pcm":
            assert len(r.content) == round(dur * 24000) * 2
        elif fmt == "aac":
            assert r.content[:2] in (b"\xff\xf1", b"\xff\xf9")  # ADTS sync word
        else:
            wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
            assert sr == 24000 and abs(len(wav) / sr - dur) < 0.1 and np.sqrt(np.mean(wav**2)) > 1e-3, fmt


def test_same_seed_same_audio_and_speed(small_server):
    text = "Please water the plants on Friday."
    a, _ = wav_of(speak(small_server, input=text, seed=3))
    b, _ = wav_of(speak(small_server, input=text, seed=3))
    c, _ = wav_of(speak(small_server, input=text, seed=3, speed=2.0))
    assert np.array_equal(a, b)
    assert 0.35 < len(c) / len(a) < 0.65  # twice as fast: about half as long


def test_concurrent_requests_are_batched_and_equal_alone(small_server):
    texts = ["The boat came back.", "She folded the letter.", "A cold wind blew.", "He found the key."]
    alone = [wav_of(speak(small_server, input=t, seed=20 + i))[0] for i, t in enumerate(texts)]

    def tts_batches():
        for line in small_server.client.get("/metrics").text.splitlines():
            if line.startswith('metis_batch_size_count{task="tts"}'):
                return float(line.split()[-1])
        return 0.0

    before = tts_batches()
    with ThreadPoolExecutor(len(texts)) as pool:
        together = list(pool.map(lambda it: wav_of(speak(small_server, input=it[1], seed=20 + it[0]))[0], enumerate(texts)))
    batches = tts_batches() - before
    for x, y in zip(alone, together):
        assert np.array_equal(x, y)  # a batched item gives what it gives alone
    assert 1 <= batches < len(texts), batches  # fewer model calls than requests


def test_stream_sends_sentences_as_they_are_ready(small_server):
    t0 = time.monotonic()
    arrivals, data = [], b""
    with small_server.client.stream("POST", "/v1/audio/speech",
                                    json={"input": THREE, "voice": "default", "response_format": "pcm", "stream": True,
                                          "seed": 11}) as r:
        assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
        for chunk in r.iter_raw():
            arrivals.append((time.monotonic() - t0, len(chunk)))
            data += chunk
    first_audio = arrivals[0][0]
    total = arrivals[-1][0]
    assert len(arrivals) >= 2 and first_audio < 0.8 * total, arrivals  # the first sentence came early
    # the stream is exactly the whole result: sentence k has seed + k in both
    whole = speak(small_server, input=THREE, response_format="pcm", seed=11)
    assert whole.status_code == 200 and data == whole.content


def test_stream_wav_and_sse(small_server):
    with small_server.client.stream("POST", "/v1/audio/speech",
                                    json={"input": "A short one. And another.", "response_format": "wav", "stream": True,
                                          "seed": 1}) as r:
        chunks = r.iter_raw()
        first = next(chunks)
        assert first[:4] == b"RIFF" and first[8:12] == b"WAVE" and len(first) > 44
        rest = b"".join(chunks)
    assert len(rest) > 0
    r = small_server.client.post("/v1/audio/speech", json={"input": THREE, "response_format": "pcm",
                                                           "stream_format": "sse", "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(x[len("data: "):]) for x in r.text.split("\n\n") if x.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) == 3 and [d["sentence"] for d in deltas] == [1, 2, 3] and events[-1]["type"] == "speech.audio.done"


def test_enhance(small_server, tmp_path):
    if "se" not in small_server.client.get("/health").json()["tasks"]:
        pytest.skip("the shipped small model has no SE")
    wav, sr = sf.read(str(PROMPT), dtype="float32")
    noisy = wav[: int(2.0 * sr)] + 0.05 * np.random.default_rng(0).standard_normal(int(2.0 * sr)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, noisy, sr, format="FLAC")
    r = small_server.client.post("/v1/audio/enhance", files={"file": ("noisy.flac", buf.getvalue())},
                                 data={"response_format": "wav", "seed": "1"})
    out, osr = wav_of(r)
    assert osr == 24000 and abs(len(out) / osr - 2.0) < 0.1
    # refine per request: the generated speech ("none") differs from the shipped default ("lsa")
    none = wav_of(small_server.client.post("/v1/audio/enhance", files={"file": ("noisy.flac", buf.getvalue())},
                                           data={"response_format": "wav", "seed": "1", "refine": "none"}))[0]
    assert abs(len(none) / osr - 2.0) < 0.1 and not np.allclose(none[: len(out)], out[: len(none)], atol=1e-3)
    error_of(small_server.client.post("/v1/audio/enhance", files={"file": ("noisy.flac", buf.getvalue())},
                                      data={"refine": "mask"}), 400)


def test_bad_requests_get_openai_errors(small_server, tmp_path):
    c = small_server.client
    assert "empty" in error_of(speak(small_server, input="   "), 400, "empty_input")["message"]
    error_of(speak(small_server, input="hi", voice="alloy"), 404, "voice_not_found")
    error_of(speak(small_server, input="hi", response_format="ogg"), 400, "invalid_format")
    error_of(speak(small_server, input="hi", speed=9), 400)
    error_of(speak(small_server, input="hi", steps="many"), 400)
    error_of(speak(small_server, input="hi", model="whisper-1"), 404, "model_not_found")
    error_of(speak(small_server, input="x" * 5000), 400, "input_too_long")
    error_of(speak(small_server, input="hi", response_format="flac", stream=True), 400, "invalid_format")
    error_of(c.post("/v1/audio/speech", content=b"not json", headers={"content-type": "application/json"}), 400,
             "invalid_json")
    error_of(c.post("/v1/audio/speech", json=["a list"]), 400, "invalid_json")
    error_of(c.get("/v1/nothing"), 404, "not_found")
    error_of(c.put("/v1/audio/speech"), 405)
    # uploads: unreadable, too large (this server's limit is 1 MB), missing, not multipart
    error_of(c.post("/v1/voices", files={"file": ("x.wav", b"RIFF not really a wav" * 50)}, data={"transcript": "x"}), 400,
             "invalid_audio")
    error_of(c.post("/v1/voices", files={"file": ("big.wav", b"\0" * 2_000_000)}, data={"transcript": "x"}), 413,
             "request_too_large")
    error_of(c.post("/v1/voices", data={"transcript": "x"}), 400)
    error_of(c.post("/v1/voices", json={"transcript": "x"}), 400, "invalid_content_type")
    # a queue that cannot take every sentence of a stream answers 503 with Retry-After
    r = speak(small_server, input="Hi. " * 70, stream=True, response_format="pcm")
    error_of(r, 503, "queue_full")
    assert int(r.headers["retry-after"]) >= 1


def test_voices_lifecycle(small_server, tmp_path):
    c = small_server.client
    assert [v["id"] for v in c.get("/v1/voices").json()["data"]][:1] == ["default"]
    wav, sr = sf.read(str(PROMPT), dtype="float32")
    short = io.BytesIO()
    sf.write(short, wav[: sr // 2], sr, format="WAV")
    error_of(c.post("/v1/voices", files={"file": ("s.wav", short.getvalue())}, data={"transcript": "hi"}), 400, "invalid_audio")
    silent = io.BytesIO()
    sf.write(silent, np.zeros(2 * sr, np.float32), sr, format="WAV")
    error_of(c.post("/v1/voices", files={"file": ("z.wav", silent.getvalue())}, data={"transcript": "hi"}), 400)
    error_of(c.post("/v1/voices", files={"file": ("p.wav", PROMPT.read_bytes())}, data={"transcript": " "}), 400)
    # an upload ffmpeg has to decode (Ogg/Vorbis is read by soundfile; M4A is not)
    m4a = tmp_path / "p.m4a"
    import subprocess

    subprocess.run(["ffmpeg", "-v", "error", "-i", str(PROMPT), "-c:a", "aac", str(m4a)], check=True)
    outside = set(small_server.tmp_env.rglob("*"))  # the server's TMPDIR (libraries keep files there too)
    r = c.post("/v1/voices", files={"file": ("../../etc/evil.m4a", m4a.read_bytes())},
               data={"transcript": PROMPT_TEXT, "name": "mine"})
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["name"] == "mine" and 4.0 < v["duration"] < 5.0 and not v["builtin"]
    assert c.get(f"/v1/voices/{v['id']}").json()["transcript"] == PROMPT_TEXT
    assert c.get(f"/v1/voices/{v['id']}/audio").content[:4] == b"RIFF"
    files = sorted(p.relative_to(small_server.data_dir).as_posix() for p in small_server.data_dir.rglob("*") if p.is_file())
    assert set(small_server.tmp_env.rglob("*")) == outside, "the upload was written to the server's TMPDIR"
    assert not any((small_server.data_dir / "tmp").rglob("upload-*")), "ffmpeg's input was left behind"
    out, _ = wav_of(speak(small_server, input="This is my new voice speaking now.", voice=v["id"]))
    assert len(out) > 0
    out2, _ = wav_of(speak(small_server, input="This is my new voice speaking now.", voice={"id": v["id"]}))
    assert np.array_equal(out, out2)
    # stored inside the data folder only, under the server's id, never the client's file name
    assert f"voices/{v['id']}/audio.wav" in files and not any("evil" in f for f in files), files
    assert c.delete(f"/v1/voices/{v['id']}").json()["deleted"] is True
    error_of(c.get(f"/v1/voices/{v['id']}"), 404, "voice_not_found")
    error_of(c.delete(f"/v1/voices/{v['id']}"), 404, "voice_not_found")
    error_of(c.delete("/v1/voices/default"), 403, "voice_read_only")
    error_of(c.get("/v1/voices/..%2Fvoices"), 404)


def test_metrics(small_server):
    speak(small_server, input="Count me.")
    text = small_server.client.get("/metrics").text
    for name in ("metis_requests_total", "metis_request_seconds_bucket", "metis_queue_depth", "metis_audio_seconds_total",
                 "metis_batch_size_count"):
        assert f"\n{name}" in "\n" + text, name
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['metis_requests_total{route="/v1/audio/speech",status="200"}']) >= 1
    assert float(lines['metis_audio_seconds_total{task="tts"}']) > 0.5
    assert float(lines["metis_queue_depth"]) == 0


def test_engine_passes_the_decoding_preset():
    from metis_speech.serve.engine import Engine

    eng = Engine("small", ["se"], "cpu", preset="fast")
    eng.load(log=lambda *a, **k: None)
    assert eng.models["se"].preset == "fast"
