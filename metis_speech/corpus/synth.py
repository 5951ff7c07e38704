"""Offline speech synthesis with phoneme timings, speaker perturbation and levelling.

Engines (Debian packages): ``flite`` (``-psdur`` prints segment end times), ``festival``
(a Scheme script prints the Segment relation's end times), and ``libespeak-ng`` through
ctypes (phoneme events carry sample positions). Each returns (wav (S,) float32, sr,
phones) with ``phones`` a list of ``(label, start_s, end_s)``.

:func:`perturb` changes pitch, vocal-tract length and tempo with the WORLD vocoder
(``pyworld``): F0 is scaled by 2**(semitones/12), the spectral envelope and aperiodicity
are warped along frequency by ``vtl``, and the frame period is divided by ``tempo`` (so
phone times scale by 1/tempo).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..audio import load_audio, resample
from .config import SAMPLE_RATE, CorpusError
from .voices import Perturbation, Voice

__all__ = ["Phones", "synthesize", "espeak_synth", "perturb", "normalize_level", "render_utterance", "check_tools"]

Phones = List[Tuple[str, float, float]]

TARGET_RMS_DB = -25.0  # active-speech level of every clean utterance
PEAK_LIMIT = 0.9
APT_HINT = "apt-get install espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox ffmpeg"


def check_tools(need_video: bool = False) -> None:
    """Raise CorpusError naming the first missing synthesiser, library or tool."""
    for tool in ("flite", "festival"):
        if shutil.which(tool) is None:
            raise CorpusError(f"{tool} is not installed ({APT_HINT})")
    voices = Path("/usr/share/festival/voices")
    for sub in ("english/kal_diphone", "english/ked_diphone", "us/cmu_us_slt_arctic_hts"):
        if not (voices / sub).is_dir():
            raise CorpusError(f"festival voice {sub.split('/')[-1]} is not installed ({APT_HINT})")
    try:
        ctypes.CDLL("libespeak-ng.so.1")
    except OSError:
        raise CorpusError(f"libespeak-ng is not installed ({APT_HINT})") from None
    if need_video and shutil.which("ffmpeg") is None:
        raise CorpusError(f"ffmpeg is not installed; it writes the L2S videos ({APT_HINT})")
    try:
        _pyworld()
    except ImportError:
        raise CorpusError("pyworld is not installed (pip install 'metis-speech[corpus]')") from None


# --------------------------------------------------------------------------- flite
def _flite(voice: Voice, text: str, tmp: Path) -> Tuple[np.ndarray, int, Phones]:
    (tmp / "in.txt").write_text(text + "\n")
    out = tmp / "out.wav"
    proc = subprocess.run(["flite", "-voice", voice.name, "-psdur", "-f", str(tmp / "in.txt"), "-o", str(out)], capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise CorpusError(f"flite -voice {voice.name} failed: {proc.stderr.strip()[-200:]}")
    wav, sr = load_audio(out)
    phones: Phones = []
    start = 0.0
    for tok in proc.stdout.split():
        if ":" not in tok:
            continue
        label, end = tok.rsplit(":", 1)
        end = float(end)
        phones.append((label, start, end))
        start = end
    return wav, sr, phones


# --------------------------------------------------------------------------- festival
def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def _festival(voice: Voice, text: str, tmp: Path) -> Tuple[np.ndarray, int, Phones]:
    out = tmp / "out.wav"
    script = (
        f"(voice_{voice.name})\n"
        f"(set! utt (Utterance Text {_scheme_string(text)}))\n"
        "(utt.synth utt)\n"
        f"(utt.save.wave utt {_scheme_string(str(out))} 'riff)\n"
        "(mapcar (lambda (s) (format t \"SEG %s %f\\n\" (item.name s) (item.feat s \"end\"))) (utt.relation.items utt 'Segment))\n"
    )
    (tmp / "run.scm").write_text(script)
    proc = subprocess.run(["festival", "-b", str(tmp / "run.scm")], capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise CorpusError(f"festival voice {voice.name} failed: {(proc.stderr or proc.stdout).strip()[-200:]}")
    wav, sr = load_audio(out)
    phones: Phones = []
    start = 0.0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "SEG":
            end = float(parts[2])
            phones.append((parts[1], start, end))
            start = end
    return wav, sr, phones


# --------------------------------------------------------------------------- espeak-ng
class _EspeakId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _EspeakId),
    ]


_ESPEAK_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent))
_ESPEAK = {}  # per process: lib, sample rate, callback and its buffers


def _espeak_lib():
    if "lib" not in _ESPEAK:
        lib = ctypes.CDLL("libespeak-ng.so.1")
        # AUDIO_OUTPUT_SYNCHRONOUS = 2, espeakINITIALIZE_PHONEME_EVENTS = 1
        sr = lib.espeak_Initialize(2, 0, None, 1)
        if sr <= 0:
            raise OSError("espeak_Initialize failed")
        state = {"chunks": [], "events": []}

        def callback(wav, n, events):
            if n > 0:
                state["chunks"].append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            i = 0
            while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
                if events[i].type == 7:  # espeakEVENT_PHONEME
                    state["events"].append((events[i].id.string.decode("ascii", "replace"), events[i].sample))
                i += 1
            return 0

        cb = _ESPEAK_CB(callback)
        lib.espeak_SetSynthCallback(cb)
        _ESPEAK.update(lib=lib, sr=sr, cb=cb, state=state)
    return _ESPEAK["lib"]


def _espeak_here(name: str, text: str, rate: int, pitch: int, prange: int) -> Tuple[np.ndarray, int, Phones]:
    lib = _espeak_lib()
    state = _ESPEAK["state"]
    state["chunks"].clear()
    state["events"].clear()
    if lib.espeak_SetVoiceByName(name.encode()) != 0:
        raise CorpusError(f"espeak-ng has no voice {name!r}")
    for param, value in ((1, rate), (2, 100), (3, pitch), (4, prange)):  # RATE, VOLUME, PITCH, RANGE
        lib.espeak_SetParameter(param, int(value), 0)
    data = text.encode("utf-8")
    # POS_CHARACTER = 1, espeakCHARS_UTF8 = 1
    if lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None) != 0:
        raise CorpusError(f"espeak-ng failed on {text[:40]!r}")
    lib.espeak_Synchronize()
    sr = _ESPEAK["sr"]
    if not state["chunks"]:
        raise CorpusError(f"espeak-ng produced no audio for {text[:40]!r}")
    wav = np.concatenate(state["chunks"]).astype(np.float32) / 32768.0
    total = len(wav) / sr
    phones: Phones = []
    ev = state["events"]
    for i, (label, sample) in enumerate(ev):
        start = sample / sr
        end = ev[i + 1][1] / sr if i + 1 < len(ev) else total
        if end > start:
            phones.append((label, start, min(end, total)))
    return wav, sr, phones


def espeak_synth(name: str, text: str, rate: int = 175, pitch: int = 50, prange: int = 50) -> Tuple[np.ndarray, int, Phones]:
    """espeak-ng voice ``lang+variant`` -> (wav, sr, phones).

    libespeak-ng keeps state from one utterance to the next (echo buffer, noise and
    flutter generators), so the same call would give different samples depending on what
    the process said before. Each call therefore runs in a freshly forked child that
    initialises the library itself: the output depends on the arguments alone."""
    import pickle

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: synthesise, send the pickled result, exit without cleanup
        os.close(rfd)
        try:
            payload = pickle.dumps((True, _espeak_here(name, text, rate, pitch, prange)))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            payload = pickle.dumps((False, CorpusError(str(e)) if not isinstance(e, CorpusError) else e))
        with os.fdopen(wfd, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise CorpusError(f"espeak-ng crashed on {text[:40]!r} (status {status})")
    ok, result = pickle.loads(data)
    if not ok:
        raise result
    return result


def synthesize(voice: Voice, text: str) -> Tuple[np.ndarray, int, Phones]:
    """Synthesise ``text`` with ``voice`` at the engine's own rate."""
    if voice.engine == "espeak":
        return espeak_synth(voice.name, text)
    with tempfile.TemporaryDirectory(prefix="metis-synth-") as tmp:
        if voice.engine == "flite":
            return _flite(voice, text, Path(tmp))
        if voice.engine == "festival":
            return _festival(voice, text, Path(tmp))
    raise ValueError(f"unknown engine {voice.engine}")


