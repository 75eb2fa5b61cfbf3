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


def main(argv: list[str] | None = None) -> int:
    # PyTorch's OpenMP threads spin while they wait; on a busy machine that costs many times the work
    # (docs/experiments/omp_wait_policy.md). Set before torch is imported (the commands import it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
