"""Building a HartVLM from parts: a pretrained LLM and a HART tokenizer (`HartVLM.from_components`),
and a newly trained tokenizer put in place of a model's (`HartVLM.replace_image_tokenizer`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from transformers import AutoModelForCausalLM, PreTrainedConfig, PreTrainedModel

from hart.diffusion_head import ResidualDiffusionHead, ResidualDiffusionHeadConfig
from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig

from .configuration_hart_vlm import HartVLMConfig, special_token_ids
from .llms import KNOWN_LLMS, llm_folder

if TYPE_CHECKING:
    from .modeling_hart_vlm import HartVLM


def from_components(
    cls: type,
    llm: str | os.PathLike | PreTrainedConfig | PreTrainedModel,
    hart_tokenizer: str | os.PathLike | HybridTokenizerConfig | HybridTokenizer = "tiny",
    text_tokenizer=None,
    image_context_block: bool = True,
    diffusion_head_config: dict | None = None,
    **overrides,
) -> "HartVLM":
    """Builds a HartVLM from a pretrained LLM and a HART tokenizer.

    llm: a local transformers causal-LM folder, a known LLM's name (`hart_vlm.llms`: "smollm2",
        converted once from its installed package into a cache folder), its config, or a
        loaded model.
    hart_tokenizer: "default" (the trained tokenizer of the packaged models), a folder (this
        library's or an official HART `tokenizer/` folder), a `HybridTokenizerConfig`, a preset
        name (random weights), or a loaded `HybridTokenizer`.
    text_tokenizer: the LLM's tokenizer; default: the one in the `llm` folder, else the
        tokenizer shipped with this library. The image and role specials are added to it and
        the backbone's embeddings are resized to match (existing rows keep their values).
    The returned model has `.processor` set.
    """
    from .processing_hart_vlm import HartVLMProcessor
    from .text_tokenizer import add_hart_special_tokens, load_text_tokenizer

    # backbone
    base_llm = None
    if isinstance(llm, str) and not os.path.isdir(llm) and llm in KNOWN_LLMS:
        base_llm, llm = llm, str(llm_folder(llm))
    if isinstance(llm, PreTrainedModel):
        backbone = llm
    elif isinstance(llm, PreTrainedConfig):
        backbone = AutoModelForCausalLM.from_config(llm)
    elif isinstance(llm, (str, os.PathLike)) and os.path.isdir(llm):
        backbone = AutoModelForCausalLM.from_pretrained(llm)
    else:
        raise ValueError(f"llm must be a local causal-LM folder, one of the names {sorted(KNOWN_LLMS)}, a config "
                         f"or a model, got {llm!r}")
    # text tokenizer
    if text_tokenizer is None:
        if isinstance(llm, (str, os.PathLike)) and any(
            os.path.exists(os.path.join(llm, f)) for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
        ):
            from transformers import AutoTokenizer

            text_tokenizer = AutoTokenizer.from_pretrained(llm)
        else:
            text_tokenizer = load_text_tokenizer()
    add_hart_special_tokens(text_tokenizer)
    if backbone.get_input_embeddings().num_embeddings != len(text_tokenizer):
        backbone.resize_token_embeddings(len(text_tokenizer), mean_resizing=False)
    # image tokenizer
    if isinstance(hart_tokenizer, HybridTokenizer):
        image_tokenizer, tok_cfg = hart_tokenizer, hart_tokenizer.config
    elif isinstance(hart_tokenizer, HybridTokenizerConfig):
        image_tokenizer, tok_cfg = None, hart_tokenizer
    elif isinstance(hart_tokenizer, (str, os.PathLike)) and os.path.isdir(hart_tokenizer):
        image_tokenizer = HybridTokenizer.from_pretrained(hart_tokenizer)
        tok_cfg = image_tokenizer.config
    elif hart_tokenizer == "default":
        from .default_model import load_image_tokenizer

        image_tokenizer = load_image_tokenizer("default")
        tok_cfg = image_tokenizer.config
    elif isinstance(hart_tokenizer, str):
        image_tokenizer, tok_cfg = None, HybridTokenizerConfig.from_preset(hart_tokenizer)
    else:
        raise ValueError(f"hart_tokenizer must be \"default\", a folder, a preset name, a config or a tokenizer, "
                         f"got {hart_tokenizer!r}")


    head_cfg = ResidualDiffusionHeadConfig.from_preset(
        "tiny", target_dim=tok_cfg.z_channels, cond_dim=backbone.config.hidden_size, **(diffusion_head_config or {})
    )
    config = HartVLMConfig(
        text_config=backbone.config,
        hart_tokenizer_config=tok_cfg.to_dict(),
        diffusion_head_config=head_cfg.to_dict(),
        image_context_block=image_context_block,
        # the config setter propagates this to text_config, which is the backbone's own config
        attn_implementation=backbone.config._attn_implementation,
        base_llm=base_llm,
        **special_token_ids(text_tokenizer),
        **overrides,
    )
    model = cls(config, backbone=backbone)
    if image_tokenizer is not None:
        model.image_tokenizer.load_state_dict(image_tokenizer.state_dict())
    model.processor = HartVLMProcessor(text_tokenizer, config)
    return model


def replace_image_tokenizer(model, tokenizer: HybridTokenizer, keep_image_maps: bool = False):
    """Puts a newly trained HART tokenizer of the same architecture in place of this model's,
    to train the model again on its codes from these weights rather than from scratch.

    A tokenizer trained from scratch makes a new latent space: every code id, latent and
    residual means something else. So by default the parts that read or write that space
    start afresh: the bridge's `word_embed` (latent -> hidden) and `image_head` (the code
    logits), and the residual diffusion head. `keep_image_maps=True` keeps them, for a
    tokenizer trained on from this model's own, whose codebook has barely moved although its
    encoder now picks other codes. The backbone (text, plans, where pictures go), the text
    rows and the scale and position embeddings (the same image layout) are always kept. A
    tokenizer whose decoder alone was trained (codes unchanged) needs none of this: copy its
    decoder over instead (training/swap_image_decoder.py). Returns model."""
    if not isinstance(tokenizer, HybridTokenizer):
        raise ValueError(f"tokenizer must be a HybridTokenizer, got {type(tokenizer).__name__}")
    ours, theirs = model.config.image_tokenizer.to_dict(), tokenizer.config.to_dict()
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differ:
        raise ValueError("tokenizer must have this model's image tokenizer architecture; it differs in "
                         + ", ".join(f"{k} ({theirs.get(k)!r}, the model's {ours.get(k)!r})" for k in differ))
    reference = model.bridge.word_embed.weight
    model.image_tokenizer.load_state_dict(tokenizer.state_dict())
    if not keep_image_maps:
        model.bridge.reset_latent_maps()
        model.diffusion_head = ResidualDiffusionHead(model.config.head).to(reference.device, reference.dtype)
    return model


def check_same_vocabulary(saved: HartVLMConfig, wanted: HartVLMConfig, path: str) -> None:
    """A checkpoint loads only into a model with the same shared vocabulary and image layout."""
    def describe(c: HartVLMConfig) -> dict:
        tok = c.image_tokenizer
        return {
            "text vocabulary size": c.text_config.vocab_size,
            "codebook size": tok.vocab_size,
            "z_channels": tok.z_channels,
            "scale schedule": tuple(tok.v_patch_nums),
            "image_start_token_id": c.image_start_token_id,
        }

    a, b = describe(saved), describe(wanted)
    diff = [f"{k}: checkpoint {a[k]} vs config {b[k]}" for k in a if a[k] != b[k]]
    if diff:
        raise ValueError(f"the checkpoint in {path!r} has another vocabulary or image layout than the given config: " + "; ".join(diff))
