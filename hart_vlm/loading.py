"""Saving and loading a HartVLM folder beyond transformers' weights: the processor and the sampling
defaults travel with them, and loading never gives silently wrong weights: the weight files are
whole before transformers reads them, and every weight of the model was found in them after
(transformers fills gaps with random weights and only logs them). Errors name the file or the keys
(docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import os

from safetensors import SafetensorError, safe_open

_PROBLEMS = ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")


def check_weight_files(folder: str) -> None:
    """Every safetensors file of `folder` (and every shard its index names) exists and is whole,
    checked from the headers before transformers reads them, so that the error names the file."""
    names = {f for f in os.listdir(folder) if f.endswith(".safetensors")}
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                names |= set(json.load(f)["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{index}: not a valid shard index ({error})") from None
    for name in sorted(names):
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise ValueError(f"{file}: missing (the weights are split into shards; every one is needed)")
        try:
            with safe_open(file, "pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{file}: not a whole safetensors file ({error})") from None


def check_loading_info(folder: str, info: dict) -> None:
    """transformers' `output_loading_info` of a load from `folder` holds no missing, unexpected or
    mismatched key and no error."""
    problems = {name: sorted(str(k) for k in info.get(name) or ()) for name in _PROBLEMS}
    if any(problems.values()):
        found = "; ".join(f"{name.replace('_', ' ')} {keys[:5]}{' ...' if len(keys) > 5 else ''} ({len(keys)})"
                          for name, keys in problems.items() if keys)
        raise ValueError(f"{folder}: the weights do not match the model its config.json describes: {found}. "
                         "A shard may be missing or truncated, or config.json may not belong to these weights")


def save_extras(model, directory: str | os.PathLike) -> None:
    """What `HartVLM.save_pretrained` writes beside the weights: generation_config.json and the processor."""
    from .sampling import SamplingConfig

    if model.generation_config is not None:
        SamplingConfig.from_generation_config(model.generation_config).save_generation_config(directory)
    if model.processor is not None:
        model.processor.save_pretrained(directory)


def load_folder(path: str, load_weights, **kwargs):
    """`HartVLM.from_pretrained`: a LoRA package (hart_vlm.lora) or a saved folder whose weights
    `load_weights(path, **kwargs)` reads (transformers' loader), checked before and after, with its
    sampling defaults and processor. `output_loading_info=True` returns (model, info) as transformers does."""
    from .configuration_hart_vlm import HartVLMConfig
    from .processing_hart_vlm import PROCESSOR_CONFIG, HartVLMProcessor
    from .sampling import read_generation_config

    if not os.path.isdir(path):
        raise ValueError(f"{path!r} is not a folder; HartVLM.from_pretrained loads local folders only")
    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        from .lora import load_adapter_package

        return load_adapter_package(path, dtype=kwargs.get("dtype", "auto"))
    if isinstance(kwargs.get("config"), HartVLMConfig):
        from .building import check_same_vocabulary

        check_same_vocabulary(HartVLMConfig.from_pretrained(path), kwargs["config"], path)
    check_weight_files(path)
    want_info = kwargs.pop("output_loading_info", False)
    model, info = load_weights(path, output_loading_info=True, **kwargs)
    check_loading_info(path, info)
    model.generation_config = read_generation_config(path) or model.generation_config
    if os.path.isfile(os.path.join(path, PROCESSOR_CONFIG)):
        model.processor = HartVLMProcessor.from_pretrained(path)
    return (model, info) if want_info else model
