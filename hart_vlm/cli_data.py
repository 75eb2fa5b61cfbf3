"""`hart-vlm data assembly --out DIR --num N --split train --resolution 128 --seed S`."""

from __future__ import annotations

import argparse

SPLITS = ("train", "validation", "heldout")  # hart_vlm.data.assembly.SPLITS (checked by a test)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command and its `assembly` subcommand."""
    data = subparsers.add_parser("data", help="generate datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    assembly = data_commands.add_parser(
        "assembly", help="procedural furniture-assembly guides as JSONL + PNG",
        description="Write DIR/<split>.jsonl (DESIGN.md §7 chat format) and DIR/images/<split>/*.png.")
    assembly.add_argument("--out", required=True, help="output folder")
    assembly.add_argument("--num", type=int, default=1000, help="number of guides (default 1000)")
    assembly.add_argument("--split", choices=SPLITS, default="train")
    assembly.add_argument("--resolution", type=int, default=128, help="image side in pixels (default 128)")
    assembly.add_argument("--seed", type=int, default=0)
    assembly.add_argument("--captions", action="store_true",
                          help="also write --num single-picture examples (draw / describe)")
    assembly.add_argument("--overview", action="store_true",
                          help="open each guide's answer with its one-line plan ('Overview: (1) ...') "
                               "before 'Step 1:'")
    assembly.add_argument("--wording", choices=("data", "varied", "unseen"), default="data",
                          help="how the guide prompts are worded: the data's templates (default), the many ways "
                               "users word requests, or a family no training example uses")
    assembly.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    assembly.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hart_vlm.data.assembly.export import write_jsonl

    path = write_jsonl(args.out, args.num, args.split, args.seed, args.resolution,
                       include_captions=args.captions, workers=args.workers, progress=True,
                       overview=args.overview, wording=args.wording)
    print(f"wrote {path}")
    return 0
