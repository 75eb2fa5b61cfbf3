"""Test suite; `load_script` imports the flat scripts of evals/ and training/ by file."""

from __future__ import annotations

from pathlib import Path

from hart_vlm.scripts import load_script as _load_by_file

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str, module_name: str):
    """ROOT/relative_path as a module registered under `module_name`; loaded once per test session."""
    return _load_by_file(ROOT / relative_path, module_name)
