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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .errors import HubError, MetisError

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


def resolve(key: str, source: Union[str, os.PathLike] = "hub") -> Path:
    """Local path of official file ``key``: from the Hub cache (downloading if needed) or
    from a local directory. Raises HubError / MetisError with a one-line explanation."""
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
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a declared dependency
        raise HubError("huggingface_hub is not installed; pip install huggingface_hub") from None
    try:
        return Path(hf_hub_download(f.repo, f.path))
    except Exception as e:  # noqa: BLE001 - network, auth, missing-entry errors all end here
        reason = type(e).__name__
        raise HubError(
            f"cannot fetch {f.repo}:{f.path} ({f.size_hint}) from the Hugging Face Hub ({reason}). "
            f"Download it where the Hub is reachable (`metis download TASK --to DIR`) and pass that "
            f"directory as the model source (--model DIR), laid out as DIR/{f.repo.split('/')[-1]}/{f.path}"
        ) from None


def download(task_or_keys: Union[str, Sequence[str]], to: Optional[Union[str, os.PathLike]] = None) -> Dict[str, Path]:
    """Fetch every file a task needs (or the given FILES keys). With ``to``, copies are
    laid out as ``to/<repo name>/<path>`` so the directory can be used as a source."""
    keys = files_for_task(task_or_keys) if isinstance(task_or_keys, str) else list(task_or_keys)
    out = {}
    for key in keys:
        f = FILES[key]
        if to is None:
            out[key] = resolve(key, "hub")
            continue
        from huggingface_hub import hf_hub_download

        dest = Path(to) / f.repo.split("/")[-1]
        try:
            out[key] = Path(hf_hub_download(f.repo, f.path, local_dir=str(dest)))
        except Exception as e:  # noqa: BLE001
            raise HubError(f"cannot fetch {f.repo}:{f.path} from the Hugging Face Hub ({type(e).__name__}); check the network or HF_ENDPOINT") from None
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
