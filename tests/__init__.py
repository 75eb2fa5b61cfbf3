"""Test suite; `load_script` imports the flat scripts of evals/ and training/ by file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str, module_name: str):
    """ROOT/relative_path as a module registered under `module_name` (dataclasses need their
    module in sys.modules to resolve annotations); loaded once per test session."""
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, ROOT / relative_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]