# --------------------------------------------------------------------------- perturbation
def _pyworld():
    """Import pyworld; its 0.3.x __init__ needs pkg_resources (setuptools<81) only to read
    its own version, so stand in for it where setuptools no longer ships it."""
    if "pyworld" in sys.modules:
        return sys.modules["pyworld"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            from importlib import metadata

            stub = types.ModuleType("pkg_resources")
            stub.get_distribution = lambda name: types.SimpleNamespace(version=metadata.version(name))  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = stub
        import pyworld

    return pyworld


def _warp_frequency(env: np.ndarray, factor: float) -> np.ndarray:
    """(frames, bins) envelope -> same shape with every frequency scaled by ``factor``."""
    n = env.shape[1]
    src = np.clip(np.arange(n) / factor, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo)[None, :]
    return np.ascontiguousarray(env[:, lo] * (1 - w) + env[:, hi] * w)


def perturb(wav: np.ndarray, sr: int, pert: Perturbation, phones: Optional[Phones] = None) -> Tuple[np.ndarray, Phones]:
    """Apply a perturbation with WORLD; identity returns the input unchanged."""
    phones = list(phones or [])
    if pert.is_identity:
        return wav, phones
    pw = _pyworld()
    x = wav.astype(np.float64)
    period = 5.0
    f0, t = pw.dio(x, sr, frame_period=period, speed=4)
    f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr)
    # aperiodicity is smooth in time: estimate it every other frame (d4c dominates the cost)
    ap_half = pw.d4c(x, np.ascontiguousarray(f0[::2]), np.ascontiguousarray(t[::2]), sr)
    ap = np.ascontiguousarray(np.repeat(ap_half, 2, axis=0)[: len(f0)])
    f0 = f0 * 2.0 ** (pert.pitch / 12.0)
    if pert.vtl != 1.0:
        sp = _warp_frequency(sp, pert.vtl)
        ap = _warp_frequency(ap, pert.vtl)
    y = pw.synthesize(f0, sp, ap, sr, frame_period=period / pert.tempo).astype(np.float32)
    phones = [(p, s / pert.tempo, e / pert.tempo) for p, s, e in phones]
    return y, phones


