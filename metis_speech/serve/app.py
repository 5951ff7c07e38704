"""The ASGI app: routes over :class:`~metis_speech.serve.engine.Engine` and the batcher.

==========================  ==========================================================
route                       what
==========================  ==========================================================
``GET  /``                  the web page (``static/index.html``)
``POST /v1/audio/speech``   OpenAI text-to-speech (JSON), ``stream``/``stream_format``
``POST /v1/audio/enhance``  SE: multipart ``file`` [+ ``refine`` none/wiener/lsa] -> clean speech
``POST /v1/audio/convert``  VC: multipart ``file`` + ``voice`` id or ``prompt`` file
``POST /v1/audio/extract``  TSE: multipart ``file`` (mixture) + ``voice`` or ``prompt``
``/v1/voices``              ``GET`` list, ``POST`` multipart ``file`` + ``transcript``
``/v1/voices/{id}``         ``GET``, ``DELETE``; ``GET /v1/voices/{id}/audio``
``GET  /v1/models``         OpenAI model list
``GET  /health``            liveness and what is loaded
``GET  /metrics``           Prometheus text format
==========================  ==========================================================

Every error is ``{"error": {"message", "type", "param", "code"}}`` (OpenAI's shape): 4xx for
bad requests, 501 for a task or format this server cannot do, 503 with ``Retry-After`` when
the queue is full, and a 500 without details (the log has them) for anything unexpected.
Request bodies are read with a size limit and kept in memory; nothing from a request is
written outside the data folder.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AudioError, MetisError
from ..inputs import REFINE_MODES
from .audio_io import FORMATS, STREAM_FORMATS, FormatUnavailable, decode_upload, encode, pcm16, wav_stream_header
from .batcher import Batcher, QueueFull
from .engine import Engine, TaskUnavailable, batch_key
from .metrics import Metrics
from .voices import MAX_VOICE_S, MIN_VOICE_S, VoiceNotFound, VoiceReadOnly, VoiceStore, example_voice

__all__ = ["ServeConfig", "create_app"]

log = logging.getLogger("metis.serve")

STATIC = Path(__file__).resolve().parent / "static"
MAX_INPUT_CHARS = 4096  # OpenAI's limit for /v1/audio/speech
MAX_AUDIO_S = 300.0
SENTENCE_GAP_S = 0.15  # the pause the task API puts between sentences
SPEECH_MODELS = ("metis", "metis-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")


@dataclass
class ServeConfig:
    data_dir: Path = Path("metis-data")
    max_batch: int = 8
    max_wait_ms: float = 20.0
    max_queue: int = 64
    max_upload_mb: float = 25.0
    max_json_kb: float = 256.0
    default_voice: bool = True


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid_request", param: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


def _error_json(status: int, message: str, code: str, param: Optional[str] = None, headers=None):
    kind = "invalid_request_error" if status < 500 else ("server_busy" if status == 503 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status,
                        headers=headers)


def _api_error(e: Exception) -> ApiError:
    """Map the package's errors to HTTP."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, QueueFull):
        return ApiError(503, str(e), "queue_full", headers={"Retry-After": str(e.retry_after)})
    if isinstance(e, VoiceNotFound):
        return ApiError(404, str(e), "voice_not_found", "voice")
    if isinstance(e, VoiceReadOnly):
        return ApiError(403, str(e), "voice_read_only", "voice")
    if isinstance(e, TaskUnavailable):
        return ApiError(501, str(e), "task_not_available")
    if isinstance(e, FormatUnavailable):
        return ApiError(501, str(e), "format_not_available", "response_format")
    if isinstance(e, AudioError):
        return ApiError(400, str(e), "invalid_audio")
    if isinstance(e, MetisError):
        return ApiError(400, str(e), "invalid_request")
    raise e


# ---------------------------------------------------------------------------- request bodies
async def _read_body(request, limit: int, what: str) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (a too-large body is read to its end
    and dropped, so that the client gets the reply instead of a reset connection)."""
    too_big = ApiError(413, f"{what} is larger than this server's limit of {_size(limit)}", "request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= 16 * limit:
            async for _ in request.stream():
                pass
        raise too_big
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise too_big
    return bytes(buf)


def _size(n: float) -> str:
    return f"{n / 1e6:g} MB" if n >= 1e6 else f"{n / 1e3:g} kB"


def _multipart(body: bytes, content_type: str) -> Tuple[Dict[str, str], Dict[str, bytes]]:
    """multipart/form-data -> (text fields, file fields), parsed in memory."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "send multipart/form-data (an audio file and form fields)", "invalid_content_type")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart() or msg.defects:
        raise ApiError(400, "the multipart/form-data body cannot be parsed", "invalid_body")
    fields: Dict[str, str] = {}
    files: Dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[str(name)] = data
        else:
            fields[str(name)] = data.decode("utf-8", errors="replace")
    return fields, files


