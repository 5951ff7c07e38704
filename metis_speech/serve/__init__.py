"""``metis serve``: an HTTP server over the task API (:class:`metis_speech.Metis`).

The server is a thin layer: every request becomes one item of a task API call, and the
batcher groups waiting items of the same task (and decoding settings) into one batched call.

==================  =====================================================================
module              what
==================  =====================================================================
``app.py``          the ASGI app (FastAPI): routes, request parsing, OpenAI error shape
``engine.py``       the loaded task models and the one function that runs a batch
``batcher.py``      the bounded queue and the batcher (max batch size, max wait)
``voices.py``       saved voices on disk (atomic writes), the built-in default voice
``audio_io.py``     decoding uploads, encoding responses (wav, flac, mp3, opus, aac, pcm)
``metrics.py``      Prometheus text exposition of counters, histograms and gauges
``cli.py``          the ``metis serve`` sub-command
``static/``         the web page served at ``/`` (plain HTML and JavaScript)
==================  =====================================================================

State lives only in the data folder (``--data-dir``): voices, and temporary files of
uploads that need ffmpeg to decode. Several replicas can share that folder.
"""

from .engine import SERVED_TASKS, source_tasks

__all__ = ["SERVED_TASKS", "source_tasks", "create_app", "ServeConfig"]


def __getattr__(name):  # the app needs FastAPI (the `serve` extra); import it only when asked
    if name in ("create_app", "ServeConfig"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'metis_speech.serve' has no attribute {name!r}")
