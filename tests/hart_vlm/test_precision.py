"""dtype="auto": for training bf16 only on a CPU with a bf16 unit where bf16 is measured to be
faster; for generation float32 on every CPU."""

import pytest
import torch

from hart_vlm import precision


@pytest.fixture
def cpu(monkeypatch):
    """Sets what the CPU reports: (has a bf16 flag, measured bf16 speed-up)."""
    monkeypatch.delenv("HART_VLM_DTYPE", raising=False)

    def set_cpu(has_flag: bool, speedup: float):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_flag)
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)

    return set_cpu


@pytest.mark.parametrize(("has_flag", "speedup", "expected"), [
    (True, 10.0, torch.bfloat16),   # AMX
    (True, 2.8, torch.bfloat16),    # AVX-512 BF16 that pays
    (True, 0.6, torch.float32),     # AVX-512 BF16 slower than float32 (measured on an Intel VM)
    (True, 1.1, torch.float32),     # within the margin: keep float32
    (False, 10.0, torch.float32),   # no unit: never bf16, whatever a timing says
])
def test_auto_dtype_on_cpu_follows_flag_and_measurement(cpu, has_flag, speedup, expected):
    cpu(has_flag, speedup)
    assert precision.auto_dtype("cpu") == expected


@pytest.mark.parametrize(("has_flag", "speedup"), [(True, 10.0), (True, 0.6), (False, 1.0)])
def test_generation_on_a_cpu_is_float32_whatever_the_unit(cpu, has_flag, speedup):
    """One or two rows per product: bf16 generation is not faster even with AMX
    (docs/experiments/bf16_inference.md), so "auto" models load in float32 on a CPU."""
    cpu(has_flag, speedup)
    assert precision.inference_dtype("cpu") == torch.float32
    assert precision.resolve_dtype("auto", "cpu") == torch.float32


def test_generation_on_cuda_follows_the_training_choice(monkeypatch):
    monkeypatch.delenv("HART_VLM_DTYPE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.inference_dtype("cuda") == torch.bfloat16 == precision.auto_dtype("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.inference_dtype("cuda") == torch.float32


def test_the_environment_overrides_and_is_checked(cpu, monkeypatch):
    cpu(True, 10.0)
    monkeypatch.setenv("HART_VLM_DTYPE", "float32")
    assert precision.auto_dtype("cpu") == torch.float32
    monkeypatch.setenv("HART_VLM_DTYPE", "bfloat16")
    assert precision.inference_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv("HART_VLM_DTYPE", "fp16")
    for choose in (precision.auto_dtype, precision.inference_dtype):
        with pytest.raises(ValueError, match="HART_VLM_DTYPE must be 'float32' or 'bfloat16'"):
            choose("cpu")


@pytest.mark.parametrize("slow", [torch.float32, torch.bfloat16])
def test_the_speedup_times_both_dtypes_and_favours_the_faster(monkeypatch, slow):
    """A product made 20 ms slower in one dtype: the measured ratio says which one is faster."""
    import time

    real_mm = torch.mm

    def mm(a, b):
        if a.dtype == slow:
            time.sleep(0.02)
        return real_mm(a, b)

    monkeypatch.setattr(torch, "mm", mm)
    speedup = precision.cpu_bf16_speedup.__wrapped__((16, 32, 32), 2)
    assert (speedup > 1.3) if slow == torch.float32 else (speedup < 1 / 1.3)


def test_resolve_dtype_rejects_what_is_not_a_float_dtype():
    with pytest.raises(TypeError, match="dtype must be 'auto' or a floating torch.dtype"):
        precision.resolve_dtype(torch.int64)
    assert precision.resolve_dtype(torch.float16) == torch.float16
