"""``metis doctor``: what is installed and usable here, one line each, with the fix.

Nothing is downloaded and the network is not contacted unless ``--network`` asks for it.
The exit status is 0 when the README's first command can run (torch, the text front end
with espeak-ng, the shipped small model), else 1.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional

__all__ = ["Check", "run_checks", "format_check"]

EVAL_BACKENDS = (
    # (import name, what it measures, pip name)
    ("pocketsphinx", "WER (speech recognition)", "pocketsphinx"),
    ("resemblyzer", "SIM (speaker similarity)", "resemblyzer"),
    ("speechmos", "DNSMOS", "speechmos"),
    ("pesq", "PESQ", "pesq"),
    ("pystoi", "STOI", "pystoi"),
)
OPTIONAL = (
    ("cv2", "lip-to-speech face finding (OpenCV)", "opencv-python-headless", "video"),
    ("jieba", "Chinese text (jieba)", "jieba", "zh"),
    ("pyopenjtalk", "Japanese text (pyopenjtalk)", "pyopenjtalk-plus", "ja"),
)


@dataclass
class Check:
    """One line of the report: ``status`` is ``ok``, ``warn`` (optional part missing) or
    ``fail`` (the README's first command cannot run)."""

    name: str
    status: str
    detail: str
    fix: str = ""


def format_check(c: Check) -> str:
    line = f"{c.status:4s}  {c.name:18s} {c.detail}"
    return line + (f"; fix: {c.fix}" if c.fix and c.status != "ok" else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:120]}" if text else type(e).__name__


def _import(name: str):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def check_torch() -> List[Check]:
    try:
        torch = _import("torch")
    except Exception as e:  # noqa: BLE001
        return [Check("torch", "fail", f"not importable ({_first_line(e)})", "pip install torch")]
    from .pipeline import pick_device

    device = pick_device(None)
    cuda = f", {torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else ", no CUDA"
    threads = torch.get_num_threads()
    out = [Check("torch", "ok", f"{torch.__version__}; device {device.type}{cuda}")]
    hint = "set OMP_NUM_THREADS (or torch.set_num_threads) to the cores you can give it"
    status = "warn" if threads > _cpus() else "ok"
    out.append(Check("torch threads", status, f"{threads} intra-op thread(s) on {_cpus()} usable CPU core(s)", hint))
    return out


def _cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_espeak() -> List[Check]:
    try:
        _import("phonemizer")
    except Exception as e:  # noqa: BLE001
        return [Check("phonemizer", "fail", f"not importable ({_first_line(e)})", "pip install phonemizer")]
    from .text import BackendUnavailableError, espeak

    lib = espeak.library()
    fix = "pip install espeakng-loader (or apt-get install espeak-ng)"
    if lib.kind == "missing":
        return [Check("espeak-ng", "fail", "not found: English, French, German and Korean text cannot be read", fix)]
    try:
        espeak.backend("en")
    except BackendUnavailableError as e:
        return [Check("espeak-ng", "fail", f"{lib.describe()[len('espeak-ng: '):]} but not usable ({e})", fix)]
    voices = [lang for lang in espeak.VOICES if lang == "en" or espeak.available(lang)]
    missing = [lang for lang in espeak.VOICES if lang not in voices]
    status = "ok" if not missing else "warn"
    detail = f"{lib.describe()[len('espeak-ng: '):]}; voices for {', '.join(voices)}"
    if missing:
        detail += f"; none for {', '.join(missing)}"
    return [Check("espeak-ng", status, detail, fix)]


def check_ffmpeg() -> List[Check]:
    have = [t for t in ("ffmpeg", "ffprobe") if shutil.which(t)]
    if len(have) == 2:
        return [Check("ffmpeg", "ok", f"{shutil.which('ffmpeg')} (videos for lip-to-speech, audio formats beyond wav/flac/ogg/mp3)")]
    return [Check("ffmpeg", "warn", f"{'ffprobe' if have else 'ffmpeg'} not found: lip-to-speech videos and unusual audio "
                                    "formats cannot be read", "apt-get install ffmpeg (brew install ffmpeg)")]


