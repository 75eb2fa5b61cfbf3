"""The model's one-step residual head (used for diffusion_steps=1, unguided; saved and loaded with the
model) and bf16 models whose residual heads stay float32."""

from __future__ import annotations

import pytest
import torch

from hart.one_step_head import OneStepResidualHead
from hart_vlm import HartVLM
from hart_vlm.default_model import load_model

from .conftest import build_tiny, interleaved_conversation

DRAW = [{"role": "user", "content": "Draw a white bookcase."}]
ONE_PICTURE = dict(force_image_after="^", max_images=1, max_new_tokens=3, temperature=0.0)


def calls_of(module, name, monkeypatch) -> list:
    calls, original = [], getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.fixture
def with_one_step(text_tokenizer):
    model = build_tiny(text_tokenizer, one_step_head=True)
    student = OneStepResidualHead.from_teacher(model.diffusion_head)
    with torch.no_grad():  # not the teacher's copy: the test sees which head drew
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.one_step_head = student
    return model


def test_one_step_sampling_uses_the_distilled_head_only_when_it_can(with_one_step, monkeypatch):
    model = with_one_step
    student = calls_of(model.one_step_head, "sample", monkeypatch)
    teacher = calls_of(model.diffusion_head, "sample", monkeypatch)
    model.chat(DRAW, seed=0, diffusion_steps=1, **ONE_PICTURE)
    assert len(student) == 1 and teacher == []
    model.chat(DRAW, seed=0, diffusion_steps=8, **ONE_PICTURE)
    model.chat(DRAW, seed=0, diffusion_steps=1, diffusion_cfg=2.0, cfg=2.0, **ONE_PICTURE)  # guided: the teacher
    assert len(student) == 1 and [c["num_steps"] for c in teacher] == [8, 1]


def test_the_one_step_head_is_saved_and_loaded_with_the_model(with_one_step, tmp_path):
    with_one_step.save_pretrained(tmp_path)
    loaded = HartVLM.from_pretrained(tmp_path)
    assert loaded.config.one_step_head and isinstance(loaded.one_step_head, OneStepResidualHead)
    for key, value in with_one_step.one_step_head.state_dict().items():
        assert torch.equal(loaded.one_step_head.state_dict()[key], value)
    a = with_one_step.chat(DRAW, seed=3, diffusion_steps=1, **ONE_PICTURE).images[0]
    b = loaded.chat(DRAW, seed=3, diffusion_steps=1, **ONE_PICTURE).images[0]
    assert a.tobytes() == b.tobytes()


def test_a_model_without_one_has_none(text_tokenizer):
    model = build_tiny(text_tokenizer)
    assert model.one_step_head is None and not model.config.one_step_head
    assert not any(key.startswith("one_step_head.") for key in model.state_dict())


def test_a_bf16_model_keeps_its_residual_heads_in_float32_and_draws(with_one_step, tmp_path):
    with_one_step.save_pretrained(tmp_path)
    model = load_model(tmp_path, dtype=torch.bfloat16)
    assert model.backbone.get_input_embeddings().weight.dtype == torch.bfloat16
    assert {p.dtype for p in model.diffusion_head.parameters()} == {torch.float32}
    assert {p.dtype for p in model.one_step_head.parameters()} == {torch.float32}
    for steps in (1, 8):
        reply = model.chat(DRAW, seed=0, diffusion_steps=steps, **ONE_PICTURE)
        assert len(reply.images) == 1 and reply.images[0].size == (model.config.image_size,) * 2


def test_a_bf16_model_scores_a_conversation_with_finite_losses(with_one_step, tmp_path):
    """forward(labels=...) on a model loaded in bf16: the residual head's loss runs in the head's float32."""
    with_one_step.save_pretrained(tmp_path)
    model = load_model(tmp_path, dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(**model.processor([interleaved_conversation(0)]), generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(out[k]) for k in ("loss", "text_loss", "image_loss", "diffusion_loss"))
