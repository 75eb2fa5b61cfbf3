"""Which floating-point type runs fastest here, chosen once (`dtype="auto"`).

bfloat16 on CUDA devices that support it. On a CPU, bfloat16 only where it has a bf16 unit (Intel AMX
`amx_bf16`, or AVX-512 BF16 `avx512_bf16`) *and* a bf16 matrix product measured here runs clearly
faster than a float32 one: the flag alone does not say so. Measured (docs/experiments/bf16_cpu.md,
bf16_inference.md, bf16_auto.md): with AMX bf16 is about ten times faster; on an AMD EPYC with
AVX-512 BF16 2.8x; on an Intel Xeon with AVX-512 BF16 and no AMX flag 0.6x. float32 everywhere else.
"""

from __future__ import annotations

import functools
import os
import time

import torch

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# bf16 must beat float32 by this factor: a machine near 1x keeps float32 (its precision, and a
# choice that does not flip from one process to the next on timing noise).
MIN_BF16_SPEEDUP = 1.3


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has a bf16 matrix unit (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


@functools.cache
def cpu_bf16_speedup(size: tuple[int, int, int] = (256, 1024, 1024), repeats: int = 3) -> float:
    """float32 time / bf16 time of one (m, k) x (k, n) matrix product on this CPU with torch's
    current threads, best of `repeats` after one warm-up each; measured once per process (about
    0.1 s)."""
    m, k, n = size
    gen = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = a32.to(dtype), b32.to(dtype)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return best[torch.float32] / best[torch.bfloat16]


def auto_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """bfloat16 on a device that computes it natively and faster, float32 elsewhere. The
    environment variable HART_VLM_DTYPE=float32 (or bfloat16) overrides the choice."""
    forced = os.environ.get("HART_VLM_DTYPE")
    if forced:
        if forced not in ("float32", "bfloat16"):
            raise ValueError(f"HART_VLM_DTYPE must be 'float32' or 'bfloat16', got {forced!r}")
        return getattr(torch, forced)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_bf16() and cpu_bf16_speedup() >= MIN_BF16_SPEEDUP:
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """`"auto"` -> `auto_dtype(device)`; a torch floating dtype is returned as it is."""
    if dtype == "auto":
        return auto_dtype(device)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be 'auto' or a floating torch.dtype such as torch.float32, got {dtype!r}")
    return dtype
