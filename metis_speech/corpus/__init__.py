"""Synthetic multi-speaker corpus for the five Metis tasks, made offline (``metis make-corpus``).

Data flow (one module each)::

    text.py    sentences (project grammar, Debian fortunes, word lists), hash-split train/dev/test
    voices.py  voices x perturbations = speakers; what is held out for the test sets
    plan.py    seed -> every utterance and test item (deterministic, prefix-stable)
    synth.py   flite / festival / espeak-ng + WORLD perturbation -> 24 kHz wav + phone times
    noise.py   synthetic noises, babble, pyroomacoustics rooms, mixing at an SNR
    face.py    phone times -> mouth track -> talking-face frames -> 25 fps mp4
    jobs.py    one unit of work per output file(s), a pure function of its spec
    build.py   parallel, resumable execution; manifests, test sets, summary

Python use::

    from metis_speech.corpus import CorpusConfig, build_corpus
    summary = build_corpus(CorpusConfig("out/corpus", minutes=10, seed=0, jobs=2))

Heavy dependencies (pyworld, pyroomacoustics, scipy, PIL) are imported only when used.
"""

from .config import TASKS, CorpusConfig, CorpusError

__all__ = ["CorpusConfig", "CorpusError", "TASKS", "build_corpus"]


def build_corpus(cfg: CorpusConfig, log=print):
    """See :func:`metis_speech.corpus.build.build_corpus`."""
    from .build import build_corpus as _build

    return _build(cfg, log=log)
