"""Registry of the official checkpoint files, and fetching them (Hub or a local copy).

A user names a task (``tts``, ``vc``, ``tse``, ``se``, ``omni``, ``l2s``) or a component
(``s2a_full``, ``acoustic_decoder``, ...); this module knows which repository file holds
it, which preset config it needs, and for fine-tuned tasks which LoRA/adapter files and
LoRA rank/alpha go with the base.

``source`` everywhere is either ``"hub"`` (download through huggingface_hub, cached) or a
local directory laid out like the Hub repositories: ``DIR/<path in repo>`` or
``DIR/<repo name>/<path in repo>`` (e.g. ``DIR/MaskGCT/t2s_model/model.safetensors``), which
is what ``metis download TASK --to DIR`` writes.
"""

from __future__ import annotations

import contextvars
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .errors import HubError, MetisError
from .hubenv import hub_cache_dir, metis_cache_dir, offline  # noqa: F401 - re-exported

__all__ = ["OfficialFile", "TaskSpec", "FILES", "TASKS", "resolve", "files_for_task", "download"]


@dataclass(frozen=True)
class OfficialFile:
    repo: str
    path: str
    component: str  # preset component name the file's weights fit
    size_hint: str = ""


FILES: Dict[str, OfficialFile] = {
    "metis_base": OfficialFile("amphion/metis", "metis_base/model.safetensors", "stage1_base", "2.9 GB"),
    "t2s": OfficialFile("amphion/MaskGCT", "t2s_model/model.safetensors", "stage1_tts", "3.0 GB"),
    "vc_lora": OfficialFile("amphion/metis", "metis_vc/metis_vc_lora_16.safetensors", "stage1_adapter", "36 MB"),
    "vc_adapter": OfficialFile("amphion/metis", "metis_vc/metis_vc_lora_16_adapter.safetensors", "stage1_adapter", "63 MB"),
    "tse_lora": OfficialFile("amphion/metis", "metis_tse/metis_tse_lora_32.safetensors", "stage1_adapter", "72 MB"),
    "tse_adapter": OfficialFile("amphion/metis", "metis_tse/metis_tse_lora_32_adapter.safetensors", "stage1_adapter", "63 MB"),
    "se_lora": OfficialFile("amphion/metis", "metis_se/metis_se_lora_32.safetensors", "stage1_adapter", "72 MB"),
    "se_adapter": OfficialFile("amphion/metis", "metis_se/metis_se_lora_32_adapter.safetensors", "stage1_adapter", "63 MB"),
    "omni": OfficialFile("amphion/metis", "metis_omni/metis_omni.safetensors", "stage1_omni", "3.0 GB"),
    "l2s": OfficialFile("amphion/metis", "metis_l2s/metis_l2s.safetensors", "stage1_l2s", "3.0 GB"),
    "s2a_1layer": OfficialFile("amphion/MaskGCT", "s2a_model/s2a_model_1layer/model.safetensors", "s2a_1layer", "1.3 GB"),
    "s2a_full": OfficialFile("amphion/MaskGCT", "s2a_model/s2a_model_full/model.safetensors", "s2a_full", "1.4 GB"),
    "semantic_codec": OfficialFile("amphion/MaskGCT", "semantic_codec/model.safetensors", "semantic_codec", "177 MB"),
    "acoustic_encoder": OfficialFile("amphion/MaskGCT", "acoustic_codec/model.safetensors", "acoustic_encoder", "170 MB"),
    "acoustic_decoder": OfficialFile("amphion/MaskGCT", "acoustic_codec/model_1.safetensors", "acoustic_decoder", "513 MB"),
}


@dataclass(frozen=True)
class TaskSpec:
    """How stage 1 of a task is assembled from official files."""

    component: str  # preset component of the stage-1 network
    weights: str  # FILES key of the full stage-1 file (the base, for LoRA tasks)
    lora: Optional[str] = None
    adapter: Optional[str] = None
    lora_rank: Optional[int] = None
    lora_alpha: Optional[float] = None
    needs: Tuple[str, ...] = ("semantic_codec", "s2a_1layer", "s2a_full", "acoustic_encoder", "acoustic_decoder")
    note: str = ""


