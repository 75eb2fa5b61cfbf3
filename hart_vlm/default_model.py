"""The embedded default model: small, trained by this project's recipes on its procedural
assembly data, stored in the package (fp16 safetensors shards) so that no hub is needed.
training/package_default.py writes it (DESIGN.md §6)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

DEFAULT_MODEL_RESOURCE = "default_model"


def default_model_path() -> Path:
    return Path(str(resources.files("hart_vlm").joinpath(DEFAULT_MODEL_RESOURCE)))


def has_default_model() -> bool:
    return (default_model_path() / "config.json").is_file()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """A saved HartVLM folder on `device`, in eval mode: in float32 on a CPU, where fp16 matrix
    products and convolutions run many times slower (packaged folders such as the embedded
    model's store fp16), and in the dtype it was saved in on other devices."""
    from .modeling_hart_vlm import HartVLM

    device = torch.device(device)
    dtype = torch.float32 if device.type == "cpu" else "auto"
    return HartVLM.from_pretrained(path, dtype=dtype).to(device).eval()


def load_default(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    path: str | os.PathLike | None = None,
):
    """Loads the embedded default model (with its processor) on `device`, in `dtype`.

    The weights ship in fp16; float32 is the default because it is faster than fp16 on CPUs.
    `path` loads a packaged folder other than the embedded one (the packaging script checks its
    output this way); by default the folder inside the installed package."""
    from .modeling_hart_vlm import HartVLM

    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32, got {dtype!r}")
    if path is None:
        folder = default_model_path()
        if not has_default_model():
            raise FileNotFoundError(
                f"the embedded default model is not in this installation (looked in {folder}); "
                "load a trained model with HartVLM.from_pretrained(folder) instead"
            )
    else:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} holds no packaged model (no config.json); "
                "write one with training/package_default.py --model PATH --out DIR"
            )
    model = HartVLM.from_pretrained(folder, dtype=dtype)
    return model.to(device).eval()


def load_image_tokenizer(spec: str | os.PathLike, device: str | torch.device = "cpu"):
    """A HART tokenizer in float32: `default` (the embedded model's), a saved HartVLM folder (its
    image tokenizer) or a tokenizer folder (this library's or an official HART one). Raises
    FileNotFoundError when `spec` is none of them."""
    import json

    from hart.tokenizer import HybridTokenizer

    if str(spec) == "default":
        return load_default(device).image_tokenizer.float()
    config_file = Path(spec) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{os.fspath(spec)!r} is not `default` and holds no config.json "
                                "(not a saved HartVLM or tokenizer folder)")
    if json.loads(config_file.read_text()).get("model_type") == "hart_vlm":
        return load_model(spec, device).image_tokenizer.float()
    return HybridTokenizer.from_pretrained(spec, device).float()
