"""Loading the project's flat scripts (evals/*.py, training/*.py) as modules by file: they are
folders of scripts, not packages, yet the scripts share code with each other and the tests load them."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType


def load_script(path: str | os.PathLike, module_name: str) -> ModuleType:
    """The Python file at `path` as a module registered under `module_name` in sys.modules (first, so
    that dataclasses in it can resolve their module); loaded once, later calls return the same module."""
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {str(path)!r} as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name]


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Writes `obj` as JSON to `path` atomically (a temporary file beside it, then a rename), so that
    an interrupted benchmark never leaves half a results file; creates the folder."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
