"""The `hart-vlm` command starts without torch: `--help` answers at once."""

from __future__ import annotations

import os
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


def test_out_and_device_are_checked_before_the_model_loads(tmp_path, monkeypatch, capsys):
    import pytest

    from hart_vlm import cli_generate
    from hart_vlm.cli import main

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(cli_generate, "load_named_model", must_not_load)
    (tmp_path / "file.txt").write_text("x")
    cases = [(["story", "How do I build a stool?", "--out", str(tmp_path / "file.txt")], "--out .* is a file"),
             (["story", "How do I build a stool?", "--out", str(tmp_path / "s"), "--device", "toaster"],
              "--device 'toaster' is not a device name"),
             (["chat", "--device", "cuda:7"], "--device 'cuda:7'")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert __import__("re").search(message, err), err


def test_an_os_error_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    from hart_vlm import cli_generate
    from hart_vlm.cli import main

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "model" / "config.json"))

    monkeypatch.setattr(cli_generate, "load_named_model", unreadable)
    assert main(["story", "How do I build a stool?", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hart-vlm: error: [Errno 13] Permission denied") and "\n" not in err


def test_the_command_bounds_the_thread_spin_before_torch_unless_a_policy_is_set():
    """libgomp reads its environment once, when torch loads it: the CLI must set it first."""
    code = ("import os, sys; from hart_vlm import cli; cli.set_thread_wait(); "
            "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["100000", "False"]
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # the user's choice wins
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["None", "False"]


def test_the_commands_load_their_model_in_the_fastest_dtype_here(monkeypatch, tmp_path):
    """`hart-vlm story | chat | serve` load with dtype="auto" (float32 weights on a CPU, bf16 products
    where they pay); HART_VLM_DTYPE=float32 is the way to keep float32 throughout."""
    from hart_vlm import cli_generate, default_model

    calls = []
    monkeypatch.setattr(default_model, "load_default", lambda name, **kw: calls.append((name, kw)))
    monkeypatch.setattr(default_model, "load_model", lambda path, device, dtype: calls.append((path, dtype)))
    cli_generate.load_named_model("smollm2", "cpu")
    cli_generate.load_named_model(str(tmp_path), "cpu")
    assert calls == [("smollm2", {"device": "cpu", "dtype": "auto"}), (str(tmp_path), "auto")]
