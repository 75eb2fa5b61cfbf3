"""Which floating-point type runs fastest here, chosen once (`dtype="auto"`).

Training (`auto_dtype`, `mixed_precision: auto`): bfloat16 on CUDA devices that support it. On a CPU,
bfloat16 only where it has a bf16 unit (Intel AMX `amx_bf16`, or AVX-512 BF16 `avx512_bf16`) *and* a
bf16 matrix product measured here runs clearly faster than a float32 one: the flag alone does not say
so. Measured (docs/experiments/bf16_cpu.md, bf16_auto.md): with AMX a training-sized product is five
to ten times faster; on an AMD EPYC with AVX-512 BF16 2.8x; on an Intel Xeon with AVX-512 BF16 and no
AMX flag 0.6x. float32 everywhere else.

Inference (`inference_dtype`, `load_default(dtype="auto")`): the same on CUDA, float32 weights on
every CPU. A text pass multiplies one row, where reading the weights decides the time and a bf16
product is no faster, and bf16 stories score lower (docs/experiments/bf16_inference.md). The passes of
many rows (a picture's scales, a prompt) are arithmetic-bound: on a CPU where bf16 pays, an "auto"
model runs their matrix products in bf16 (`products_in_bf16`, `HartVLM.bf16_products`;
docs/experiments/bf16_products.md).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import weakref

import torch
import torch.nn.functional as F

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# bf16 must beat float32 by this factor: a machine near 1x keeps float32 (its precision, and a
# choice that does not flip from one process to the next on timing noise).
MIN_BF16_SPEEDUP = 1.3
# Narrower backbones spend a many-row pass on other work than products: the tiny model (256 wide)
# draws its pictures no faster with bf16 products, SmolLM2 (576) 27-30% faster (bf16_products.md).
MIN_BF16_WIDTH = 512


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


def bf16_products_pay(device: str | torch.device, hidden_size: int) -> bool:
    """Whether generation on `device` should run the matrix products of many-row passes in bf16: a
    CPU where `auto_dtype` picks bf16 (a bf16 unit, measured faster; HART_VLM_DTYPE=float32 says no)
    and a backbone at least MIN_BF16_WIDTH wide."""
    return (torch.device(device).type == "cpu" and hidden_size >= MIN_BF16_WIDTH
            and auto_dtype(device) == torch.bfloat16)


@functools.cache
def packed_bf16_works() -> bool:
    """Whether this torch build multiplies oneDNN-packed bf16 weights on this CPU (inductor's ops
    `mkldnn._reorder_linear_weight` and `_linear_pointwise`), checked once against a plain bf16
    product."""
    x, w = torch.ones(1, 8, dtype=torch.bfloat16), torch.ones(4, 8, dtype=torch.bfloat16)
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        return torch.equal(torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""), F.linear(x, w))
    except (AttributeError, RuntimeError):  # no oneDNN, or no bf16 kernel for this CPU
        return False


# id(weight) -> (weak reference to it, (version, data pointer) when packed, its bf16 copy)
_PACKS: dict[int, tuple[weakref.ref, tuple[int, int], torch.Tensor]] = {}


def _bf16_weight(weight: torch.Tensor) -> torch.Tensor:
    """`weight` in bf16, in oneDNN's packed layout where this torch has it (the layout its AMX
    kernels read; the same numbers as a plain bf16 copy), made once and again only when the weight
    changes."""
    key, stamp = id(weight), (weight._version, weight.data_ptr())
    entry = _PACKS.get(key)
    if entry is not None and entry[0]() is weight and entry[1] == stamp:
        return entry[2]
    copy = weight.detach().to(torch.bfloat16)
    if packed_bf16_works():
        copy = torch.ops.mkldnn._reorder_linear_weight(copy, 64)
    _PACKS[key] = (weakref.ref(weight, lambda _, key=key: _PACKS.pop(key, None)), stamp, copy)
    return copy


def bf16_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` with the product in bf16 (float32 accumulation) and a float32
    result: x and weight rounded to bf16, the bias added in float32."""
    w = _bf16_weight(weight)
    x16 = x.to(torch.bfloat16)
    y = torch.ops.mkldnn._linear_pointwise(x16, w, None, "none", [], "") if w.is_mkldnn else F.linear(x16, w)
    y = y.float()
    return y if bias is None else y + bias


@contextlib.contextmanager
def products_in_bf16(module: torch.nn.Module, enabled: bool = True):
    """Inside it (when `enabled`), the float32 CPU `nn.Linear` layers of `module` multiply as
    `bf16_linear`; everything else (norms, attention, the residual stream, the KV cache) stays
    float32. Generation enters it for passes of more than one row (`HartVLM.run_backbone`). It sets
    each layer's `forward` for the duration: about a microsecond per layer, where a TorchFunctionMode
    costs every operation of the pass a Python call (~12 ms per SmolLM2 pass, measured). A layer
    whose `forward` someone else has set (accelerate's hooks) is left as it is."""
    layers = [m for m in module.modules() if isinstance(m, torch.nn.Linear) and "forward" not in vars(m)
              and m.weight.dtype == torch.float32 and m.weight.device.type == "cpu"] if enabled else []
    for layer in layers:
        layer.forward = functools.partial(_bf16_forward, layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def _bf16_forward(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32:
        return F.linear(x, layer.weight, layer.bias)
    return bf16_linear(x, layer.weight, layer.bias)
