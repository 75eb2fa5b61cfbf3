"""The `hart-vlm` command starts without torch: `--help` answers at once."""

from __future__ import annotations

import subprocess
import sys


def test_help_imports_neither_torch_nor_transformers():
    code = ("import sys; from hart_vlm.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_data_command_offers_the_data_splits():
    from hart_vlm.cli_data import SPLITS
    from hart_vlm.data.assembly import SPLITS as DATA_SPLITS

    assert SPLITS == DATA_SPLITS