def _number(value, name: str, kind=float, lo=None, hi=None):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ApiError(400, f"{name} must be a number", param=name)
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}", param=name) from None
    if kind is int and isinstance(value, float) and value != int(value):
        raise ApiError(400, f"{name} must be an integer, got {value!r}", param=name)
    if isinstance(v, float) and not math.isfinite(v):
        raise ApiError(400, f"{name} must be finite", param=name)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ApiError(400, f"{name} must be between {lo:g} and {hi:g}, got {v:g}", param=name)
    return v


def _s2a_steps(value) -> Optional[List[int]]:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = [x for x in value.split(",") if x.strip()]
    if not isinstance(value, list) or not value:
        raise ApiError(400, "s2a_steps must be a list of positive integers", param="s2a_steps")
    return [_number(x, "s2a_steps", int, 1, 100) for x in value]


def _format(value, default: str) -> str:
    fmt = default if value in (None, "") else value
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ApiError(400, f"unknown response_format {fmt!r}; use one of {', '.join(FORMATS)}", "invalid_format",
                       "response_format")
    return fmt


# ---------------------------------------------------------------------------- the app
def create_app(engine: Engine, config: Optional[ServeConfig] = None):
    """The ASGI app over a loaded ``engine``."""
    from contextlib import asynccontextmanager

    from ..text import split_sentences

    config = config or ServeConfig()
    data = Path(config.data_dir).resolve()
    tmp_dir = data / "tmp" / f"{socket.gethostname()}-{os.getpid()}"
    builtin = [v for v in [example_voice()] if v is not None] if config.default_voice else []
    voices = VoiceStore(data / "voices", builtin)
    metrics = Metrics()
    upload_limit = int(config.max_upload_mb * 1e6)
    json_limit = int(config.max_json_kb * 1e3)
    started = int(time.time())

    def run_batch(task, key, items):
        outs = engine.run(task, key, items)
        metrics.inc("metis_items_total", len(items), task=task)
        metrics.inc("metis_audio_seconds_total", sum(o.duration for o in outs), task=task)
        return outs

    def on_batch(task, n, seconds):
        metrics.observe("metis_batch_size", n, task=task)
        metrics.observe("metis_batch_seconds", seconds, task=task)

    batcher = Batcher(run_batch, config.max_batch, config.max_wait_ms / 1000.0, config.max_queue, on_batch)
    metrics.gauge("metis_queue_depth", "items waiting in the queue", lambda: batcher.depth)
    metrics.gauge("metis_running_items", "items in the batch the model is running", lambda: batcher.running)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            import shutil

            shutil.rmtree(tmp_dir, ignore_errors=True)

    app = FastAPI(title="metis-speech", version=_version(), lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.engine, app.state.batcher, app.state.voices, app.state.metrics = engine, batcher, voices, metrics

    # ---- errors: always OpenAI's shape, never a traceback
    @app.exception_handler(ApiError)
    async def _api(request, e: ApiError):
        return _error_json(e.status, e.message, e.code, e.param, e.headers)

    @app.exception_handler(MetisError)
    async def _metis(request, e: MetisError):
        a = _api_error(e)
        return _error_json(a.status, a.message, a.code, a.param, a.headers)

    @app.exception_handler(QueueFull)
    async def _full(request, e: QueueFull):
        a = _api_error(e)
        return _error_json(a.status, a.message, a.code, a.param, a.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:])
        return _error_json(400, f"{where}: {first.get('msg', 'invalid request')}", "invalid_request", where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        msg = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return _error_json(e.status_code, msg, code)

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_json(500, "internal server error (the server log has the details)", "internal_error")

    # ---- metrics of every request (a pure ASGI wrapper: streams count until their last byte)
    @app.middleware("http")
    async def _measure(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")

        def done(status=response.status_code):
            metrics.inc("metis_requests_total", route=name, status=str(status))
            metrics.observe("metis_request_seconds", time.perf_counter() - t0, route=name)

        if isinstance(response, StreamingResponse) or hasattr(response, "body_iterator"):
            inner = response.body_iterator

            async def counted():
                try:
                    async for chunk in inner:
                        yield chunk
                finally:
                    done()

            response.body_iterator = counted()
        else:
            done()
        return response

    # ---- helpers
    def require(task: str):
        engine.model(task)  # raises TaskUnavailable (501)

    def voice_prompt(voice_id) -> Tuple[str, str]:
        if isinstance(voice_id, dict):  # OpenAI's {"id": "..."} form for custom voices
            voice_id = voice_id.get("id")
        if not isinstance(voice_id, str) or not voice_id:
            raise ApiError(400, "voice must be a voice id (GET /v1/voices lists them)", param="voice")
        v = voices.get(voice_id)
        return v.audio, v.transcript

    async def audio_field(files, name: str, what: str, min_s: float = 0.0, max_s: float = MAX_AUDIO_S):
        if name not in files:
            raise ApiError(400, f"missing the {what} file (multipart field {name!r})", "missing_file", name)
        wav, sr = await run_in_threadpool(decode_upload, files[name], what, tmp_dir)
        dur = len(wav) / sr
        if not min_s <= dur <= max_s:
            raise ApiError(400, f"{what} is {dur:.2f} s long; this endpoint takes {min_s:g} to {max_s:g} s", "invalid_audio", name)
        return wav, sr

    async def respond(outs, fmt: str):
        out = outs[0]
        body = await run_in_threadpool(encode, out.wav, out.sample_rate, fmt)
        return Response(body, media_type=FORMATS[fmt], headers={"X-Audio-Duration": f"{out.duration:.3f}",
                                                                "X-Sample-Rate": str(out.sample_rate)})

    async def run_one(task: str, key, item: Dict[str, Any]):
        fut = batcher.submit(task, key, [item])[0]
        return [await fut]

    # ---- routes
    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.model_name, "tasks": engine.tasks, "sample_rate": engine.sample_rate,
                "queue_depth": batcher.depth, "running": batcher.running, "max_batch": batcher.max_batch,
                "max_upload_bytes": upload_limit}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models():
        ids = ["metis"] + [f"metis-{t}" for t in engine.tasks]
        return {"object": "list", "data": [{"id": i, "object": "model", "created": started, "owned_by": "metis-speech",
                                            "source": engine.model_name} for i in ids]}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        require("tts")
        try:
            req = json.loads(await _read_body(request, json_limit, "the request body"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the body must be a JSON object", "invalid_json") from None
        if not isinstance(req, dict):
            raise ApiError(400, "the body must be a JSON object", "invalid_json")
        text = req.get("input")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "input is empty; give the text to speak", "empty_input", "input")
        if len(text) > MAX_INPUT_CHARS:
            raise ApiError(400, f"input is {len(text)} characters; the limit is {MAX_INPUT_CHARS}", "input_too_long", "input")
        model = req.get("model")
        if model not in (None, "") and model not in SPEECH_MODELS:
            raise ApiError(404, f"unknown model {model!r}; use one of {', '.join(SPEECH_MODELS)}", "model_not_found", "model")
        fmt = _format(req.get("response_format"), "mp3")
        speed = _number(req.get("speed"), "speed", float, 0.25, 4.0) or 1.0
        seed = _number(req.get("seed"), "seed", int, 0, 2**31 - 1000)
        language = req.get("language") or "auto"
        if not isinstance(language, str):
            raise ApiError(400, "language must be a string such as en, zh, ja or auto", param="language")
        from ..text import normalize_language

        try:
            normalize_language(language)
        except MetisError as e:
            raise ApiError(400, str(e), param="language") from None
        settings = engine.settings(_number(req.get("steps"), "steps", int, 1, 200),
                                   _number(req.get("guidance"), "guidance", float, 0.0, 20.0),
                                   _s2a_steps(req.get("s2a_steps")))
        prompt, prompt_text = voice_prompt(req.get("voice", "default"))
        stream_format = req.get("stream_format")
        stream = req.get("stream", False) is True or stream_format in ("audio", "sse")
        if stream_format not in (None, "audio", "sse"):
            raise ApiError(400, f"stream_format must be 'audio' or 'sse', got {stream_format!r}", param="stream_format")
        item = {"text": text, "prompt": prompt, "prompt_text": prompt_text, "speed": speed, "seed": seed}
        if not stream:
            return await respond(await run_one("tts", batch_key(settings, language), item), fmt)
        if stream_format != "sse" and fmt not in STREAM_FORMATS:
            raise ApiError(400, f"streamed audio comes as {', '.join(STREAM_FORMATS)}; got response_format {fmt!r}",
                           "invalid_format", "response_format")
        sentences = split_sentences(text, language, 300)
        items = [dict(item, text=s, seed=None if seed is None else seed + k) for k, s in enumerate(sentences)]
        keys = [batch_key(settings, language, "first")] + [batch_key(settings, language)] * (len(items) - 1)
        jobs = batcher.submit_jobs("tts", keys, items)
        return _stream(jobs, fmt, stream_format == "sse")

    def _stream(jobs, fmt: str, sse: bool):
        async def pieces():
            total = len(jobs)
            try:
                for k, job in enumerate(jobs):
                    out = await job.future
                    wav = out.wav
                    if k < total - 1:
                        wav = np.concatenate([wav, np.zeros(int(SENTENCE_GAP_S * out.sample_rate), np.float32)])
                    if fmt == "wav":
                        chunk = (wav_stream_header(out.sample_rate) if k == 0 else b"") + pcm16(wav)
                    else:
                        chunk = await run_in_threadpool(encode, wav, out.sample_rate, fmt)
                    if not sse:
                        yield chunk
                    else:
                        event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode(),
                                 "sentence": k + 1, "sentences": total, "sample_rate": out.sample_rate}
                        yield f"data: {json.dumps(event)}\n\n".encode()
                if sse:
                    yield b'data: {"type": "speech.audio.done"}\n\n'
            except Exception as e:  # noqa: BLE001 - headers are sent: end the stream, say why in SSE
                log.warning("stream ended early: %s", e)
                if sse:
                    try:
                        a = _api_error(e)
                        err = {"type": "error", "error": {"message": a.message, "code": a.code}}
                    except Exception:  # noqa: BLE001
                        err = {"type": "error", "error": {"message": "internal server error", "code": "internal_error"}}
                    yield f"data: {json.dumps(err)}\n\n".encode()
            finally:
                for job in jobs:  # a client that went away frees its queued sentences
                    if not job.future.done():
                        job.future.cancel()

        media = "text/event-stream" if sse else FORMATS[fmt]
        return StreamingResponse(pieces(), media_type=media, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def task_request(request: Request, task: str, needs_prompt: bool):
        require(task)
        fields, files = _multipart(await _read_body(request, upload_limit + 65536, "the upload"),
                                   request.headers.get("content-type", ""))
        fmt = _format(fields.get("response_format"), "wav")
        seed = _number(fields.get("seed"), "seed", int, 0, 2**31 - 1000)
        settings = engine.settings(_number(fields.get("steps"), "steps", int, 1, 200),
                                   _number(fields.get("guidance"), "guidance", float, 0.0, 20.0),
                                   _s2a_steps(fields.get("s2a_steps")))
        refine = fields.get("refine")
        if refine not in (None, ""):
            if task != "se":
                raise ApiError(400, "refine applies to /v1/audio/enhance only", param="refine")
            if refine not in REFINE_MODES:
                raise ApiError(400, f"refine must be one of {', '.join(REFINE_MODES)}, got {refine!r}", param="refine")
            settings = dict(settings, refine=refine)
        item: Dict[str, Any] = {"seed": seed}
        if needs_prompt:
            if "prompt" in files and fields.get("voice"):
                raise ApiError(400, "give either a voice id or a prompt file, not both", param="voice")
            if "prompt" in files:
                item["prompt"] = await audio_field(files, "prompt", "prompt", MIN_VOICE_S, MAX_VOICE_S)
            else:
                item["prompt"] = voice_prompt(fields.get("voice") or "default")[0]
        item["audio"] = await audio_field(files, "file", {"se": "input", "vc": "source", "tse": "mixture"}[task])
        return await respond(await run_one(task, batch_key(settings), item), fmt)

    @app.post("/v1/audio/enhance")
    async def enhance(request: Request):
        return await task_request(request, "se", False)

    @app.post("/v1/audio/convert")
    async def convert(request: Request):
        return await task_request(request, "vc", True)

    @app.post("/v1/audio/extract")
    async def extract(request: Request):
        return await task_request(request, "tse", True)

    @app.get("/v1/voices")
    async def list_voices():
        return {"object": "list", "data": [v.public() for v in await run_in_threadpool(voices.list)]}

    @app.post("/v1/voices", status_code=201)
    async def add_voice(request: Request):
        fields, files = _multipart(await _read_body(request, upload_limit + 65536, "the upload"),
                                   request.headers.get("content-type", ""))
        name = "file" if "file" in files else "audio"
        if name not in files:
            raise ApiError(400, "missing the reference recording (multipart file field 'file')", "missing_file", "file")
        wav, sr = await run_in_threadpool(decode_upload, files[name], "the recording", tmp_dir)
        transcript = fields.get("transcript", fields.get("text", ""))
        voice = await run_in_threadpool(voices.add, wav, sr, transcript, fields.get("name"))
        return JSONResponse(voice.public(), status_code=201)

    @app.get("/v1/voices/{voice_id}")
    async def get_voice(voice_id: str):
        return voices.get(voice_id).public()

    @app.get("/v1/voices/{voice_id}/audio")
    async def voice_audio(voice_id: str):
        return FileResponse(voices.get(voice_id).audio, media_type="audio/wav")

    @app.delete("/v1/voices/{voice_id}")
    async def delete_voice(voice_id: str):
        await run_in_threadpool(voices.delete, voice_id)
        return {"id": voice_id, "object": "voice", "deleted": True}

    return app


def _version() -> str:
    from .. import __version__

    return __version__