TASKS: Dict[str, TaskSpec] = {
    "tts": TaskSpec("stage1_tts", "t2s", note="Metis-TTS is exactly the MaskGCT T2S checkpoint"),
    "vc": TaskSpec("stage1_adapter", "metis_base", "vc_lora", "vc_adapter", 16, 32.0),
    "tse": TaskSpec("stage1_adapter", "metis_base", "tse_lora", "tse_adapter", 32, 64.0),
    "se": TaskSpec("stage1_adapter", "metis_base", "se_lora", "se_adapter", 32, 64.0),
    "omni": TaskSpec("stage1_omni", "omni", note="phones + gated adapter; also text-guided TSE"),
    "l2s": TaskSpec("stage1_l2s", "l2s", note="needs a visual encoder (not published by the reference)"),
    "base": TaskSpec("stage1_base", "metis_base", note="the unconditional pre-trained model"),
}


def files_for_task(task: str) -> List[str]:
    """Every FILES key a task needs (stage 1, LoRA/adapter, S2A, codecs)."""
    if task not in TASKS:
        raise MetisError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    spec = TASKS[task]
    keys = [spec.weights] + [k for k in (spec.lora, spec.adapter) if k] + list(spec.needs)
    return list(dict.fromkeys(keys))


def _local_candidates(root: Path, f: OfficialFile) -> List[Path]:
    repo_name = f.repo.split("/")[-1]
    return [root / f.path, root / repo_name / f.path, root / f.repo / f.path]


# -------------------------------------------------------------- other official files
W2V_BERT_REPO = "facebook/w2v-bert-2.0"
"""The SSL front end of the official models (transformers' Wav2Vec2BertModel)."""
W2V_BERT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")

OFFICIAL_STATS_COMMIT = "d3de90f02e7f1c7dbc24b04d52fe1b8ef438effe"
OFFICIAL_STATS_URL = (
    f"https://raw.githubusercontent.com/open-mmlab/Amphion/{OFFICIAL_STATS_COMMIT}"
    "/models/tts/maskgct/ckpt/wav2vec2bert_stats.pt"
)
OFFICIAL_STATS_SHA256 = "c9c176c2b8850ab2e3ba828bbfa969deaf4566ce55db5f2687b8430b87526ad2"
"""The w2v-BERT normalisation statistics of the reference (not on the Hub; fetched by URL)."""

PHONE_TASKS = ("tts", "omni")
"""Tasks whose official weights read phone ids of the official phone vocabulary."""


def official_stats_file() -> Path:
    """Where the official w2v-BERT statistics are kept once downloaded."""
    return metis_cache_dir() / f"amphion-{OFFICIAL_STATS_COMMIT[:12]}" / "wav2vec2bert_stats.pt"