def _optional(module: str, what: str, pip_name: str, extra: str) -> Check:
    try:
        mod = _import(module)
    except Exception as e:  # noqa: BLE001 - any import failure makes it unusable
        return Check(module, "warn", f"not usable ({_first_line(e)}): no {what}",
                     f'pip install "metis-speech[{extra}]" (or pip install {pip_name})')
    version = getattr(mod, "__version__", "")
    return Check(module, "ok", f"{what}" + (f" ({version})" if version else ""))


def check_eval() -> List[Check]:
    return [_optional(m, what, pip, "eval") for m, what, pip in EVAL_BACKENDS]


def check_optional() -> List[Check]:
    return [_optional(m, what, pip, extra) for m, what, pip, extra in OPTIONAL]


def check_models() -> List[Check]:
    from . import hub
    from .shipped import NO_OFFICIAL_WEIGHTS, SMALL_MODEL_DIR, small_model_dir, small_model_tasks

    out = []
    d = small_model_dir()
    if d is None:
        out.append(Check("shipped model", "fail", f"not in this installation ({SMALL_MODEL_DIR})",
                         "reinstall metis-speech (pip install -e .) from a complete checkout"))
    else:
        out.append(Check("shipped model", "ok", f"{d}: {', '.join(small_model_tasks())}"))
    for task in ("tts", "vc", "tse", "se", "omni"):
        if task in NO_OFFICIAL_WEIGHTS:
            continue
        r = hub.official_cache(task)
        total = len(r.present) + len(r.missing)
        if r.complete:
            out.append(Check(f"official {task}", "ok", f"all {total} files in the Hugging Face cache ({hub.hub_cache_dir()})"))
        else:
            out.append(Check(f"official {task}", "warn", f"{len(r.present)} of {total} files cached (first missing: {r.missing[0]})",
                             f"metis download {task} (or --model hub, which downloads on first use)"))
    return out


def check_network(probe: bool) -> List[Check]:
    from . import hub
    from .errors import HubError

    if hub.offline():
        return [Check("hub", "ok", "HF_HUB_OFFLINE is set: only cached or local files are used")]
    if not probe:
        return [Check("hub", "ok", f"{hub._endpoint()} (not contacted; metis doctor --network checks it)")]
    try:
        hub.check_reachable("nothing (doctor)")
    except HubError as e:
        return [Check("hub", "warn", f"{hub._endpoint()} cannot be reached", str(e).split("; ", 1)[-1])]
    return [Check("hub", "ok", f"{hub._endpoint()} reachable")]


def run_checks(network: bool = False) -> List[Check]:
    groups: List[Callable[[], List[Check]]] = [check_torch, check_espeak, check_ffmpeg, check_eval, check_optional,
                                               check_models, lambda: check_network(network)]
    out: List[Check] = []
    for g in groups:
        try:
            out.extend(g())
        except Exception as e:  # noqa: BLE001 - a broken check is reported, not raised
            out.append(Check(getattr(g, "__name__", "check"), "fail", f"the check itself failed ({_first_line(e)})"))
    return out


def _cmd(args) -> int:
    checks = run_checks(network=args.network)
    print(f"metis-speech {_version()} on Python {sys.version.split()[0]}")
    for c in checks:
        print(format_check(c))
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        print(f"{len(failed)} problem(s) stop the README's first command: {', '.join(failed)}")
        return 1
    return 0


def _version() -> Optional[str]:
    from . import __version__

    return __version__


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="what is installed and usable here (espeak-ng, ffmpeg, eval back ends, torch, "
                                      "models), one line each with the fix",
                       description="Report what is installed and usable, one line each with the fix. Nothing is "
                                   "downloaded; the Hub is contacted only with --network.")
    p.add_argument("--network", action="store_true", help="also check that the Hugging Face Hub can be reached")
    p.set_defaults(func=_cmd)
