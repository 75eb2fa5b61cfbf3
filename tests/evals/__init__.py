"""Tests of the scripts in evals/ (a folder of scripts, not a package: they are loaded by file)."""

from __future__ import annotations

from tests import load_script


def load_eval(name: str):
    """evals/<name>.py as a module, registered under the name evals/speed.py loads its siblings by."""
    return load_script(f"evals/{name}.py", f"evals_{name}")
