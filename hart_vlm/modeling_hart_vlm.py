"""`HartVLM`: one causal LM that reads and writes text and HART's multi-scale image codes.

Data flow (DESIGN.md §1-4), top to bottom in this file:

    input_ids + pixel_values
      -> HART tokenizer: codes per scale, teacher-forcing inputs, continuous residual
      -> embeddings: text rows of the backbone's table; image positions get
         word_embed(scale input) + scale embedding + 2-D position embedding
      -> backbone (block-causal mask: a scale attends to itself and everything before)
      -> text logits (backbone's LM head) | image-code logits (image head) | residual diffusion head
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask
from transformers.utils import ModelOutput

from hart.diffusion_head import ResidualDiffusionHead
from hart.one_step_head import OneStepResidualHead
from hart.tokenizer import HybridEncoding, HybridTokenizer

from .bridge import ImageBridge
from .configuration_hart_vlm import HartVLMConfig
from .precision import products_in_bf16
from .sampling import SamplingConfig

IGNORE_INDEX = -100


@dataclass
class HartVLMOutput(ModelOutput):
    """Output of :meth:`HartVLM.forward`.

    With labels: the loss and its three parts. Without: `logits` (B, L, T), the text logits of every
    position, and `image_logits` (N, num_codes, V), the code logits at every image's code positions
    (`<|image_start|>` and the inputs of scales 2..K), images in order of appearance."""

    loss: torch.Tensor | None = None
    text_loss: torch.Tensor | None = None
    image_loss: torch.Tensor | None = None
    diffusion_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    image_logits: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
class HartVLMPreTrainedModel(PreTrainedModel):
    config_class = HartVLMConfig
    base_model_prefix = "hart_vlm"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # No ties of its own: an empty mapping tells peft to share the backbone's lm_head/embed_tokens rows.
    _tied_weights_keys: dict[str, str] = {}
    _keep_in_fp32_modules_strict = ["diffusion_head", "one_step_head"]  # noise schedules need float32

    def _init_weights(self, module: nn.Module) -> None:
        # The HART tokenizer and the diffusion head initialise themselves in their constructors
        # (the head's zero-initialised modulation must survive); the backbone is a PreTrainedModel
        # and gets its own init. Only the bridge is ours to reset here.
        if isinstance(module, ImageBridge):
            module.reset_parameters()


class HartVLM(HartVLMPreTrainedModel):
    def __init__(self, config: HartVLMConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        # 1. the LLM backbone over the text vocabulary [0, T)
        if backbone is not None:
            # a pretrained backbone keeps its weights: post_init must not re-initialise it
            for module in backbone.modules():
                module._is_hf_initialized = True
        self.backbone = backbone if backbone is not None else AutoModelForCausalLM.from_config(config.text_config)
        # 2. HART's hybrid tokenizer (frozen: the LLM learns to speak its codes)
        self.image_tokenizer = HybridTokenizer(config.image_tokenizer)
        self.image_tokenizer.requires_grad_(False)
        # 3. bridge: latent <-> hidden, scale/position embeddings, image-code output rows
        hidden = config.text_config.hidden_size
        self.bridge = ImageBridge(hidden, config.image_tokenizer.z_channels, config.image_tokenizer.vocab_size, config.layout)
        # 4. residual diffusion head on the last scale
        self.diffusion_head = ResidualDiffusionHead(config.head)
        self.one_step_head = OneStepResidualHead(config.head) if config.one_step_head else None  # 1-step student
        self.layout = config.layout
        self.vocab = config.vocabulary
        self.processor = None  # a HartVLMProcessor, attached by from_pretrained / load_default
        self.bf16_products = False  # passes of many rows, no autograd: products in bf16 (precision); "auto" sets it
        self.post_init()
        # the sampling defaults of chat / generate_story (hart_vlm.sampling), saved as generation_config.json
        self.generation_config = SamplingConfig().to_generation_config()

    # -- Hugging Face plumbing ----------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.backbone.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_output_embeddings(value)

    def train(self, mode: bool = True):
        super().train(mode)
        self.image_tokenizer.eval()  # frozen, also its dropout
        return self

    # -- embeddings ---------------------------------------------------------------------------
    def codebook(self) -> torch.Tensor:
        return self.image_tokenizer.quantize.embedding.weight  # (V, z)

    def embed_ids(self, input_ids_BL: torch.Tensor) -> torch.Tensor:
        """Embeddings of vocabulary ids: text rows from the backbone's table, image-code ids through
        the codebook and `word_embed` (DESIGN.md §2: the code rows are tied to the codebook)."""
        is_code = self.vocab.is_image_code(input_ids_BL)
        text_ids = torch.where(is_code, torch.zeros_like(input_ids_BL), input_ids_BL)
        if text_ids.numel() and (int(text_ids.max()) >= self.vocab.text_vocab_size or int(text_ids.min()) < 0):
            raise ValueError(f"input_ids must lie in [0, {self.vocab.size}) (text ids then image-code ids)")
        embeds_BLD = self.get_input_embeddings()(text_ids)
        if bool(is_code.any()):
            codes = input_ids_BL[is_code] - self.vocab.image_offset
            code_embeds = self.bridge.word_embed(self.codebook()[codes]).to(embeds_BLD.dtype)
            embeds_BLD = embeds_BLD.masked_scatter(is_code.unsqueeze(-1), code_embeds)
        return embeds_BLD

    def embed_image_inputs(self, latents_NLZ: torch.Tensor, positions: slice | None = None) -> torch.Tensor:
        """Embeddings of image input positions: word_embed(latent) + scale + 2-D position.
        `positions` selects a slice of the layout's input positions (default: all of them)."""
        pos_LD = self.bridge.position_embeddings()
        if positions is not None:
            pos_LD = pos_LD[positions]
        return self.bridge.word_embed(latents_NLZ) + pos_LD

    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor) -> tuple[HybridEncoding, torch.Tensor]:
        """HART codes, residuals and the teacher-forcing inputs of every image position.

        Returns (encoding, inputs_NLZ) where inputs_NLZ holds, for the layout's input positions,
        area-resized f_hat after each scale and (with a context block) the full latent. The frozen
        tokenizer runs outside autocast, in its own dtype, so that mixed-precision training sees
        the same codes as inference."""
        tok = self.image_tokenizer
        dtype = tok.quantize.embedding.weight.dtype
        with torch.autocast(device_type=pixel_values.device.type, enabled=False):
            enc = tok.encode(pixel_values.to(dtype))
        return enc, self._image_inputs(enc.indices, enc.latent)

    def _image_inputs(self, indices: list[torch.Tensor], latent: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs of the layout's image positions from every scale's codes and the
        latent of the context block: (N, num_input_positions, z)."""
        parts = list(self.image_tokenizer.scale_inputs(indices))
        if self.layout.context_block:
            parts.append(latent.flatten(2).transpose(1, 2))  # (N, pn_K**2, z)
        return torch.cat(parts, dim=1)

    def _scatter_image_inputs(self, embeds_BLD: torch.Tensor, starts: torch.Tensor, inputs_NLZ: torch.Tensor) -> torch.Tensor:
        """embeds_BLD with the input positions of the images starting at `starts` (N, 2) set to the
        embeddings of inputs_NLZ."""
        image_NLD = self.embed_image_inputs(inputs_NLZ.to(embeds_BLD.dtype))
        batch_idx = starts[:, :1].expand(-1, self.layout.num_input_positions)
        pos_idx = starts[:, 1:] + 1 + torch.arange(self.layout.num_input_positions, device=embeds_BLD.device)
        return embeds_BLD.index_put((batch_idx, pos_idx), image_NLD.to(embeds_BLD.dtype))

    def embed_inputs(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None):
        """input_ids (B, L) with images laid out as the processor writes them, and their pixels
        (N, 3, H, W) -> (inputs_embeds (B, L, D), block_ids (B, L), starts (N, 2), encoding | None)."""
        starts = (input_ids == self.vocab.image_start_id).nonzero()  # (N, 2): (sample, position)
        n_images = starts.shape[0]
        n_given = 0 if pixel_values is None else pixel_values.shape[0]
        if n_images != n_given:
            raise ValueError(f"input_ids hold {n_images} <|image_start|> tokens but pixel_values holds {n_given} images")
        block_ids = self.layout.block_ids(input_ids, self.vocab.image_start_id)
        embeds_BLD = self.embed_ids(torch.where(block_ids >= 0, torch.zeros_like(input_ids), input_ids))
        enc = None
        if n_images:
            enc, inputs_NLZ = self.encode_images(pixel_values)
            embeds_BLD = self._scatter_image_inputs(embeds_BLD, starts, inputs_NLZ)
        return embeds_BLD, block_ids, starts, enc

    # -- the one place where the backbone runs ------------------------------------------------
    def run_backbone(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        block_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Cache | None = None,
        context_start: torch.Tensor | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Cache | None]:
        """Runs the backbone's decoder on `inputs_embeds` (B, q, D) with the block-causal rule.

        attention_mask (B, past + q) marks real positions (1) and padding (0); block_ids (B, past + q)
        gives TEXT_BLOCK for causal positions and a shared id >= 0 for every position of one scale
        block; context_start (B, past + q), optional, is the first key position each query may see
        (it hides an image's context for classifier-free guidance).
        Returns the final hidden states (B, q, D) (after the backbone's last norm) and the cache.
        """
        mask = create_causal_mask(
            config=self.backbone.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
            and_mask_function=None if context_start is None else _context_start_mask(context_start),
            block_sequence_ids=block_ids,
        )
        decoder = self.backbone.get_decoder()
        many_rows = inputs_embeds.shape[0] * inputs_embeds.shape[1] > 1 and not torch.is_grad_enabled()
        with products_in_bf16(decoder, enabled=self.bf16_products and many_rows):
            out = decoder(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids,
                          cache=cache, use_cache=use_cache)
        return out.last_hidden_state, out.cache

    def text_logits(self, hidden_BLD: torch.Tensor) -> torch.Tensor:
        return self.get_output_embeddings()(hidden_BLD)

    def image_logits(self, hidden_BLD: torch.Tensor) -> torch.Tensor:
        return self.bridge.image_head(hidden_BLD)

    def head_condition(self, hidden_ND: torch.Tensor, codes_N: torch.Tensor) -> torch.Tensor:
        """The residual head's condition at last-scale positions, from their hidden states and the
        codes drawn (or given) there: norm(h + word_embed(codebook[code])), in the bridge's own
        dtype with autocast off (float32 in mixed-precision training: the head is small and its
        noise schedule needs the precision). Used by the loss and by sampling."""
        dtype = self.bridge.word_embed.weight.dtype
        code_vectors_NZ = self.codebook()[codes_N].to(dtype)
        with torch.autocast(device_type=hidden_ND.device.type, enabled=False):
            return self.bridge.head_condition(hidden_ND.to(dtype), code_vectors_NZ)

    # -- training / scoring forward -----------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        dropped_context: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> HartVLMOutput:
        """Full-sequence forward over any mix of text and images (DESIGN.md §3-4).

        input_ids (B, L): text ids; every image occupies `<|image_start|>`, the layout's input
        positions (filled with `<|image|>`) and `<|image_end|>`, as the processor writes them.
        pixel_values (N, 3, H, W) in [-1, 1]: the N images in order of appearance (row by row).
        labels (B, L): as input_ids on the spans to learn, IGNORE_INDEX elsewhere; an image whose
        `<|image_start|>` is labelled is a target (image CE + diffusion loss), others are read only.
        With labels the output holds the three losses and no logits (they are computed only where
        something is predicted); without, `logits` (B, L, T) are the text logits of every position
        and `image_logits` (N, num_codes, V) those of every image's code positions.
        dropped_context (N,) bool, optional: images that see nothing before their own
        `<|image_start|>` (context dropout for classifier-free guidance, drawn by the recipe).
        generator: the diffusion loss's noise.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        max_len = getattr(self.backbone.config, "max_position_embeddings", None)
        if max_len is not None and input_ids.shape[1] > max_len:
            raise ValueError(f"input_ids has {input_ids.shape[1]} positions, more than the backbone's context of {max_len}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

        embeds_BLD, block_ids, starts, enc = self.embed_inputs(input_ids, pixel_values)  # (B, L, D)
        context_start = self._context_start(input_ids, starts, dropped_context)
        hidden_BLD, _ = self.run_backbone(embeds_BLD, attention_mask, block_ids, position_ids, context_start=context_start)
        code_pos_NC = starts[:, 1:] + torch.arange(self.layout.num_codes, device=input_ids.device)  # (N, sum pn²)
        hidden_NCD = hidden_BLD[starts[:, :1], code_pos_NC]  # the positions that predict each image's codes
        if labels is None:
            return HartVLMOutput(logits=self.text_logits(hidden_BLD), image_logits=self.image_logits(hidden_NCD),
                                 hidden_states=hidden_BLD)

        text_loss = self._text_loss(hidden_BLD, labels, block_ids)
        is_target = labels[starts[:, 0], starts[:, 1]] != IGNORE_INDEX  # (N,)
        image_loss = diffusion_loss = hidden_BLD.sum() * 0.0  # keeps the graph connected without targets
        if bool(is_target.any()):
            image_loss, diffusion_loss = self._image_losses(hidden_NCD[is_target], enc, is_target, generator)
        c = self.config
        loss = c.text_loss_weight * text_loss + c.image_loss_weight * image_loss + c.diffusion_loss_weight * diffusion_loss
        return HartVLMOutput(loss=loss, text_loss=text_loss, image_loss=image_loss, diffusion_loss=diffusion_loss,
                             hidden_states=hidden_BLD)

    def _context_start(self, input_ids: torch.Tensor, starts: torch.Tensor,
                       dropped_context: torch.Tensor | None) -> torch.Tensor | None:
        """(B, L) first key position each query may see, for the images in `dropped_context`: the
        positions of such an image (its <|image_start|> to its last input) see only the image."""
        if dropped_context is None:
            return None
        if dropped_context.dtype != torch.bool or dropped_context.shape != (starts.shape[0],):
            raise ValueError(f"dropped_context must be a bool tensor of shape ({starts.shape[0]},) (one per image), "
                             f"got {dropped_context.dtype} {tuple(dropped_context.shape)}")
        if not bool(dropped_context.any()):
            return None
        context_start = torch.zeros_like(input_ids)
        span = self.layout.num_input_positions + 1  # image_start .. last input position
        for b, p in starts[dropped_context.to(starts.device)].tolist():
            context_start[b, p : p + span] = p
        return context_start

    def _text_loss(self, hidden_BLD: torch.Tensor, labels_BL: torch.Tensor, block_ids_BL: torch.Tensor) -> torch.Tensor:
        """Next-token CE on text targets, with logits computed at those positions only. Image
        interiors are not text targets, and neither is `<|image_end|>`, which generation always
        writes itself after the last scale."""
        targets_BL = labels_BL[:, 1:]
        learn_BL = (targets_BL != IGNORE_INDEX) & (targets_BL != self.vocab.image_end_id)
        learn_BL &= (block_ids_BL[:, 1:] < 0) & (block_ids_BL[:, :-1] < 0)
        if not bool(learn_BL.any()):
            return hidden_BLD.sum() * 0.0
        logits_MT = self.text_logits(hidden_BLD[:, :-1][learn_BL])  # (M, T)
        return F.cross_entropy(logits_MT.float(), targets_BL[learn_BL])

    def _image_losses(self, hidden_NCD: torch.Tensor, enc: HybridEncoding, is_target: torch.Tensor,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-code CE over all scales (position p0, <|image_start|>, predicts scale 1; the
        positions of scale k predict scale k) and the residual head's diffusion loss on the last
        scale, for the target images."""
        codes_NC = torch.cat([idx[is_target] for idx in enc.indices], dim=1)  # (N, sum pn²)
        image_loss = F.cross_entropy(self.image_logits(hidden_NCD).flatten(0, 1).float(), codes_NC.flatten())
        last = self.layout.last_scale_length
        # the noise schedule's arithmetic needs float32, also in a bf16 model (bf16 gives NaN losses)
        cond_MD = self.head_condition(hidden_NCD[:, -last:].flatten(0, 1), codes_NC[:, -last:].flatten()).float()
        target_MZ = enc.residual[is_target].flatten(2).transpose(1, 2).flatten(0, 1).float()  # (N pn_K², z)
        with torch.autocast(device_type=cond_MD.device.type, enabled=False):
            diffusion_loss = self.diffusion_head(target_MZ, cond_MD, generator=generator)
        return image_loss, diffusion_loss

    # -- entry points of the generation and story layers -------------------------------------
    def chat(self, messages, stream: bool = False, seed: int | None = None,
             generator: torch.Generator | None = None, reply: str = "auto", step_check="auto",
             generation_config=None, streamer=None, **sampling):
        """Answers a conversation (or a batch of them) with interleaved text and images
        (hart_vlm.generation).

        messages: [{"role": "user", "content": [{"type": "text", "text": ...}, {"type": "image",
        "image": PIL.Image}]}, ...] or a list of such conversations. reply: the kind of answer
        (hart_vlm.stories.replies): "auto" reads it from the last user turn (a guide: a picture
        after each step, as `generate_story` draws them; a drawing: a sentence and its picture;
        anything else: text), or "guide", "picture", "text", "free" (the model draws whenever it
        writes `<|image_start|>`). Sampling arguments are the fields of
        :class:`hart_vlm.sampling.SamplingConfig`, over what `generation_config` (a transformers
        `GenerationConfig`) sets; both win over the kind's settings and the model's defaults
        (`model.generation_config`). `streamer`: transformers' streamer protocol (`put`/`end`).
        Returns a `ChatResponse` (a list for a batch); with `stream=True`, an iterator of events
        (`TextDelta`, `ImagePreview`, `ImageDone`, `Done`) that add up to the same answer.
        Randomness comes only from `generator` (or a new one seeded with `seed`). `step_check`
        ("auto": the kind's, a plan follower for guides; None; or a `StepCheck`) reads every line
        about to get its picture and may have it written again or end the answer before it.
        """
        from .generation import chat
        from .stories.replies import prepare_reply

        sampling, step_check = prepare_reply(messages, reply, step_check, generation_config, **sampling)
        return chat(self, messages, stream=stream, seed=seed, generator=generator, step_check=step_check,
                    streamer=streamer, **sampling)

    def generate_story(self, prompt: str, **kwargs):
        """A step-by-step answer with one picture per step -> `Story`; the arguments of
        :func:`hart_vlm.stories.generate_story` (num_steps, seed, step_check, sampling fields)."""
        from .stories import generate_story

        return generate_story(self, prompt, **kwargs)

    # -- saving and loading (the processor and the sampling defaults travel with the weights) -------
    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        from .loading import save_extras

        super().save_pretrained(save_directory, *args, **kwargs)
        save_extras(self, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs) -> "HartVLM":
        """Loads a saved HartVLM or a LoRA package (weights from safetensors, checked; no remote
        code; hart_vlm.loading) and, when the folder holds one, its processor as `.processor`."""
        from .loading import load_folder

        def load_weights(path: str, **options):
            return super(HartVLM, cls).from_pretrained(path, *args, **options)

        return load_folder(str(pretrained_model_name_or_path), load_weights, **kwargs)

    # -- building from parts ------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "HartVLM":
        """A randomly initialised model of a named size ("tiny", "default", "hart_0_7b_1024px")
        on the shipped text tokenizer, with its processor attached: the starting point of
        pre-training, or a quick way to try the API."""
        from .processing_hart_vlm import HartVLMProcessor
        from .text_tokenizer import load_text_tokenizer

        tokenizer = load_text_tokenizer()
        config = HartVLMConfig.from_preset(name, tokenizer=tokenizer, **overrides)
        model = cls(config)
        model.processor = HartVLMProcessor(tokenizer, config)
        return model

    @classmethod
    def from_components(cls, llm, hart_tokenizer="tiny", text_tokenizer=None, image_context_block: bool = True,
                        diffusion_head_config: dict | None = None, **overrides) -> "HartVLM":
        """Builds a HartVLM from a pretrained LLM and a HART tokenizer (hart_vlm.building)."""
        from .building import from_components

        return from_components(cls, llm, hart_tokenizer, text_tokenizer, image_context_block, diffusion_head_config,
                               **overrides)

    def replace_image_tokenizer(self, tokenizer: HybridTokenizer, keep_image_maps: bool = False) -> "HartVLM":
        """Puts a newly trained HART tokenizer of the same architecture in place of this model's
        (hart_vlm.building). Returns self."""
        from .building import replace_image_tokenizer

        return replace_image_tokenizer(self, tokenizer, keep_image_maps)


def _context_start_mask(context_start_BL: torch.Tensor):
    """A transformers mask function: query q may only see keys at or after context_start[b, q]."""

    def inner(batch_idx, head_idx, q_idx, kv_idx):
        return kv_idx >= context_start_BL[batch_idx, q_idx]

    return inner


# Registration with the Auto classes, so that AutoConfig / AutoModel / AutoProcessor load saved folders
# without trust_remote_code (the classes come from this installed package).
def _register_auto_classes() -> None:
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from .processing_hart_vlm import HartVLMProcessor

    AutoConfig.register(HartVLMConfig.model_type, HartVLMConfig, exist_ok=True)
    AutoModel.register(HartVLMConfig, HartVLM, exist_ok=True)
    AutoProcessor.register(HartVLMConfig, HartVLMProcessor, exist_ok=True)


_register_auto_classes()
