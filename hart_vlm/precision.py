"""Which floating-point type runs fastest here, chosen once (`dtype="auto"`).

bfloat16 where the hardware multiplies it natively: CUDA devices that support it, and CPUs with
Intel AMX (`amx_bf16`) or AVX-512 BF16 (`avx512_bf16`), where a bf16 matrix product runs about
ten times faster than a float32 one (docs/experiments/bf16_cpu.md). float32 everywhere else: on
CPUs without those units bf16 is emulated and slower than float32.
"""

from __future__ import annotations

import functools
import os

import torch

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def auto_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """bfloat16 on a device that computes it natively, float32 elsewhere. The environment
    variable HART_VLM_DTYPE=float32 (or bfloat16) overrides the choice."""
    forced = os.environ.get("HART_VLM_DTYPE")
    if forced:
        if forced not in ("float32", "bfloat16"):
            raise ValueError(f"HART_VLM_DTYPE must be 'float32' or 'bfloat16', got {forced!r}")
        return getattr(torch, forced)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """`"auto"` -> `auto_dtype(device)`; a torch floating dtype is returned as it is."""
    if dtype == "auto":
        return auto_dtype(device)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be 'auto' or a floating torch.dtype such as torch.float32, got {dtype!r}")
    return dtype
