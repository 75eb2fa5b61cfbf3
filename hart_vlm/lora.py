"""LoRA for HartVLM with peft: what to adapt, what to train fully, which token rows to train.

- LoRA on the backbone's attention and MLP projections (the `q_proj`-style names of
  transformers' decoders; Hu et al., 2021).
- The image-side modules that the backbone does not have, the bridge (word_embed, scale and
  position embeddings, image-code head) and the residual diffusion head, are trained fully
  (`modules_to_save`): they are small and specific to images.
- A LoRA package (`save_adapter_package`) holds what training changed (the adapter, the fully
  trained modules, the token rows), the frozen HART tokenizer, the config and the processor; the
  backbone's own weights come from the known LLM named by `config.base_llm` (hart_vlm.llms).
  `HartVLM.from_pretrained(folder)` loads it and merges the adapter into the weights.
- The rows of the special tokens (image start/end, role markers) are trained through peft's
  `trainable_token_indices`, not the whole embedding matrix. With tied embeddings the top-level
  config declares the tie (HartVLMConfig mirrors the backbone's flag), so peft wraps the LM head
  with the same rows; otherwise training-time and merged logits differ.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from . import special_tokens as st

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FULLY_TRAINED = ("bridge", "diffusion_head")


def special_token_indices(model) -> list[int]:
    tokenizer = model.processor.tokenizer if model.processor is not None else None
    if tokenizer is None:
        raise ValueError("the model has no processor, so the special tokens' ids are unknown")
    ids = {tokenizer.convert_tokens_to_ids(t) for t in st.ALL_SPECIAL_TOKENS}  # those this library added
    return sorted(i for i in ids if i is not None and i != tokenizer.unk_token_id)


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


def _wrap(model, config: LoraConfig) -> PeftModel:
    """get_peft_model without the FutureWarning that peft (0.21) triggers in transformers 5 by reading
    the deprecated `is_gradient_checkpointing` property (peft's call, not ours)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def apply_lora(model, **kwargs) -> PeftModel:
    """Wraps `model` with LoRA adapters (`lora_config(model, **kwargs)`)."""
    peft_model = _wrap(model, lora_config(model, **kwargs))
    peft_model.base_model.model.processor = model.processor
    return peft_model


def autocast_adapter_inputs(model) -> None:
    """Lets autocast choose the dtype of the LoRA branches' inputs. peft casts a layer's input to
    its adapter's dtype (float32 master weights) before the low-rank product; under bf16 autocast
    with bf16 frozen weights that is a float32 copy of every activation, and autocast runs the
    product in bf16 anyway. Call it only for training under autocast."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


IMAGE_TOKENIZER_FILE = "image_tokenizer.safetensors"
ADAPTER_SHARDS = "adapter-{:05d}-of-{:05d}.safetensors"


def save_adapter_package(peft_model: PeftModel, folder: str | os.PathLike, state_dict: dict | None = None,
                         dtype: torch.dtype | None = None, max_shard_bytes: int = 15_000_000) -> Path:
    """Writes a LoRA-trained HartVLM as a package: the adapter's config and weights (what training
    changed: LoRA matrices, the fully trained modules, the token rows; in `dtype` if given, in
    safetensors shards of at most `max_shard_bytes`), the HartVLM config, the image tokenizer's
    weights and the processor. The base model must have been built on a known LLM
    (`config.base_llm`), whose weights the loader takes from there. `state_dict`: the full state
    (e.g. `accelerator.get_state_dict`), default the model's."""
    from peft.utils import get_peft_model_state_dict

    model = peft_model.get_base_model()
    if not model.config.base_llm:
        raise ValueError("the model was not built on a known LLM (config.base_llm is unset); "
                         "save the merged model with HartVLM.save_pretrained instead")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(peft_model, state_dict=state_dict)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    shards: list[dict] = [{}]
    size = 0
    budget = max_shard_bytes - 1024 - sum(len(k) + 160 for k in state)  # room for the safetensors header
    for key in sorted(state):
        nbytes = state[key].numel() * state[key].element_size()
        if shards[-1] and size + nbytes > budget:
            shards.append({})
            size = 0
        shards[-1][key] = state[key]
        size += nbytes
    for old in folder.glob("adapter-*-of-*.safetensors"):
        old.unlink()
    for i, shard in enumerate(shards, 1):
        save_file(shard, folder / ADAPTER_SHARDS.format(i, len(shards)), metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(folder)
    model.config.save_pretrained(folder)
    tokenizer_state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
                       for k, v in model.image_tokenizer.state_dict().items()}
    save_file(tokenizer_state, folder / IMAGE_TOKENIZER_FILE, metadata={"format": "pt"})
    if model.processor is not None:
        model.processor.save_pretrained(folder)
    return folder


def load_adapter_package(folder: str | os.PathLike, dtype: torch.dtype | str = "auto", merge: bool = True):
    """A HartVLM from a LoRA package (`save_adapter_package`): the known base LLM's weights
    (converted once into the cache, hart_vlm.llms), the package's image tokenizer, then the
    adapter merged in. Every weight the adapter expects must be in its files, and nothing else.
    Returns a plain HartVLM with its processor, in `dtype` ("auto": float32, the dtype the
    weights are merged in); with `merge=False` the PeftModel around it, in float32."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from .configuration_hart_vlm import HartVLMConfig
    from .llms import llm_folder
    from .modeling_hart_vlm import HartVLM
    from .processing_hart_vlm import HartVLMProcessor

    folder = Path(folder)
    config = HartVLMConfig.from_pretrained(folder)
    if not config.base_llm:
        raise ValueError(f"{folder / 'config.json'} names no base_llm: the package cannot say which LLM it adapts")
    shards = sorted(folder.glob("adapter-*-of-*.safetensors"))
    expected = int(shards[0].stem.rsplit("-of-", 1)[1]) if shards else 0
    if not (folder / IMAGE_TOKENIZER_FILE).is_file() or not shards or len(shards) != expected:
        raise FileNotFoundError(f"{folder} is not a complete LoRA package: it needs {IMAGE_TOKENIZER_FILE} and every "
                                f"adapter shard ({ADAPTER_SHARDS.format(1, max(expected, 1))}, ...)")
    backbone = AutoModelForCausalLM.from_pretrained(llm_folder(config.base_llm), dtype=torch.float32)
    backbone.resize_token_embeddings(config.text_config.vocab_size, mean_resizing=False)
    model = HartVLM(config, backbone=backbone)
    try:
        model.image_tokenizer.load_state_dict({k: v.float() if v.is_floating_point() else v
                                               for k, v in load_file(folder / IMAGE_TOKENIZER_FILE).items()}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{folder / IMAGE_TOKENIZER_FILE} does not fit the config's image tokenizer: {err}") from None
    peft_model = _wrap(model, LoraConfig.from_pretrained(folder))
    state = {}
    for shard in shards:
        state.update({k: v.float() if v.is_floating_point() else v for k, v in load_file(shard).items()})
    wanted = set(get_peft_model_state_dict(peft_model))
    if set(state) != wanted:
        missing, extra = sorted(wanted - set(state)), sorted(set(state) - wanted)
        raise ValueError(f"the adapter in {folder} does not fit its config: missing {missing[:5]}, unexpected {extra[:5]}")
    set_peft_model_state_dict(peft_model, state)
    model.processor = HartVLMProcessor.from_pretrained(folder)
    if not merge:
        return peft_model
    model = peft_model.merge_and_unload()
    if dtype != "auto":
        model = model.to(dtype)
    return model.eval()
