"""Tensors kept between runs (drawn pictures and their inputs): one safetensors file with a format
tag and a JSON `info` in its metadata, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], fmt: str, info: dict) -> None:
    """Writes `tensors` to a temporary file beside `path`, then renames it onto `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: t.contiguous() for k, t in tensors.items()}, str(tmp), metadata={"format": fmt, "info": json.dumps(info)})
    os.replace(tmp, path)


def load_tensors(path: str | os.PathLike, fmt: str, what: str, writer: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, info) of a file `save_tensors` wrote with format `fmt`; a missing file or another
    format is a ValueError naming `what` the file should be and the `writer` that makes it."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise ValueError(f"{what} file not found: {str(path)!r} ({writer} writes it)")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != fmt:
            raise ValueError(f"{str(path)!r} is not {'an' if what[0] in 'aeiou' else 'a'} {what} file "
                             f"(format {meta.get('format')!r}, expected {fmt!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, json.loads(meta["info"])
