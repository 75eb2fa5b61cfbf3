"""Seconds per story of the packaged models in each dtype, side by side (issue 43's targets: a 5-step
story in at most 2 s with tiny and 10 s with smollm2 on 2 cores).

    GOMP_SPINCOUNT=100000 python evals/story_speed.py                      # tiny and smollm2, float32 and bf16
    python evals/story_speed.py --models tiny --dtypes float32 auto --stories 5

Every configuration draws the same stories (`generate_story` with the model's defaults, one prompt,
seeds 0..N-1) after one untimed warm-up story; the configurations take turns story by story, so that a
change in the machine's load falls on all of them alike. Printed per configuration: median (min / max)
seconds per story, the LLM passes per story and the milliseconds per pass: a dtype can change the text
(greedy choices flip), so stories of equal settings differ in length and s / story alone confounds
speed with length. The `auto` dtype is what `load_default(dtype="auto")` picks on this machine: float32
weights on a CPU, with the products of many-row passes in bf16 where a bf16 product pays and the backbone
is wide enough (the "products" column; hart_vlm.precision.bf16_products_pay); the measured bf16 speed-up
of a training-sized product, which decides that and training's dtype, is printed. Results: `--json`,
default evals/results/story_speed.json.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

import torch

from hart_vlm.scripts import load_script, write_json

HERE = Path(__file__).resolve().parent
PROMPT = "How do I assemble a two-shelf white bookcase?"


def story_seconds(model, seed: int, prompt: str) -> tuple[float, int]:
    """(seconds, LLM passes) of one story."""
    passes = 0

    def count(*_):
        nonlocal passes
        passes += 1

    hook = model.backbone.get_decoder().register_forward_hook(count)
    try:
        start = time.perf_counter()
        model.generate_story(prompt, seed=seed)
        return time.perf_counter() - start, passes
    finally:
        hook.remove()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], help="packaged models' names")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--stories", type=int, default=3, help="timed stories per configuration (seeds 0..N-1)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--json", default=str(HERE / "results" / "story_speed.json"))
    args = parser.parse_args(argv)
    if args.stories < 1:
        parser.error(f"--stories must be at least 1, got {args.stories}")

    from hart_vlm import load_default
    from hart_vlm.precision import (MIN_BF16_WIDTH, auto_dtype, bf16_products_pay, cpu_bf16_speedup, cpu_has_bf16,
                                    inference_dtype)

    speed = load_script(HERE / "speed.py", "evals_speed")
    info = speed.machine(torch.device("cpu"))
    info["bf16_unit"] = cpu_has_bf16()
    info["bf16_speedup_measured"] = round(cpu_bf16_speedup(), 2)
    info["auto_dtype"] = str(inference_dtype("cpu")).removeprefix("torch.")
    info["auto_bf16_products"] = bf16_products_pay("cpu", MIN_BF16_WIDTH)
    info["training_auto_dtype"] = str(auto_dtype("cpu")).removeprefix("torch.")
    models = {}
    for name in args.models:
        for dtype in args.dtypes:
            model = load_default(name, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
            story_seconds(model, seed=10_000, prompt=args.prompt)  # warm-up
            models[(name, dtype)] = model
    times = {config: [] for config in models}
    passes = {config: [] for config in models}
    for seed in range(args.stories):
        for config, model in models.items():
            seconds, n = story_seconds(model, seed, args.prompt)
            times[config].append(seconds)
            passes[config].append(n)

    print(f"{info['cpu']}, {info['usable_cores']} usable cores, {info['torch_threads']} torch threads, torch "
          f"{info['torch']}; bf16 unit: {info['bf16_unit']}, a bf16 matrix product {info['bf16_speedup_measured']}x "
          f"float32's (training's auto: {info['training_auto_dtype']}); "
          f"load_default(dtype='auto'): {info['auto_dtype']}"
          f"{f', bf16 products from width {MIN_BF16_WIDTH}' if info['auto_bf16_products'] else ''}; "
          f"{args.stories} stories per row: {args.prompt!r}")
    print("| model | dtype | products | s / story, median | min / max | LLM passes / story | ms / pass |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    rows = []
    for (name, dtype), t in times.items():
        ms_per_pass = 1000 * sum(t) / sum(passes[name, dtype])
        products = "bfloat16" if models[name, dtype].bf16_products else "as the weights"
        rows.append({"model": name, "dtype": dtype, "products": products, "seconds": t, "median": statistics.median(t),
                     "passes": passes[name, dtype], "ms_per_pass": ms_per_pass})
        print(f"| {name} | {dtype} | {products} | {statistics.median(t):.2f} | {min(t):.2f} / {max(t):.2f} | "
              f"{statistics.median(passes[name, dtype]):.0f} | {ms_per_pass:.1f} |")
    result = {"machine": info, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "prompt": args.prompt, "stories": args.stories, "rows": rows}
    if args.json:
        write_json(args.json, result, indent=1)
    return result


if __name__ == "__main__":
    main()
