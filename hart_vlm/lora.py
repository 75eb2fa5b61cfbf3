"""LoRA for HartVLM with peft: what to adapt, what to train fully, which token rows to train.

- LoRA on the backbone's attention and MLP projections (the `q_proj`-style names of
  transformers' decoders; Hu et al., 2021).
- The image-side modules that the backbone does not have, the bridge (word_embed, scale and
  position embeddings, image-code head) and the residual diffusion head, are trained fully
  (`modules_to_save`): they are small and specific to images.
- The rows of the special tokens (image start/end, role markers) are trained through peft's
  `trainable_token_indices`, not the whole embedding matrix. With tied embeddings the top-level
  config declares the tie (HartVLMConfig mirrors the backbone's flag), so peft wraps the LM head
  with the same rows; otherwise training-time and merged logits differ.
"""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model

from . import special_tokens as st

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FULLY_TRAINED = ("bridge", "diffusion_head")


def special_token_indices(model) -> list[int]:
    tokenizer = model.processor.tokenizer if model.processor is not None else None
    if tokenizer is None:
        raise ValueError("the model has no processor, so the special tokens' ids are unknown")
    return sorted({tokenizer.convert_tokens_to_ids(t) for t in st.ALL_SPECIAL_TOKENS})


def lora_config(model, r: int = 16, alpha: int | None = None, dropout: float = 0.0,
                target_modules: tuple[str, ...] = PROJECTIONS) -> LoraConfig:
    """The LoraConfig this library uses for a HartVLM (see the module docstring)."""
    if r < 1:
        raise ValueError(f"r must be >= 1, got {r}")
    present = {name.rsplit(".", 1)[-1] for name, _ in model.backbone.named_modules()}
    targets = [t for t in target_modules if t in present]
    if not targets:
        raise ValueError(f"none of target_modules {list(target_modules)} exists in the backbone")
    embed_name = next(n for n, m in model.named_modules() if m is model.get_input_embeddings())
    return LoraConfig(
        r=r,
        lora_alpha=alpha if alpha is not None else 2 * r,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=list(FULLY_TRAINED),
        trainable_token_indices={embed_name.rsplit(".", 1)[-1]: special_token_indices(model)},
    )


def apply_lora(model, **kwargs) -> PeftModel:
    """Wraps `model` with LoRA adapters (`lora_config(model, **kwargs)`)."""
    peft_model = get_peft_model(model, lora_config(model, **kwargs))
    peft_model.base_model.model.processor = model.processor
    return peft_model
