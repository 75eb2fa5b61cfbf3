"""The DiT baseline of the speed benchmark: shapes, guidance, parameter matching, bad input."""

from __future__ import annotations

import pytest
import torch

from tests.evals import load_eval

dit = load_eval("dit_baseline")


def tiny_config(**overrides) -> "dit.DiTConfig":
    fields = dict(latent_channels=8, latent_size=4, text_vocab_size=50, hidden_size=32, depth=2, num_heads=4)
    return dit.DiTConfig(**{**fields, **overrides})


def test_forward_predicts_noise_of_the_latent_shape():
    torch.manual_seed(0)
    model = dit.TextConditionedDiT(tiny_config()).eval()
    ids = torch.tensor([[0, 5, 7, 9], [0, 0, 3, 4]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    cond = model.embed_text(ids, mask)  # (B, D)
    assert cond.shape == (2, 32)
    # padding does not change the pooled prompt
    assert torch.allclose(cond[1], model.embed_text(ids[1:, 2:], mask[1:, 2:])[0], atol=1e-6)
    x = torch.randn(2, 8, 4, 4)
    eps = model(x, torch.tensor([10, 500]), cond)
    assert eps.shape == x.shape
    # adaLN-Zero: a fresh model predicts exactly zero noise (DiT §3.2)
    assert torch.count_nonzero(eps) == 0


def test_sample_is_seeded_guided_and_uses_the_requested_steps():
    torch.manual_seed(0)
    model = dit.TextConditionedDiT(tiny_config()).eval()
    for p in model.parameters():  # leave adaLN-Zero so that guidance has something to act on
        torch.nn.init.normal_(p, std=0.05)
    cond = torch.randn(3, 32)
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    a = model.sample(cond, num_steps=4, cfg=4.5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 8, 4, 4) and torch.isfinite(a).all()
    assert calls == [6] * 4  # the batch doubled for guidance, one pass per step
    b = model.sample(cond, num_steps=4, cfg=4.5, generator=torch.Generator().manual_seed(1))
    c = model.sample(cond, num_steps=4, cfg=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert calls[-4:] == [3] * 4


def test_matched_config_matches_the_default_backbone():
    from transformers import AutoModelForCausalLM

    from hart_vlm import HartVLMConfig

    config = HartVLMConfig.from_preset("default")
    with torch.device("meta"):
        target = sum(p.numel() for p in AutoModelForCausalLM.from_config(config.text_config).parameters())
    matched = dit.matched_config(target, latent_channels=32, latent_size=8, text_vocab_size=config.text_config.vocab_size,
                                 hidden_size=config.text_config.hidden_size, num_heads=config.text_config.num_attention_heads)
    assert abs(dit.parameter_count(matched) - target) / target < 0.005
    assert matched.hidden_size == config.text_config.hidden_size and matched.depth >= 1


def test_sincos_positions_are_distinct_per_position():
    pos = dit.sincos_position_embedding(4, 16)
    assert pos.shape == (16, 16)
    assert torch.cdist(pos, pos).add(torch.eye(16)).min() > 0


@pytest.mark.parametrize(
    "overrides, match",
    [(dict(hidden_size=30), "divisible"), (dict(depth=0), "depth"), (dict(mlp_ratio=0.0), "mlp_ratio"),
     (dict(beta_start=0.1, beta_end=0.01), "beta_start")],
)
def test_bad_config_is_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_bad_sampling_arguments_are_refused():
    model = dit.TextConditionedDiT(tiny_config())
    with pytest.raises(ValueError, match="num_steps"):
        model.sample(torch.randn(1, 32), num_steps=0)
    with pytest.raises(ValueError, match="cfg"):
        model.sample(torch.randn(1, 32), cfg=-1.0)
    with pytest.raises(ValueError, match="cond_BD"):
        model.sample(torch.randn(1, 31))
    with pytest.raises(ValueError, match="depth"):
        dit.matched_config(1000, depth=3, latent_channels=8, latent_size=4, text_vocab_size=50, hidden_size=32, num_heads=4)
    with pytest.raises(TypeError, match="DiTConfig"):
        dit.TextConditionedDiT({"hidden_size": 32})
