"""dtype="auto": for training bf16 only on a CPU with a bf16 unit where bf16 is measured to be
faster; for generation float32 weights on every CPU, with the products of many-row passes in bf16
where bf16 pays (products_in_bf16)."""

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
def test_generation_on_a_cpu_keeps_float32_weights_whatever_the_unit(cpu, has_flag, speedup):
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


@pytest.mark.parametrize(("has_flag", "speedup", "expected"), [(True, 10.0, True), (True, 0.6, False), (False, 10.0, False)])
def test_bf16_products_pay_where_training_would_pick_bf16(cpu, has_flag, speedup, expected):
    cpu(has_flag, speedup)
    assert precision.bf16_products_pay("cpu", 576) is expected
    assert precision.bf16_products_pay("meta", 576) is False


def test_bf16_products_need_a_wide_backbone_and_can_be_turned_off(cpu, monkeypatch):
    cpu(True, 10.0)
    assert precision.bf16_products_pay("cpu", precision.MIN_BF16_WIDTH) is True
    assert precision.bf16_products_pay("cpu", 256) is False  # the tiny model: no faster (measured)
    monkeypatch.setenv("HART_VLM_DTYPE", "float32")
    assert precision.bf16_products_pay("cpu", 576) is False


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("bias", [False, True])
def test_bf16_linear_is_the_product_of_bf16_rounded_inputs_in_float32(monkeypatch, bias, packed):
    """oneDNN's packed weights where this build has them, plain bf16 copies elsewhere: the same numbers."""
    if packed and not precision.packed_bf16_works():
        pytest.skip("this torch build has no packed bf16 products on this CPU")
    monkeypatch.setattr(precision, "packed_bf16_works", lambda: packed)
    monkeypatch.setattr(precision, "_PACKS", {})
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 24, bias=bias)
    x = torch.randn(2, 5, 48)
    with torch.no_grad():
        y = precision.bf16_linear(x, layer.weight, layer.bias)
        rounded = torch.nn.functional.linear(x.bfloat16(), layer.weight.bfloat16()).float()
        exact = layer(x)
    assert y.dtype == torch.float32 and y.shape == (2, 5, 24)
    assert torch.equal(y, rounded if layer.bias is None else rounded + layer.bias)
    assert 0 < (y - exact).abs().max() < 0.05


def test_the_bf16_copy_follows_a_changed_weight():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(3, 16)
    with torch.no_grad():
        before = precision.bf16_linear(x, layer.weight)
        layer.weight.mul_(2)  # in place: the copy made before is stale
        after = precision.bf16_linear(x, layer.weight)
        layer.weight = torch.nn.Parameter(torch.zeros(8, 16))  # a new tensor
        zero = precision.bf16_linear(x, layer.weight)
    assert torch.equal(after, 2 * before)
    assert torch.equal(zero, torch.zeros(3, 8))


def test_bf16_products_change_only_the_float32_linear_layers_and_only_inside():
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"fp32": torch.nn.Linear(16, 8), "bf16": torch.nn.Linear(16, 8).bfloat16(),
                               "norm": torch.nn.LayerNorm(16)})
    x = torch.randn(4, 16)
    with torch.no_grad():
        exact, half, norm = net["fp32"](x), net["bf16"](x.bfloat16()), net["norm"](x)
        with precision.products_in_bf16(net):
            y, y16, n = net["fp32"](x), net["bf16"](x.bfloat16()), net["norm"](x)
        assert torch.equal(y, precision.bf16_linear(x, net["fp32"].weight, net["fp32"].bias))
        assert not torch.equal(y, exact)
        assert torch.equal(y16, half) and torch.equal(n, norm)
        assert torch.equal(net["fp32"](x), exact)  # as before once it is left
        with pytest.raises(RuntimeError, match="inside"), precision.products_in_bf16(net):
            raise RuntimeError("inside")
        assert torch.equal(net["fp32"](x), exact) and "forward" not in vars(net["fp32"])
        with precision.products_in_bf16(net, enabled=False):
            assert torch.equal(net["fp32"](x), exact)
        hooked = net["fp32"].forward = lambda inp: torch.zeros(4, 8)  # as accelerate's hooks do
        with precision.products_in_bf16(net):
            assert torch.equal(net["fp32"](x), torch.zeros(4, 8))
        assert vars(net["fp32"])["forward"] is hooked


def test_run_backbone_multiplies_in_bf16_only_passes_of_many_rows_without_autograd(text_tokenizer):
    """With bf16_products a one-row pass is float32 bit for bit, a pass of many rows is close to
    float32 but not equal, and with autograd (training) nothing changes."""
    from .conftest import build_tiny

    model = build_tiny(text_tokenizer)
    torch.manual_seed(1)
    D = model.config.text_config.hidden_size
    embeds = torch.randn(2, 6, D)
    mask, blocks = torch.ones(2, 6, dtype=torch.long), torch.arange(6).expand(2, 6)
    positions = torch.arange(6).expand(2, 6)

    def run(on: bool, rows: int, q: int, grad: bool = False):
        model.bf16_products = on
        with torch.set_grad_enabled(grad):
            out, _ = model.run_backbone(embeds[:rows, :q], mask[:rows, :q], blocks[:rows, :q], positions[:rows, :q])
        return out.detach()

    try:
        assert torch.equal(run(True, 1, 1), run(False, 1, 1))
        many, exact = run(True, 2, 6), run(False, 2, 6)
        assert many.dtype == torch.float32 and not torch.equal(many, exact)
        assert (many - exact).abs().max() < 0.05 * exact.abs().max()
        assert torch.equal(run(True, 2, 6, grad=True), exact)
    finally:
        model.bf16_products = False
