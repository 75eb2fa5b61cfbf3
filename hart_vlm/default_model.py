"""The embedded default model: small, trained by this project's recipes on its procedural
assembly data, stored in the package (fp16 safetensors shards) so that no hub is needed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

DEFAULT_MODEL_RESOURCE = "default_model"


def default_model_path() -> Path:
    return Path(str(resources.files("hart_vlm").joinpath(DEFAULT_MODEL_RESOURCE)))


def has_default_model() -> bool:
    return (default_model_path() / "config.json").is_file()


def load_default(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Loads the embedded default model (with its processor) on `device`, in `dtype`.

    The weights ship in fp16; float32 is the default because it is faster than fp16 on CPUs."""
    from .modeling_hart_vlm import HartVLM

    path = default_model_path()
    if not has_default_model():
        raise FileNotFoundError(
            f"the embedded default model is not in this installation (looked in {path}); "
            "load a trained model with HartVLM.from_pretrained(folder) instead"
        )
    model = HartVLM.from_pretrained(path, dtype=dtype)
    return model.to(device).eval()
