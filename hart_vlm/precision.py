"""Which floating-point type runs fastest here, chosen once (`dtype="auto"`).

Training (`auto_dtype`, `mixed_precision: auto`): bfloat16 on CUDA devices that support it. On a CPU,
bfloat16 only where it has a bf16 unit (Intel AMX `amx_bf16`, or AVX-512 BF16 `avx512_bf16`) *and* a
bf16 matrix product measured here runs clearly faster than a float32 one: the flag alone does not say
so. Measured (docs/experiments/bf16_cpu.md, bf16_auto.md): with AMX a training-sized product is five
to ten times faster; on an AMD EPYC with AVX-512 BF16 2.8x; on an Intel Xeon with AVX-512 BF16 and no
AMX flag 0.6x. float32 everywhere else.

Inference (`inference_dtype`, `load_default(dtype="auto")`): the same on CUDA, float32 on every CPU.
Generation multiplies one or two rows at a time, where a bf16 product is slower than a float32 one
even with AMX, and bf16 stories are no faster and score lower (docs/experiments/bf16_inference.md).
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


def _forced_dtype() -> torch.dtype | None:
    """The dtype the environment variable HART_VLM_DTYPE=float32 (or bfloat16) asks for, if set."""
    forced = os.environ.get("HART_VLM_DTYPE")
    if not forced:
        return None
    if forced not in ("float32", "bfloat16"):
        raise ValueError(f"HART_VLM_DTYPE must be 'float32' or 'bfloat16', got {forced!r}")
    return getattr(torch, forced)


def auto_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """For training and other batched work: bfloat16 on a device that computes it natively and
    faster, float32 elsewhere. HART_VLM_DTYPE=float32 (or bfloat16) overrides the choice."""
    forced = _forced_dtype()
    if forced is not None:
        return forced
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_bf16() and cpu_bf16_speedup() >= MIN_BF16_SPEEDUP:
        return torch.bfloat16
    return torch.float32


def inference_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """For generation: `auto_dtype` on CUDA, float32 on a CPU (see the module's docstring).
    HART_VLM_DTYPE=float32 (or bfloat16) overrides the choice."""
    if torch.device(device).type == "cuda":
        return auto_dtype(device)
    forced = _forced_dtype()
    return torch.float32 if forced is None else forced


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """A model's dtype for generation: `"auto"` -> `inference_dtype(device)`; a torch floating
    dtype is returned as it is."""
    if dtype == "auto":
        return inference_dtype(device)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be 'auto' or a floating torch.dtype such as torch.float32, got {dtype!r}")
    return dtype
