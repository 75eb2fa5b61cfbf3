"""The residual head distilled to one step, against the 8-step head and the undistilled head at one
step, on the same held-out guides in one run (issue 43).

    OMP_WAIT_POLICY=PASSIVE python evals/one_step_head.py             # the default model, 30 guides
    python evals/one_step_head.py --model tiny --num 10 --json /tmp/one_step.json

For held-out guide i, `model.generate_story(guide.prompt, seed=seed + i, ...)` in each setting:

  8-step head           diffusion_steps=8 (the shipped sampler, HART's 8 ancestral steps)
  1 step, undistilled   diffusion_steps=1 with the model's distilled head removed: the 8-step head run
                        for one step (its x0 prediction from pure noise plus its predicted error)
  1 step, distilled     diffusion_steps=1: the one-step head (hart/one_step_head.py)
  no head               use_residual=False: the discrete codes only (what the head adds)

Scored by evals/assembly_bench.py's score_story (part IoU, PSNR and SSIM of each step's picture
against the render of the state its text implies, material, consistency). Time: `PictureDrawer.draw`
(a whole picture: scales, head, decoder, context) and `PictureDrawer.sample_residual` (the head)
are timed around every call; "head share" is head time / picture time.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from hart_vlm.scripts import load_script, write_json

HERE = Path(__file__).resolve().parent
SETTINGS = (("8-step head", {"diffusion_steps": 8}, True),
            ("1 step, undistilled", {"diffusion_steps": 1}, False),
            ("1 step, distilled", {"diffusion_steps": 1}, True),
            ("no head", {"use_residual": False}, True))
METRICS = (("iou", "part IoU", 3), ("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 3),
           ("material_accuracy", "material", 3), ("consistency", "consistency", 3))


@contextmanager
def picture_timers(seconds: dict):
    """Adds the wall time of every picture and of every residual-head call to seconds['picture'/'head']."""
    from hart_vlm.generation.pictures import PictureDrawer

    originals = {name: getattr(PictureDrawer, name) for name in ("draw", "sample_residual")}

    def draw(*args, **kwargs):  # a generator, as PictureDrawer.draw (stories ask for no previews)
        start = time.perf_counter()
        try:
            return (yield from originals["draw"](*args, **kwargs))
        finally:
            seconds["picture"] += time.perf_counter() - start

    def sample_residual(*args, **kwargs):
        start = time.perf_counter()
        try:
            return originals["sample_residual"](*args, **kwargs)
        finally:
            seconds["head"] += time.perf_counter() - start

    PictureDrawer.draw, PictureDrawer.sample_residual = draw, sample_residual
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(PictureDrawer, name, fn)


def run(model, guides, seed: int) -> list[dict]:
    bench = load_script(HERE / "assembly_bench.py", "evals_assembly_bench")
    distilled, rows = model.one_step_head, []
    for label, sampling, keep_distilled in SETTINGS:
        print(f"[one_step_head] {label}", file=sys.stderr, flush=True)
        model.one_step_head = distilled if keep_distilled else None
        seconds, stories = {"picture": 0.0, "head": 0.0}, []
        try:
            with picture_timers(seconds):
                for i, guide in enumerate(guides):
                    start = time.perf_counter()
                    story = model.generate_story(guide.prompt, seed=seed + i, **sampling)
                    elapsed = time.perf_counter() - start
                    steps = [(step.text, step.image) for step in story.steps]
                    stories.append({**bench.score_story(guide, steps, model.config.image_size, 24.0, intro=story.intro),
                                    "seconds": elapsed})
        finally:
            model.one_step_head = distilled
        rows.append({"setting": label, "sampling": sampling, **bench.aggregate(stories),
                     "picture_seconds": seconds["picture"], "head_seconds": seconds["head"],
                     "head_share": seconds["head"] / seconds["picture"] if seconds["picture"] else None,
                     "per_story": stories})
    return rows


def table(result: dict) -> str:
    lines = ["| setting | valid & complete | " + " | ".join(name for _, name, _ in METRICS)
             + " | head share of picture time | s / story |",
             "| --- | ---: | " + " | ".join("---:" for _ in METRICS) + " | ---: | ---: |"]
    for r in result["rows"]:
        cells = [f"{r[key]:.{digits}f}" if r[key] is not None else "n/a" for key, _, digits in METRICS]
        share = f"{100 * r['head_share']:.1f}%" if r["head_share"] is not None else "n/a"
        lines.append(f"| {r['setting']} | {r['valid_complete_rate']:.2f} | " + " | ".join(cells)
                     + f" | {share} | {r['seconds_per_story']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    rec = load_script(HERE / "reconstruction.py", "evals_reconstruction")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_model_arguments(parser)
    parser.add_argument("--num", type=int, default=30, help="held-out guides")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error("--num must be >= 1")
    model, source, is_default = rec.load_model(parser, args.model, torch.device(args.device), args.dtype)
    if model.one_step_head is None:
        parser.error(f"the model {source!r} has no one-step head (training/distill_head.py --package adds one)")

    from hart_vlm.data.assembly import generate_guide

    guides = [generate_guide(i, "heldout", args.seed, model.config.image_size) for i in range(args.num)]
    speed = load_script(HERE / "speed.py", "evals_speed")
    result = {"machine": speed.machine(torch.device(args.device)),
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": " ".join(["python evals/one_step_head.py", *(argv if argv is not None else sys.argv[1:])]),
              "source": source, "setup": {"num": args.num, "seed": args.seed, "dtype": args.dtype},
              "rows": run(model, guides, args.seed)}
    print(table(result))
    json_path = args.json or HERE / "results" / f"one_step_head_{source}.json"
    write_json(json_path, result)
    md_path = args.results_md or (HERE / "RESULTS.md" if is_default else None)
    if md_path is not None:
        m = result["machine"]
        lines = [f"## Residual head at 8 steps, at 1 step and distilled to 1 step: {source} model", "",
                 f"`{result['command']}` ({result['date']}; {m.get('cpu', m.get('device'))}, "
                 f"{m.get('torch_threads')} threads; {args.num} held-out guides, the same seeds in every row)", "",
                 table(result)]
        speed.write_results_section(md_path, f"one_step_head:{json_path.stem.removeprefix('one_step_head_')}", lines)
    print(f"wrote {json_path}" + (f", {md_path}" if md_path else ""))
    return result


if __name__ == "__main__":
    main()
