"""The `hart-vlm` command: a thin dispatcher over subcommands.

Each command lives in its own module exposing `register(subparsers)`, which adds its parser
and sets `func(args) -> int | None` on it.
"""

from __future__ import annotations

import argparse
import os
import sys

from hart_vlm import app, cli_data, cli_generate

COMMAND_MODULES = (cli_generate, app, cli_data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hart-vlm", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


# How long PyTorch's OpenMP threads (GNU libgomp in the pip wheels) spin before they sleep. Unlimited
# spinning costs several times the work on a machine whose cores are busy; no spinning at all
# (OMP_WAIT_POLICY=PASSIVE) doubles a story's time on an idle one; this bound keeps both
# (docs/experiments/omp_wait_policy.md).
SPIN_COUNT = "100000"


def set_thread_wait() -> None:
    """Bounds the threads' spinning unless the user chose a wait policy; must run before torch is
    imported (libgomp reads the environment once)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)


def main(argv: list[str] | None = None) -> int:
    set_thread_wait()  # before torch is imported (the commands import it)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as error:  # bad arguments: usage message and exit status 2, no traceback
        parser.error(str(error))
    except OSError as error:  # a file or folder that cannot be read or written: one line, exit status 1
        print(f"hart-vlm: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
