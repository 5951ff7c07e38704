"""Reading and writing weights: safetensors only, strict key checks, LoRA and adapter files.

Every failure is a :class:`~metis_speech.errors.CheckpointError` with one line naming the
file and the offending key(s): a missing or truncated file, a file of the wrong kind or
size, a LoRA key that matches no module, a rank that disagrees with the configuration.

Official layouts handled here (METIS_SPEC.md §7, parity README §3):

- plain state_dicts without prefix (weight-normed convs as ``weight_g`` / ``weight_v``);
- adapter files whose keys are ``model.cond_adapter.*``;
- LoRA files with peft names ``model.<module path>.lora_{A,B}.default.weight``, merged as
  ``W += (alpha / r) · B @ A``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .errors import CheckpointError

__all__ = [
    "read_weights",
    "save_weights",
    "load_state_dict_strict",
    "load_weights",
    "map_weights",
    "check_keys",
    "build_empty",
    "merge_adapter",
    "merge_lora",
    "lora_state_dict",
    "adapter_state_dict",
    "count_parameters",
]

PathLike = Union[str, os.PathLike]
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl"}


def _short(keys: Sequence[str], n: int = 3) -> str:
    keys = sorted(keys)
    s = ", ".join(keys[:n])
    return s + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def read_weights(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a .safetensors file into a dict of CPU tensors (never unpickles)."""
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: refusing to read a pickle-based checkpoint; convert it to .safetensors"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weight file")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        size = path.stat().st_size
        raise CheckpointError(
            f"{path}: not a valid safetensors file ({size} bytes; truncated or corrupt?): {e}"
        ) from None


def save_weights(state: Dict[str, torch.Tensor], path: PathLike, metadata: Optional[dict] = None) -> Path:
    """Write tensors to .safetensors atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=str(path.parent))
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", **(metadata or {})})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def check_keys(
    module: nn.Module,
    shapes: Dict[str, Tuple[int, ...]],
    source: str,
    allow_missing: Iterable[str] = (),
) -> None:
    """Raise CheckpointError unless ``shapes`` (key -> shape) fits ``module`` exactly."""
    expected = module.state_dict()
    allow = [re.compile(p) for p in allow_missing]
    missing = [k for k in expected if k not in shapes and not any(p.match(k) for p in allow)]
    unexpected = [k for k in shapes if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_short(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_short(unexpected)}")
        hint = ""
        if unexpected and any(k.startswith("model.") for k in unexpected):
            hint = " (keys with a 'model.' prefix belong to an adapter or LoRA file)"
        raise CheckpointError(
            f"{source}: does not match {type(module).__name__}: " + "; ".join(parts) + hint
        )
    for k, shape in shapes.items():
        if tuple(shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{source}: key {k} has shape {tuple(shape)}, the configuration expects "
                f"{tuple(expected[k].shape)} (wrong model size or config?)"
            )


def _targets(module: nn.Module) -> Dict[str, torch.Tensor]:
    own = dict(module.named_parameters())
    own.update(dict(module.named_buffers()))
    return own


def load_state_dict_strict(
    module: nn.Module,
    state: Dict[str, torch.Tensor],
    source: str,
    allow_missing: Iterable[str] = (),
) -> None:
    """Copy ``state`` into ``module`` after checking every key and shape.

    ``allow_missing``: regexes of module keys that may be absent (e.g. an adapter that a
    separate file provides). Raises CheckpointError naming ``source`` and the keys.
    """
    check_keys(module, {k: tuple(v.shape) for k, v in state.items()}, source, allow_missing)
    own = _targets(module)
    with torch.no_grad():
        for k, v in state.items():
            target = own[k]
            if target.is_meta:
                raise CheckpointError(f"{source}: module is on the meta device; materialise it first")
            target.copy_(v.to(dtype=target.dtype))


_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def map_weights(path: PathLike) -> Optional[Dict[str, torch.Tensor]]:
    """The tensors of a safetensors file as views of one private (copy-on-write) memory map
    of it: nothing is read until used, the pages are the file's (page cache, shared between
    processes, dropped under memory pressure), and writing to a tensor copies only its pages.
    None when the file cannot be mapped this way (an unknown dtype, a misaligned tensor)."""
    import json
    import struct

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if n > size - 8:
            return None
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    out = {}
    for k, info in header.items():
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            return None
        start, end = info["data_offsets"]
        item = torch.empty((), dtype=dtype).element_size()
        offset = 8 + n + start
        if offset % item or (end - start) != item * _numel(info["shape"]):
            return None
        t = torch.empty(0, dtype=dtype)
        t.set_(storage, offset // item, tuple(info["shape"]), _contiguous_strides(info["shape"]))
        out[k] = t
    return out


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _contiguous_strides(shape) -> Tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(1, int(d))
    return tuple(reversed(strides))


def _assign_mapped(module: nn.Module, path: Path, allow_missing: Iterable[str]) -> bool:
    """Point the module's parameters and buffers at a memory map of ``path`` (no copy) when
    every tensor there has the module's dtype and the module is on the CPU; False otherwise."""
    mapped = map_weights(path)
    if mapped is None:
        return False
    own = _targets(module)
    check_keys(module, {k: tuple(v.shape) for k, v in mapped.items()}, str(path), allow_missing)
    if any(own[k].device.type != "cpu" or own[k].dtype != v.dtype for k, v in mapped.items()):
        return False
    with torch.no_grad():
        for k, v in mapped.items():
            own[k].data = v
    return True


