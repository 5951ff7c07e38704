"""The ``metis`` command line: a thin layer over the Python API.

Each sub-command lives in its own module, which exposes ``add_parser(subparsers)``; the
module is imported only when needed so that ``metis --help`` stays fast. A sub-command
function returns an exit status; any :class:`~metis_speech.errors.MetisError` becomes a
one-line ``error: ...`` message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .errors import MetisError

# sub-command name -> (module that defines add_parser, one-line help)
COMMANDS = {
    "tts": ("metis_speech.tasks_cli", "zero-shot text-to-speech in the voice of a prompt"),
    "vc": ("metis_speech.tasks_cli", "voice conversion: the source's words in the prompt's voice"),
    "tse": ("metis_speech.tasks_cli", "target speaker extraction (text-guided with the omni model)"),
    "se": ("metis_speech.tasks_cli", "speech enhancement: clean speech from a noisy recording"),
    "l2s": ("metis_speech.tasks_cli", "lip-to-speech: speech for a silent video of a speaking face"),
    "check-parity": ("metis_speech.conformance", "run a directory of conformance vectors and print one row per case"),
    "info": ("metis_speech.info", "the model each task uses and why, presets, official checkpoint files, parameter counts"),
    "doctor": ("metis_speech.doctor", "what is installed and usable here, one line each with the fix"),
    "download": ("metis_speech.hub", "pre-fetch the official files of a task into the local cache"),
    "make-corpus": ("metis_speech.corpus.cli", "build a synthetic multi-speaker corpus from offline voices"),
    "eval": ("metis_speech.eval.cli", "score generated speech (WER, speaker similarity, DNSMOS, PESQ, ...)"),
    "compare": ("metis_speech.eval.compare",
                "paired differences between two evaluations of the same items, with 95-percent intervals"),
    "prepare": ("metis_speech.training.prepare_cli", "tokenize audio into training shards (semantic/acoustic ids, conditions)"),
    "join-utterances": ("metis_speech.training.join",
                        "longer training utterances: a speaker's short ones joined with short pauses"),
    "train": ("metis_speech.training.cli", "train or fine-tune a network from a recipe (YAML)"),
    "bundle": ("metis_speech.bundle_cli", "assemble a model bundle from trained runs and a base bundle"),
    "serve": ("metis_speech.serve.cli", "serve the tasks over HTTP: OpenAI-compatible speech, voices, a web page"),
}


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="metis",
        description="Metis: unified speech generation (TTS, VC, TSE, SE, lip-to-speech) from one masked generative model.",
    )
    parser.add_argument("--version", action="version", version=f"metis-speech {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = COMMANDS[only][0] if only is not None else None
    done = set()
    for name, (module_name, help_text) in COMMANDS.items():
        if module_name in done:
            continue
        if wanted is not None and module_name != wanted:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                continue  # optional part of the package not present in this build
            raise
        module.add_parser(sub)
        done.add(module_name)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except MetisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
