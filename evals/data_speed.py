"""Benchmark: how fast the procedural assembly data is generated (not a test).

    python evals/data_speed.py --num 1000 --resolution 128

Measures, for `--num` guides of the train split: planning only (texts and geometry), planning
plus rendering every step (in memory), and writing the JSONL with its PNG files through
`write_jsonl` (with `--workers` processes). Prints the timings and the machine they ran on;
`--json PATH` also saves them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from hart_vlm.data.assembly import plan_guide, render_plan, write_jsonl


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes for the JSONL + PNG run")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    plans = [plan_guide(i, "train", args.seed) for i in range(args.num)]
    plan_s = time.perf_counter() - start

    start = time.perf_counter()
    renders = sum(len(render_plan(plan, args.resolution).steps) for plan in plans)
    render_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        write_jsonl(out, args.num, "train", args.seed, args.resolution, workers=args.workers)
        write_s = time.perf_counter() - start

    results = {
        "num_guides": args.num, "resolution": args.resolution, "images": renders,
        "plan_seconds": round(plan_s, 3),
        "plan_and_render_seconds": round(plan_s + render_s, 3),
        "renders_per_second": round(renders / render_s, 1),
        "jsonl_png_seconds": round(write_s, 3), "jsonl_workers": args.workers,
        "machine": machine(),
    }
    print(f"{args.num} guides ({renders} images at {args.resolution} px) on {results['machine']['cpu']}, "
          f"{results['machine']['usable_cores']} usable cores:")
    print(f"  plan (text + geometry): {plan_s:.2f} s")
    print(f"  plan + render in memory, 1 process: {plan_s + render_s:.2f} s ({results['renders_per_second']} renders/s)")
    print(f"  write JSONL + PNG, {args.workers} process(es): {write_s:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