def load_weights(module: nn.Module, path: PathLike, allow_missing: Iterable[str] = (), mmap: bool = False) -> nn.Module:
    """Strictly load a safetensors file into ``module`` in place, one tensor at a time
    (peak memory = the model + its largest tensor); returns the module.

    ``mmap=True``: when the file's dtypes are the module's (and it is on the CPU), the
    module's tensors become views of a private memory map of the file instead of copies
    (:func:`map_weights`): loading costs no time, and memory holds only what is used."""
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: refusing to read a pickle-based checkpoint; convert it to .safetensors")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weight file")
    from safetensors import SafetensorError, safe_open

    if mmap:
        try:
            if _assign_mapped(module, path, allow_missing):
                return module
        except (ValueError, RuntimeError, OSError, KeyError, TypeError):
            pass  # not mappable: the copying load below says what is wrong, if anything

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
            check_keys(module, shapes, str(path), allow_missing)
            own = _targets(module)
            with torch.no_grad():
                for k in keys:
                    own[k].copy_(f.get_tensor(k).to(dtype=own[k].dtype))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{path}: not a valid safetensors file ({path.stat().st_size} bytes; truncated or corrupt?): {e}"
        ) from None
    return module


def build_empty(factory, device: Union[str, torch.device] = "cpu", dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Build ``factory()`` without initialising its weights (meta device, then allocate).

    Non-persistent buffers (rotary frequencies) are recomputed; every persistent tensor
    must then be filled by a strict load.
    """
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device=device)
    if dtype is not None:
        module = module.to(dtype)
    for m in module.modules():
        if hasattr(m, "reset_buffers"):
            m.reset_buffers()
    return module


# ---------------------------------------------------------------- adapters
def _split_prefix(key: str, source: str, prefix: str = "model.") -> str:
    if not key.startswith(prefix):
        raise CheckpointError(f"{source}: key {key} lacks the {prefix!r} prefix of adapter/LoRA files")
    return key[len(prefix) :]


def merge_adapter(model: nn.Module, state_or_path, source: Optional[str] = None) -> None:
    """Load an adapter file (keys ``model.cond_adapter.*``) into ``model.cond_adapter``."""
    if isinstance(state_or_path, (str, os.PathLike)):
        source = source or str(state_or_path)
        state = read_weights(state_or_path)
    else:
        state = state_or_path
        source = source or "adapter weights"
    if not hasattr(model, "cond_adapter"):
        raise CheckpointError(f"{source}: the model has no frame-condition adapter to load into")
    sub = {}
    for k, v in state.items():
        name = _split_prefix(k, source)
        if not name.startswith("cond_adapter."):
            raise CheckpointError(f"{source}: key {k} is not an adapter parameter (expected model.cond_adapter.*)")
        sub[name[len("cond_adapter.") :]] = v
    load_state_dict_strict(model.cond_adapter, sub, source)


def adapter_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The adapter parameters in the official file layout (``model.cond_adapter.*``)."""
    return {f"model.cond_adapter.{k}": v for k, v in model.cond_adapter.state_dict().items()}


_LORA_RE = re.compile(r"^model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")


def merge_lora(
    model: nn.Module,
    state_or_path,
    alpha: float,
    rank: Optional[int] = None,
    source: Optional[str] = None,
) -> int:
    """Merge a peft-named LoRA file into the model's linear layers: W += (alpha/r)·B@A.

    Every key must name an existing ``nn.Linear`` of the model (an error otherwise, never a
    silent skip); A and B must come in pairs with matching rank. Returns the number of
    merged matrices.
    """
    if isinstance(state_or_path, (str, os.PathLike)):
        source = source or str(state_or_path)
        state = read_weights(state_or_path)
    else:
        state = state_or_path
        source = source or "LoRA weights"
    if not state:
        raise CheckpointError(f"{source}: LoRA file holds no tensors")
    modules = dict(model.named_modules())
    pairs: Dict[str, Dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        m = _LORA_RE.match(k)
        if m is None:
            raise CheckpointError(f"{source}: key {k} is not a LoRA weight (expected model.<module>.lora_A|B.<name>.weight)")
        name = m.group("module")
        target = modules.get(name)
        if not isinstance(target, nn.Linear):
            raise CheckpointError(f"{source}: LoRA key {k} matches no linear layer of the model")
        pairs.setdefault(name, {})[m.group("ab")] = v
    n = 0
    with torch.no_grad():
        for name, ab in pairs.items():
            if set(ab) != {"A", "B"}:
                raise CheckpointError(f"{source}: LoRA for {name} lacks its lora_{'B' if 'A' in ab else 'A'} matrix")
            A, B = ab["A"], ab["B"]
            lin: nn.Linear = modules[name]
            r = A.shape[0]
            if rank is not None and r != rank:
                raise CheckpointError(f"{source}: key model.{name}.lora_A has rank {r}, expected rank {rank}")
            if B.shape[1] != r or A.shape[1] != lin.in_features or B.shape[0] != lin.out_features:
                raise CheckpointError(
                    f"{source}: LoRA for {name} has shapes A{tuple(A.shape)} B{tuple(B.shape)}, "
                    f"incompatible with a {lin.in_features}->{lin.out_features} layer"
                )
            delta = (B.float() @ A.float()) * (float(alpha) / r)
            lin.weight.add_(delta.to(lin.weight.dtype))
            n += 1
    return n


def lora_state_dict(peft_model: nn.Module) -> Dict[str, torch.Tensor]:
    """LoRA matrices of a peft-wrapped model under the official names
    (``model.<module>.lora_{A,B}.default.weight``)."""
    out = {}
    for k, v in peft_model.state_dict().items():
        if ".lora_A." in k or ".lora_B." in k:
            name = k
            for p in ("base_model.model.", "base_model."):
                if name.startswith(p):
                    name = name[len(p) :]
                    break
            out["model." + name if not name.startswith("model.") else name] = v
    return out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
