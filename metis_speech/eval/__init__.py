"""Evaluation harness: score generated speech for each Metis task the way the field does.

Python API::

    from metis_speech.eval import load_items, evaluate, write_report, format_table
    items = load_items(Path("out/tts"), testset=Path("data/test/tts.jsonl"))
    report = evaluate(items, metrics="wer,sim,dnsmos")
    print(format_table(report)); write_report(report, Path("out/tts/eval"))

Single metrics work on (S,) float arrays: :func:`si_sdr`, :func:`pesq_wb`, :func:`stoi`,
:func:`dnsmos`, :func:`speaker_similarity`, :func:`transcribe`, :func:`wer`, :func:`cer`,
:func:`normalize_text`; :func:`measure` times a system under test (RTF, peak memory).
The command line is ``metis eval`` (:mod:`.cli`). Metric backends are optional
(``pip install 'metis-speech[eval]'``) and imported only when used.
"""

from .asr import get_asr, transcribe
from .backends import BackendMissingError, EvalError
from .manifest import TASKS, EvalItem, load_items, load_testset, match_folder
from .quality import DNSMOS, PESQ_MAX, dnsmos, pesq_wb, si_sdr, stoi
from .report import format_table, write_report
from .runner import METRIC_GROUPS, EvalConfig, EvalReport, evaluate, mean_ci, resolve_metrics
from .speaker import get_speaker_encoder, speaker_embedding, speaker_similarity
from .speed import Measurement, measure
from .text import cer, normalize_text, wer

__all__ = [
    "BackendMissingError", "DNSMOS", "EvalConfig", "EvalError", "EvalItem", "EvalReport", "Measurement",
    "METRIC_GROUPS", "PESQ_MAX", "TASKS", "cer", "dnsmos", "evaluate", "format_table", "get_asr",
    "get_speaker_encoder", "load_items", "load_testset", "match_folder", "mean_ci", "measure",
    "normalize_text", "pesq_wb", "resolve_metrics", "si_sdr", "speaker_embedding", "speaker_similarity",
    "stoi", "transcribe", "wer", "write_report",
]
