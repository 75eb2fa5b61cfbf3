"""Tests of the scripts in evals/ (a folder of scripts, not a package: they are loaded by file)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_eval(name: str):
    """evals/<name>.py as a module, registered under the name evals/speed.py loads its siblings by
    (dataclasses need their module in sys.modules)."""
    module_name = f"evals_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, ROOT / "evals" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]
