"""`HartVLMConfig`: the backbone's config, HART's tokenizer and head configs, the image layout,
the special-token ids and the loss weights, in one `PreTrainedConfig` (STYLE.md principle 2)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from hart.diffusion_head import ResidualDiffusionHeadConfig
from transformers.utils import logging

from hart.tokenizer_config import HybridTokenizerConfig

from .layout import ImageLayout
from .vocab import SharedVocabulary

logger = logging.get_logger(__name__)

# Fields that saved configs of earlier versions may hold: training settings and experiments that
# left the model (context dropout is the recipe's now; docs/experiments/ tells what the others did).
OBSOLETE_FIELDS = ("context_dropout_prob", "code_corruption_prob", "code_corruption_top_k", "own_context_prob",
                   "own_context_top_k", "text_context_prob")

# Backbone sizes of the presets (Llama architecture). "default" is what the embedded model is
# trained at (DESIGN.md §6: fp16 weights <= 32 MB in all); "hart_0_7b_1024px" matches HART-0.7B's
# transformer (hidden 1536, 16 layers) with SwiGLU at 8/3 the width instead of a 4x GELU MLP.
_BACKBONES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True),
    "default": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=8, num_attention_heads=8,
                    num_key_value_heads=4, max_position_embeddings=8192, tie_word_embeddings=True),
    "hart_0_7b_1024px": dict(hidden_size=1536, intermediate_size=4096, num_hidden_layers=16,
                             num_attention_heads=24, num_key_value_heads=24,
                             max_position_embeddings=32768, tie_word_embeddings=False),
}
_TOKENIZERS: dict[str, HybridTokenizerConfig | str] = {
    "tiny": "tiny",
    # 128 px, downsample 16 -> an 8x8 latent: a coarse discrete grid, the residual head adds detail.
    "default": "default_128px",
    "hart_0_7b_1024px": "hart_1024px",
}
_HEADS = {"tiny": "tiny", "default": "tiny", "hart_0_7b_1024px": "hart"}
_HEAD_OVERRIDES = {"default": dict(width=256, depth=3)}


class HartVLMConfig(PreTrainedConfig):
    r"""Configuration of :class:`hart_vlm.HartVLM`.

    Args:
        text_config: the backbone's config (any transformers causal-LM config, or its dict with a
            `model_type`); its `vocab_size` is the text part `T` of the shared vocabulary.
        hart_tokenizer_config: `HybridTokenizerConfig.to_dict()` of the image tokenizer.
        diffusion_head_config: `ResidualDiffusionHeadConfig.to_dict()`; its `target_dim` must be the
            tokenizer's `z_channels` and its `cond_dim` the backbone's hidden size.
        image_context_block: append `word_embed(full latent)` after the last scale so that later
            text and images see the finished picture (DESIGN.md §3).
        one_step_head: the model carries a residual head distilled to one step
            (hart/one_step_head.py), which sampling uses for `diffusion_steps=1`, unguided.
        *_token_id: ids of the special tokens in the text vocabulary.
        text_loss_weight, image_loss_weight, diffusion_loss_weight: the weights of the three
            losses (DESIGN.md §4: CE(text) + λ_img CE(codes) + λ_diff diffusion).
        base_llm: the known LLM (`hart_vlm.llms`, e.g. "smollm2") whose pretrained weights the
            backbone starts from; a LoRA package (`hart_vlm.lora.save_adapter_package`) ships only
            what training changed and is loaded on top of them.
    """

    model_type = "hart_vlm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    hart_tokenizer_config: dict | None = None
    diffusion_head_config: dict | None = None
    image_context_block: bool = True
    one_step_head: bool = False
    image_start_token_id: int = 0
    image_end_token_id: int = 0
    image_placeholder_token_id: int = 0
    end_of_turn_token_id: int = 0
    pad_token_id: int | None = None
    text_loss_weight: float = 1.0
    image_loss_weight: float = 1.0
    diffusion_loss_weight: float = 1.0
    base_llm: str | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        dropped = sorted(key for key in OBSOLETE_FIELDS if kwargs.pop(key, None) is not None)
        if dropped:
            logger.warning_once(f"HartVLMConfig: ignoring fields of an older version that no longer exist: {dropped}")
        super().__post_init__(**kwargs)
        # peft reads the top-level flag to decide whether the LM head shares the embedding's
        # trainable token rows; mirror the backbone's tie so that both are wrapped together.
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        if self.hart_tokenizer_config is None:
            self.hart_tokenizer_config = HybridTokenizerConfig.from_preset("tiny").to_dict()
        tok = self.image_tokenizer
        if self.diffusion_head_config is None:
            self.diffusion_head_config = ResidualDiffusionHeadConfig.from_preset(
                "tiny", target_dim=tok.z_channels, cond_dim=self.text_config.hidden_size
            ).to_dict()
        head = self.head
        if head.target_dim != tok.z_channels:
            raise ValueError(
                f"diffusion_head_config.target_dim ({head.target_dim}) must equal the tokenizer's z_channels ({tok.z_channels})"
            )
        if head.cond_dim != self.text_config.hidden_size:
            raise ValueError(
                f"diffusion_head_config.cond_dim ({head.cond_dim}) must equal the backbone's hidden_size "
                f"({self.text_config.hidden_size})"
            )
        for name in ("text_loss_weight", "image_loss_weight", "diffusion_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self.layout  # validates the scale schedule

    # -- typed views of the nested configs --------------------------------------------------------
    @property
    def image_tokenizer(self) -> HybridTokenizerConfig:
        return HybridTokenizerConfig.from_dict(self.hart_tokenizer_config)

    @property
    def head(self) -> ResidualDiffusionHeadConfig:
        return ResidualDiffusionHeadConfig.from_dict(self.diffusion_head_config)

    @property
    def layout(self) -> ImageLayout:
        return ImageLayout(tuple(self.image_tokenizer.v_patch_nums), self.image_context_block)

    @property
    def vocabulary(self) -> SharedVocabulary:
        return SharedVocabulary(
            text_vocab_size=self.text_config.vocab_size,
            image_vocab_size=self.image_tokenizer.vocab_size,
            image_start_id=self.image_start_token_id,
            image_end_id=self.image_end_token_id,
            image_placeholder_id=self.image_placeholder_token_id,
            end_of_turn_id=self.end_of_turn_token_id,
            pad_id=self.pad_token_id if self.pad_token_id is not None else self.end_of_turn_token_id,
        )

    @property
    def image_size(self) -> int:
        return self.image_tokenizer.image_size

    # -- presets --------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, tokenizer=None, **overrides: Any) -> "HartVLMConfig":
        """`"tiny"` (CPU tests), `"default"` (the embedded model's size) or `"hart_0_7b_1024px"`.

        `tokenizer` is the text tokenizer whose vocabulary and special tokens the model uses
        (default: the one shipped with the package). `overrides` replace top-level fields;
        `text_config` overrides may be a dict of backbone fields.
        """
        if name not in _BACKBONES:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(_BACKBONES)}")
        if tokenizer is None:
            from .text_tokenizer import load_text_tokenizer

            tokenizer = load_text_tokenizer()
        special = special_token_ids(tokenizer)
        backbone = dict(model_type="llama", vocab_size=len(tokenizer), **_BACKBONES[name])
        backbone.update(overrides.pop("text_config", {}) or {})
        tok_cfg = _TOKENIZERS[name]
        tok_cfg = HybridTokenizerConfig.from_preset(tok_cfg) if isinstance(tok_cfg, str) else tok_cfg
        tok_cfg = HybridTokenizerConfig.from_dict({**tok_cfg.to_dict(), **overrides.pop("hart_tokenizer_config", {})})
        head = ResidualDiffusionHeadConfig.from_preset(
            _HEADS[name], target_dim=tok_cfg.z_channels, cond_dim=backbone["hidden_size"],
            **{**_HEAD_OVERRIDES.get(name, {}), **overrides.pop("diffusion_head_config", {})},
        )
        return cls(
            text_config=backbone,
            hart_tokenizer_config=tok_cfg.to_dict(),
            diffusion_head_config=head.to_dict(),
            **special,
            **overrides,
        )


def special_token_ids(tokenizer) -> dict[str, int]:
    """The config fields of the special-token ids, read from a text tokenizer: the image tokens
    that `add_hart_special_tokens` adds, and the tokenizer's own end of turn (its eos token: the
    chat template ends every turn with it) and padding."""
    from . import special_tokens as st

    ids = {}
    for field, token in (
        ("image_start_token_id", st.IMAGE_START),
        ("image_end_token_id", st.IMAGE_END),
        ("image_placeholder_token_id", st.IMAGE_PLACEHOLDER),
    ):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(
                f"the text tokenizer has no {token!r} token; call hart_vlm.text_tokenizer.add_hart_special_tokens(tokenizer) first"
            )
        ids[field] = token_id
    if tokenizer.eos_token_id is None:
        raise ValueError("the text tokenizer has no eos_token: generation needs the token that ends a turn")
    ids["end_of_turn_token_id"] = tokenizer.eos_token_id
    ids["pad_token_id"] = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return ids