def cached_file(repo: str, path: str) -> Optional[Path]:
    """The Hub cache's copy of ``repo:path`` (main revision), or None; never uses the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, path, cache_dir=str(hub_cache_dir()))
    except Exception:  # noqa: BLE001 - a malformed cache counts as absent
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def cached_ssl_dir() -> Optional[Path]:
    """The cached snapshot folder of w2v-BERT 2.0 when every file the model needs is there."""
    paths = [cached_file(W2V_BERT_REPO, name) for name in W2V_BERT_FILES]
    if any(p is None for p in paths):
        return None
    folders = {p.parent for p in paths}
    return folders.pop() if len(folders) == 1 else None


@dataclass(frozen=True)
class CacheReport:
    """Which official files of a task are already on this machine (no network used)."""

    task: str
    present: List[str]
    missing: List[str]

    @property
    def complete(self) -> bool:
        return not self.missing


def official_cache(task: str) -> CacheReport:
    """Every file the official weights of ``task`` need (stage 1, LoRA/adapter, S2A, codecs,
    w2v-BERT 2.0, its statistics and, for phone tasks, the phone vocabulary), looked up in the
    Hugging Face cache and metis-speech's cache folder."""
    present, missing = [], []
    for key in files_for_task(task):
        f = FILES[key]
        (present if cached_file(f.repo, f.path) else missing).append(f"{f.repo}:{f.path}")
    for name in W2V_BERT_FILES:
        (present if cached_file(W2V_BERT_REPO, name) else missing).append(f"{W2V_BERT_REPO}:{name}")
    (present if official_stats_file().is_file() else missing).append("w2v-BERT statistics (wav2vec2bert_stats.pt)")
    if task in PHONE_TASKS:
        from .text.vocab import ENV_VAR, official_cache_file

        have = official_cache_file().is_file() or bool(os.environ.get(ENV_VAR))
        (present if have else missing).append("official phone vocabulary (vocab.json)")
    return CacheReport(task, present, missing)


# -------------------------------------------------------------- reaching the Hub
_TASK: "contextvars.ContextVar[str]" = contextvars.ContextVar("metis_hub_task", default="TASK")


@contextmanager
def for_task(task: Optional[str]):
    """Name ``task`` in the advice of fetch errors raised inside the block."""
    token = _TASK.set(task or "TASK")
    try:
        yield
    finally:
        _TASK.reset(token)


def what_to_do(task: str = "TASK") -> str:
    """The ways out when the official files cannot be fetched here."""
    if task == "TASK":
        task = _TASK.get()
    return (f"on a machine with network run `metis download {task} --to DIR`, copy DIR here and pass "
            f"--model DIR; or use --model small (the small model shipped with metis-speech)")


def _endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except ImportError:  # pragma: no cover
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


PROBE_TIMEOUT_S = 5.0


