"""Seconds per story of the packaged models, in each dtype and with each KV cache, side by side (issue 43).

    OMP_WAIT_POLICY=PASSIVE python evals/story_speed.py                                   # tiny and smollm2
    python evals/story_speed.py --models tiny --dtypes float32 auto --caches growing --stories 5

Every configuration draws the same stories (`generate_story` with the model's defaults, one prompt,
seeds 0..N-1) after one untimed warm-up story; the configurations take turns story by story, so that a
change in the machine's load falls on all of them alike. Printed per configuration: median (min / max)
seconds per story, and whether its pictures are identical to those of the first cache in the same dtype
(a cache must not change a single pixel). Caches:

  growing   the library's (hart_vlm.generation.state.GrowingLayer: buffers that double when full)
  dynamic   transformers' DynamicCache, which concatenates every layer's whole cache on every pass

The `auto` dtype is what `hart_vlm.precision` picks on this machine (its measured bf16 speed-up is
printed). Results: `--json`, default evals/results/story_speed.json.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import statistics
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from hart_vlm.scripts import load_script, write_json

HERE = Path(__file__).resolve().parent
PROMPT = "How do I assemble a two-shelf white bookcase?"
CACHES = ("growing", "dynamic")


def story_digest(story) -> str:
    """One hash over the story's text and every picture's pixels."""
    digest = hashlib.sha256()
    for step in story.steps:
        digest.update(step.text.encode())
        if step.image is not None:
            digest.update(step.image.tobytes())
    return digest.hexdigest()[:16]


def run_story(model, cache: str, seed: int, prompt: str) -> tuple[float, str]:
    """One story with the given cache -> (seconds, digest)."""
    from hart_vlm.generation import state

    library_cache = state.generation_cache
    if cache == "dynamic":
        state.generation_cache = lambda config: DynamicCache(config=config)
    try:
        start = time.perf_counter()
        story = model.generate_story(prompt, seed=seed)
        return time.perf_counter() - start, story_digest(story)
    finally:
        state.generation_cache = library_cache


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], help="packaged models' names")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--caches", nargs="+", default=list(CACHES), choices=CACHES)
    parser.add_argument("--stories", type=int, default=3, help="timed stories per configuration (seeds 0..N-1)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--json", default=str(HERE / "results" / "story_speed.json"))
    args = parser.parse_args(argv)
    if args.stories < 1:
        parser.error(f"--stories must be at least 1, got {args.stories}")

    from hart_vlm import load_default
    from hart_vlm.precision import auto_dtype, cpu_bf16_speedup, cpu_has_bf16

    speed = load_script(HERE / "speed.py", "evals_speed")
    info = speed.machine(torch.device("cpu"))
    info["bf16_unit"] = cpu_has_bf16()
    info["bf16_speedup_measured"] = round(cpu_bf16_speedup(), 2)
    info["auto_dtype"] = str(auto_dtype("cpu")).removeprefix("torch.")
    models = {}
    for name in args.models:
        for dtype in args.dtypes:
            model = load_default(name, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
            run_story(model, args.caches[0], seed=10_000, prompt=args.prompt)  # warm-up
            models[(name, dtype)] = model
    configs = [(name, dtype, cache) for (name, dtype) in models for cache in args.caches]
    times = {config: [] for config in configs}
    digests = {config: [] for config in configs}
    for seed in range(args.stories):
        for name, dtype, cache in configs:
            seconds, digest = run_story(models[(name, dtype)], cache, seed, args.prompt)
            times[(name, dtype, cache)].append(seconds)
            digests[(name, dtype, cache)].append(digest)

    print(f"{info['cpu']}, {info['usable_cores']} usable cores, {info['torch_threads']} torch threads, torch "
          f"{info['torch']}; bf16 unit: {info['bf16_unit']}, a bf16 matrix product {info['bf16_speedup_measured']}x "
          f"float32's, so dtype='auto' is {info['auto_dtype']}; {args.stories} stories per row: {args.prompt!r}")
    print("| model | dtype | cache | s / story, median | min / max | same stories as the first cache |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    rows = []
    for name, dtype, cache in configs:
        t = times[(name, dtype, cache)]
        same = digests[(name, dtype, cache)] == digests[(name, dtype, args.caches[0])]
        rows.append({"model": name, "dtype": dtype, "cache": cache, "seconds": t, "median": statistics.median(t),
                     "same_as_first_cache": same})
        print(f"| {name} | {dtype} | {cache} | {statistics.median(t):.2f} | {min(t):.2f} / {max(t):.2f} | "
              f"{'yes' if same else 'NO'} |")
    result = {"machine": info, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "prompt": args.prompt, "stories": args.stories, "rows": rows}
    if args.json:
        write_json(args.json, result, indent=1)
    return result


if __name__ == "__main__":
    main()
