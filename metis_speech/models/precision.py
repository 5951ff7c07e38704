"""Lower-precision forms of a loaded network for CPU inference.

- :func:`store_half`: the weights of the large ``nn.Linear`` layers kept in bf16/fp16 (half
  the memory) and turned back to fp32 one layer at a time for the product, for CPUs without
  native bf16 arithmetic (where bf16 matrix products are slower than fp32). The result is
  that of fp32 arithmetic on weights rounded to 8 (bf16) or 11 (fp16) significant bits.
- :func:`quantize_int8`: int8 dynamic quantisation of every ``nn.Linear`` (weights int8 per
  output channel, activations quantised per call; torch's fbgemm/x86 kernels). Opt-in: it
  changes the result (the quality cost is measured in the README).

Both release the memory map of the original fp32 weights (``checkpoint.map_weights``) by
copying the few small tensors that remain, so that the process holds only the new form.
"""

from __future__ import annotations

import types
import warnings
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["cpu_has_bf16", "store_half", "quantize_int8", "is_int8"]


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _upcast_linear(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    bias = None if self.bias is None else self.bias.to(x.dtype)
    return F.linear(x, self.weight.to(x.dtype), bias)


def _own_small_tensors(module: nn.Module) -> None:
    """Copy every parameter/buffer that may still be a view of a memory-mapped file."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.device.type == "cpu" and t.numel():
                t.data = t.data.clone()


def store_half(module: nn.Module, dtype: torch.dtype = torch.bfloat16, min_numel: int = 1 << 16) -> nn.Module:
    """Keep the weights of ``nn.Linear`` layers with at least ``min_numel`` entries in
    ``dtype``; they compute in the input's dtype (fp32). In place; returns the module."""
    with torch.no_grad():
        for m in module.modules():
            if type(m) is nn.Linear and m.weight.numel() >= min_numel:
                m.weight.data = m.weight.data.to(dtype)
                m.forward = types.MethodType(_upcast_linear, m)
                m.upcast = True
        for m in module.modules():
            for name, p in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
                if p.dtype == torch.float32 and p.numel():
                    p.data = p.data.clone()
    return module


def quantize_int8(module: nn.Module) -> nn.Module:
    """int8 dynamic quantisation of every ``nn.Linear`` (CPU only). Returns the new module."""
    module = module.float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import quantize_dynamic

        q = quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    _own_small_tensors(q)
    q.int8 = True
    return q


def is_int8(module: nn.Module) -> bool:
    return bool(getattr(module, "int8", False))