def check_reachable(what: str, task: str = "TASK", timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail at once, in one line, when the Hub cannot be used: HF_HUB_OFFLINE is set, or a
    TCP connection to its endpoint cannot be opened within ``timeout`` seconds. Skipped when
    a proxy is configured (the proxy decides what is reachable)."""
    if offline():
        raise HubError(f"cannot fetch {what}: it is not on this machine and HF_HUB_OFFLINE is set; {what_to_do(task)}")
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or type(e).__name__)
        raise HubError(f"cannot fetch {what}: the Hugging Face Hub ({host}) cannot be reached ({reason}); {what_to_do(task)}") from None


@contextmanager
def quiet_hub():
    """Keep huggingface_hub's and transformers' retry and warning messages off the terminal
    (a failure becomes one HubError line instead); progress bars stay."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "transformers", "urllib3", "httpx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _fetch(f: OfficialFile, local_dir: Optional[Path] = None, task: str = "TASK") -> Path:
    """Download one official file (the reachability check first, then quietly)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a declared dependency
        raise HubError("huggingface_hub is not installed; pip install huggingface_hub") from None
    what = f"{f.repo}:{f.path} ({f.size_hint})"
    check_reachable(what, task)
    kwargs = {"local_dir": str(local_dir)} if local_dir is not None else {"cache_dir": str(hub_cache_dir())}
    try:
        with quiet_hub():
            return Path(hf_hub_download(f.repo, f.path, etag_timeout=PROBE_TIMEOUT_S, **kwargs))
    except Exception as e:  # noqa: BLE001 - network, auth, missing-entry errors all end here
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        reason = type(e).__name__ + (f": {detail}" if detail else "")
        raise HubError(f"cannot fetch {what} from the Hugging Face Hub ({reason}); {what_to_do(task)}") from None


def resolve(key: str, source: Union[str, os.PathLike] = "hub", task: str = "TASK") -> Path:
    """Local path of official file ``key``: from a local directory, else from the Hub cache
    (without touching the network when it is there), else downloaded. Raises HubError /
    MetisError with a one-line explanation."""
    if key not in FILES:
        raise MetisError(f"unknown official file {key!r}; known: {sorted(FILES)}")
    f = FILES[key]
    if str(source) != "hub":
        root = Path(source)
        if not root.is_dir():
            raise MetisError(f"model directory {root} does not exist")
        for cand in _local_candidates(root, f):
            if cand.is_file():
                return cand
        raise MetisError(
            f"{root}: missing {f.path} (from {f.repo}); expected it at {root / f.path} or "
            f"{root / f.repo.split('/')[-1] / f.path}"
        )
    cached = cached_file(f.repo, f.path)
    if cached is not None:
        return cached
    return _fetch(f, task=task)


def download(task_or_keys: Union[str, Sequence[str]], to: Optional[Union[str, os.PathLike]] = None) -> Dict[str, Path]:
    """Fetch every file a task needs (or the given FILES keys). For a task this includes
    w2v-BERT 2.0, its statistics and (TTS, omni) the phone vocabulary, so that afterwards the
    task runs without the network. With ``to``, copies are laid out as ``to/<repo
    name>/<path>``, ``to/w2v-bert-2.0/``, ``to/wav2vec2bert_stats.pt`` and
    ``to/phone_vocab.json``, and the directory can be used as a source (``--model DIR``)."""
    task = task_or_keys if isinstance(task_or_keys, str) else "TASK"
    keys = files_for_task(task_or_keys) if isinstance(task_or_keys, str) else list(task_or_keys)
    out = {}
    for key in keys:
        f = FILES[key]
        if to is None:
            out[key] = resolve(key, "hub", task)
        else:
            out[key] = _fetch(f, Path(to) / f.repo.split("/")[-1], task)
    if isinstance(task_or_keys, str):
        out.update(_download_extras(task, None if to is None else Path(to)))
    return out


def _download_extras(task: str, to: Optional[Path]) -> Dict[str, Path]:
    import shutil

    out = {}
    for name in W2V_BERT_FILES:
        f = OfficialFile(W2V_BERT_REPO, name, "ssl")
        if to is None:
            out[f"w2v-bert-2.0/{name}"] = cached_file(f.repo, f.path) or _fetch(f, task=task)
        else:
            out[f"w2v-bert-2.0/{name}"] = _fetch(f, to / "w2v-bert-2.0", task)
    from .models.ssl import official_stats_path

    with quiet_hub():
        stats = official_stats_path()
    out["ssl_stats"] = stats
    if task in PHONE_TASKS:
        from .text.vocab import ENV_VAR, official_cache_file, official_vocab

        official_vocab()  # checked: from $METIS_PHONE_VOCAB, the cache, or downloaded into it
        out["phone_vocab"] = Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else official_cache_file()
    if to is not None:
        for key, name in (("ssl_stats", "wav2vec2bert_stats.pt"), ("phone_vocab", "phone_vocab.json")):
            if key in out:
                shutil.copyfile(out[key], to / name)
                out[key] = to / name
    return out


def _cmd_download(args) -> int:
    keys = files_for_task(args.task)
    print(f"task {args.task}: {len(keys)} files")
    for key in keys:
        f = FILES[key]
        print(f"  {f.repo}:{f.path}  ({f.size_hint})")
    paths = download(args.task, args.to)
    for key, p in paths.items():
        print(f"{key}: {p}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "download",
        help="pre-fetch the official files of a task into the local cache",
        description="Download every official file a task needs (stage 1, LoRA/adapter, S2A, codecs) "
        "from the Hugging Face Hub. With --to DIR the files are laid out so that DIR can be passed as --model.",
    )
    p.add_argument("task", choices=sorted(TASKS), help="task whose files to fetch")
    p.add_argument("--to", help="copy the files into this directory instead of only the Hub cache")
    p.set_defaults(func=_cmd_download)
