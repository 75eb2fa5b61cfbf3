"""LoRA with peft: train, save, reload, merge -> the same outputs (tied and untied embeddings)."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from hart_vlm.lora import apply_lora, special_token_indices

from .conftest import build_tiny, interleaved_conversation


@pytest.mark.parametrize("backbone", ["llama", "qwen2"])  # tied / untied embeddings
def test_lora_train_save_load_merge_gives_equal_outputs(tmp_path, text_tokenizer, backbone):
    base = build_tiny(text_tokenizer, backbone=backbone, seed=2)
    base.save_pretrained(tmp_path / "base")
    assert base.config.tie_word_embeddings == base.backbone.config.tie_word_embeddings
    model = apply_lora(base, r=4)
    batch = base.processor([interleaved_conversation(1)])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert any("diffusion_head" in n for n in trainable) and any("bridge" in n for n in trainable)
    assert not any(n.endswith("embed_tokens.weight") and "base_layer" not in n and "token_adapter" not in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(**batch, generator=torch.Generator().manual_seed(0)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    # the special tokens' rows moved, the other rows did not
    embed = model.get_input_embeddings()
    ids = torch.tensor(special_token_indices(base))
    with torch.no_grad():
        e_new = embed(ids[None])[0]
        e_old = base.backbone.get_input_embeddings().base_layer.weight[ids] if hasattr(
            base.backbone.get_input_embeddings(), "base_layer") else None
    if e_old is not None:
        assert not torch.allclose(e_new, e_old)
    model.save_pretrained(tmp_path / "adapter")

    from hart_vlm import HartVLM

    fresh = HartVLM.from_pretrained(tmp_path / "base").eval()
    reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        again = reloaded(**batch).logits
        merged = reloaded.merge_and_unload()(**batch).logits
    torch.testing.assert_close(again, trained, rtol=0, atol=1e-5)
    torch.testing.assert_close(merged, trained, rtol=0, atol=1e-4)
