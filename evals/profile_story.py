"""Where the time of one story goes: torch.profiler over `generate_story` on the default model (issue 43).

    OMP_WAIT_POLICY=PASSIVE python evals/profile_story.py                      # float32
    python evals/profile_story.py --dtype bfloat16 --diffusion-steps 1 --top 25

One untimed story first (warm-up), then the same story under the profiler. Printed: the wall time,
the time inside the library's stages (timers around the LLM passes, the residual head and the decoder;
"other" is the rest: Python, sampling, text handling, the checker) and the operators with the most
self CPU time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hart_vlm.scripts import load_script

HERE = Path(__file__).resolve().parent
PROMPT = "How do I assemble a two-shelf white bookcase?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a packaged model's name (default: the default model)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "auto"))
    parser.add_argument("--diffusion-steps", type=int, default=None)
    parser.add_argument("--top", type=int, default=20, help="operators listed")
    parser.add_argument("--prompt", default=PROMPT)
    args = parser.parse_args(argv)

    from hart_vlm import load_default

    model = load_default(args.model, dtype=args.dtype if args.dtype == "auto" else getattr(torch, args.dtype))
    kwargs = {"seed": 0} | ({"diffusion_steps": args.diffusion_steps} if args.diffusion_steps else {})
    model.generate_story(args.prompt, **kwargs)  # warm-up

    speed = load_script(HERE / "speed.py", "evals_speed")
    targets = [(model, "run_backbone", "LLM passes"), (model.diffusion_head, "sample", "residual head"),
               (model.image_tokenizer, "decode_latent", "decoder")]
    if model.one_step_head is not None:
        targets.append((model.one_step_head, "sample", "residual head"))
    with speed.watch_stages(targets, torch.device("cpu")) as record:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            story = model.generate_story(args.prompt, **kwargs)
            wall = time.perf_counter() - start
    print(f"{speed.machine(torch.device('cpu'))['cpu']}, {torch.get_num_threads()} threads, {args.dtype}: "
          f"{len(story.steps)} steps, {wall:.2f} s under the profiler")
    staged = 0.0
    for stage in ("LLM passes", "residual head", "decoder"):
        seconds, calls = record["seconds"][stage], record["calls"][stage]
        staged += seconds
        print(f"  {stage:14s} {seconds:6.2f} s  {100 * seconds / wall:5.1f}%  ({calls} calls)")
    print(f"  {'other':14s} {wall - staged:6.2f} s  {100 * (wall - staged) / wall:5.1f}%")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
