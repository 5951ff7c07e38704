"""Voices survive a restart; a busy queue answers 503; VC and TSE through their endpoints
(``random:tiny``: the shipped small model may lack them)."""

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from .conftest import FAST, PROMPT, PROMPT_TEXT, Server, error_of


def clip(seconds: float, start: float = 0.0) -> bytes:
    wav, sr = sf.read(str(PROMPT), dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, wav[int(start * sr): int((start + seconds) * sr)], sr, format="WAV")
    return buf.getvalue()


def test_voices_survive_a_restart_and_a_full_queue_answers_503(tmp_path):
    data = tmp_path / "data"
    first = Server(data, tmp_path / "t1", "--model", "small", "--tasks", "tts", *FAST)
    try:
        r = first.client.post("/v1/voices", files={"file": ("p.wav", PROMPT.read_bytes())},
                              data={"transcript": PROMPT_TEXT, "name": "kept"})
        assert r.status_code == 201, r.text
        kept = r.json()["id"]
        gone = first.client.post("/v1/voices", files={"file": ("p.wav", PROMPT.read_bytes())},
                                 data={"transcript": PROMPT_TEXT}).json()["id"]
        assert first.client.delete(f"/v1/voices/{gone}").status_code == 200
    finally:
        first.stop()
    second = Server(data, tmp_path / "t2", "--model", "small", "--tasks", "tts", "--max-queue", "1", "--max-batch", "1",
                    *FAST)
    try:
        c = second.client
        ids = [v["id"] for v in c.get("/v1/voices").json()["data"]]
        assert ids == ["default", kept]
        assert c.get(f"/v1/voices/{kept}").json()["name"] == "kept"
        # --tasks tts: SE is not served here, whatever the model has
        error_of(c.post("/v1/audio/enhance", files={"file": ("a.wav", clip(2.0))}), 501, "task_not_available")
        # a queue of one with one item per batch: four requests at once, some must be refused
        body = {"input": "The saved voice speaks again after the restart.", "voice": kept, "response_format": "wav"}
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: c.post("/v1/audio/speech", json=body), range(4)))
        codes = sorted(r.status_code for r in replies)
        assert 200 in codes and 503 in codes and set(codes) <= {200, 503}, codes
        for r in replies:
            if r.status_code == 503:
                error_of(r, 503, "queue_full")
                assert int(r.headers["retry-after"]) >= 1
    finally:
        second.stop()


def test_convert_and_extract_with_random_tiny(tmp_path):
    server = Server(tmp_path / "data", tmp_path / "t", "--model", "random:tiny", "--tasks", "vc,tse", *FAST)
    try:
        c = server.client
        assert c.get("/health").json()["tasks"] == ["vc", "tse"]
        voice = c.post("/v1/voices", files={"file": ("p.wav", clip(1.5))}, data={"transcript": "The bakery was quiet."}).json()
        source = clip(1.2, start=2.0)
        with ThreadPoolExecutor(3) as pool:
            vc_voice, vc_prompt, tse = pool.map(lambda f: f(), [
                lambda: c.post("/v1/audio/convert", files={"file": ("s.wav", source)}, data={"voice": voice["id"], "seed": "1"}),
                lambda: c.post("/v1/audio/convert", files={"file": ("s.wav", source), "prompt": ("p.wav", clip(1.5))},
                               data={"seed": "1"}),
                lambda: c.post("/v1/audio/extract", files={"file": ("m.wav", source)},
                               data={"voice": voice["id"], "response_format": "flac"}),
            ])
        for r in (vc_voice, vc_prompt, tse):
            assert r.status_code == 200, r.text[:300]
            wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
            assert sr == 24000 and abs(len(wav) / sr - 1.2) < 0.1 and np.all(np.isfinite(wav))
        # the same voice as an id or as an uploaded prompt of the same audio: the same result
        assert vc_voice.content == vc_prompt.content
        error_of(c.post("/v1/audio/convert", files={"file": ("s.wav", source)}, data={"voice": "nobody"}), 404, "voice_not_found")
        error_of(c.post("/v1/audio/convert", files={"file": ("s.wav", source), "prompt": ("p.wav", clip(0.4))}), 400,
                 "invalid_audio")
        error_of(c.post("/v1/audio/extract", files={"prompt": ("p.wav", clip(1.5))}), 400, "missing_file")
        error_of(c.post("/v1/audio/speech", json={"input": "hello there"}), 501, "task_not_available")
    finally:
        server.stop()
