"""``metis serve``: load the task models once and serve them over HTTP (uvicorn).

    metis serve [--host 127.0.0.1] [--port 8000] [--model auto|small|hub|DIR|random:tiny]
                [--tasks tts,se] [--device cpu] [--data-dir DIR] [--max-batch 8] ...

The port opens once every task's networks are loaded, so ``GET /health`` answering means
ready. Needs the ``serve`` extra (``pip install 'metis-speech[serve]'``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import MetisError


def _tasks(text):
    return [t.strip() for t in str(text).split(",") if t.strip()] if text else None


def _run(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ModuleNotFoundError as e:
        raise MetisError(f"metis serve needs {e.name}: pip install 'metis-speech[serve]'") from None
    from .app import ServeConfig, create_app
    from .engine import Engine
    from ..tasks_cli import _s2a_steps

    if not 0 < args.port < 65536:
        raise MetisError(f"--port must be between 1 and 65535, got {args.port}")
    for name in ("max_batch", "max_queue"):
        if getattr(args, name) < 1:
            raise MetisError(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_wait_ms < 0 or args.max_upload_mb <= 0:
        raise MetisError("--max-wait-ms must be >= 0 and --max-upload-mb > 0")
    if args.steps is not None and not 1 <= args.steps <= 200:
        raise MetisError(f"--steps must be between 1 and 200, got {args.steps}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    defaults = {"steps": args.steps, "guidance": args.guidance, "s2a_steps": _s2a_steps(args.s2a_steps)}
    engine = Engine(args.model, _tasks(args.tasks), args.device, args.dtype, defaults, preset=args.preset,
                    quantize="int8" if args.int8 else None)
    print(f"metis serve: loading {', '.join(engine.tasks)} from {args.model} ...", file=sys.stderr)
    engine.load()
    config = ServeConfig(data_dir=Path(args.data_dir), max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                         max_queue=args.max_queue, max_upload_mb=args.max_upload_mb, default_voice=not args.no_default_voice)
    app = create_app(engine, config)
    print(f"metis serve: http://{args.host}:{args.port}/ (data in {Path(args.data_dir).resolve()})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                timeout_graceful_shutdown=5)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the tasks over HTTP: OpenAI-compatible speech, voices, a web page",
                       description="An HTTP server over the task API: POST /v1/audio/speech (OpenAI-compatible), "
                                   "/v1/audio/enhance|convert|extract, /v1/voices, /health, /metrics and a web page at /.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", default="auto", help="model source as for the task commands: auto, small, hub, a directory, "
                                                   "or random:tiny (default auto)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to serve (default: every one the model has; "
                                                 "with auto, those of the shipped small model)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the first available)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="compute precision")
    p.add_argument("--data-dir", default="metis-data", help="folder for saved voices and temporary files (default ./metis-data)")
    p.add_argument("--no-default-voice", action="store_true", help="do not offer the built-in 'default' voice")
    b = p.add_argument_group("batching and limits")
    b.add_argument("--max-batch", type=int, default=8, help="most items in one batched model call (1: no batching)")
    b.add_argument("--max-wait-ms", type=float, default=20.0, help="how long a batch waits for more items (default 20)")
    b.add_argument("--max-queue", type=int, default=64, help="queued items before answering 503 (default 64)")
    b.add_argument("--max-upload-mb", type=float, default=25.0, help="largest accepted upload in MB (default 25)")
    d = p.add_argument_group("decoding defaults (a request's own fields win)")
    d.add_argument("--preset", default="default", choices=["default", "fast"],
                   help="decoding defaults: the reference's, or 'fast' (fewer stage-1/S2A steps; README has its cost)")
    d.add_argument("--int8", action="store_true", help="CPU: int8 dynamic quantisation of stage 1 and S2A (opt-in; "
                   "faster, slightly different output)")
    d.add_argument("--steps", type=int, default=None, help="stage-1 decoding steps (default: the task's)")
    d.add_argument("--guidance", type=float, default=None, help="stage-1 guidance scale (default: the task's)")
    d.add_argument("--s2a-steps", default=None, help="S2A steps per RVQ layer, comma separated")
    d.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    o = p.add_argument_group("logging")
    o.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    o.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=_run)