def normalize_level(wav: np.ndarray, sr: int, target_db: float = TARGET_RMS_DB) -> np.ndarray:
    """Scale to ``target_db`` dBFS RMS over active (non-silent) 20 ms frames, peak <= 0.9."""
    wav = np.asarray(wav, dtype=np.float32)
    hop = max(1, sr // 50)
    n = len(wav) // hop
    if n == 0 or not np.any(wav):
        return wav
    frames = wav[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    active = frames[rms > rms.max() * 10 ** (-40 / 20)]
    level = np.sqrt(np.mean(active.astype(np.float64) ** 2))
    gain = 10 ** (target_db / 20) / max(level, 1e-9)
    peak = float(np.abs(wav).max()) * gain
    if peak > PEAK_LIMIT:
        gain *= PEAK_LIMIT / peak
    return (wav * gain).astype(np.float32)


def render_utterance(voice: Voice, pert: Perturbation, text: str) -> Tuple[np.ndarray, Phones]:
    """text -> (24 kHz levelled wav (S,), phones) for speaker (voice, pert)."""
    wav, sr, phones = synthesize(voice, text)
    wav = resample(wav, sr, SAMPLE_RATE)
    wav, phones = perturb(wav, SAMPLE_RATE, pert, phones)
    duration = len(wav) / SAMPLE_RATE
    phones = [(p, round(s, 4), round(min(e, duration), 4)) for p, s, e in phones if s < duration]
    return normalize_level(wav, SAMPLE_RATE), phones
