"""Assembly benchmark: step-by-step stories for held-out furniture, scored against the ground truth
(issue 9).

    python evals/assembly_bench.py                      # the embedded default model, 50 prompts
    python evals/assembly_bench.py --model PATH --num 20 --cfg 0 3 4.5
    python evals/assembly_bench.py --temperature 0.7 --json F --plot P  # sampled text (default: greedy)
    python evals/assembly_bench.py --wording unseen     # the same guides, asked for in words no training example uses
    python evals/assembly_bench.py --decoding free      # only free decoding (default: follow-plan and free)

For held-out guide i (`generate_guide(i, split="heldout", seed, resolution=model's image size)`:
(kind, material, size) combinations that training never saw), the model writes a story for
`guide.prompt` with `model.generate_story(prompt, seed=seed + i, ...)` in every setting of the sweep
(with `--wording varied` or `unseen` the prompt is worded as users word requests, `plan_guide(..., wording=...)`:
"a two-shelf white bookcase", a synonym, no size or no view, in the training family of wordings or in one
no training example uses; the guides themselves are the same):
decoding ("follow-plan": generate_story's default step check, hart_vlm.data.assembly.PlanFollower,
which has the opening plan written again until it lists the parts of a piece the prompt allows in a
buildable order, and a finished step written again, up to `step_retries` times, unless it adds exactly
the next item of that plan and counts its parts right; "free": step_check=None, every step as first sampled) x
CFG in `--cfg` x residual head on / off (`use_residual`) x the step count left to the model
("free", num_steps=None) or given ("given", num_steps = the ground truth's). PlanFollower reads the
steps with the same parser the checker scores with, so follow-plan measures the model and the check
together and free decoding the model alone; report the two decodings side by side. Each story is scored
by `AssemblyChecker().score(guide, [(step.text, step.image) ...], resolution=...)`:

  valid-order rate      stories whose every step adds a part, after the parts it requires
  complete rate         stories that end with every part in place
  valid-and-complete    stories that are both: a correct plan from first step to last
  step-count accuracy   stories with as many steps as the ground truth (meaningful for "free")
  valid-step rate       steps whose text adds a part (mean over stories)
  miscounted steps      steps whose text states a wrong count for the true piece ("the three shelves"
                        of a two-shelf bookcase, "the two doors" of a one-door cabinet;
                        hart_vlm.data.assembly.follow.miscounted; mean over stories)
  image rate            steps that have an image
  IoU / PSNR / SSIM     each step's image against the render of the state its texts imply
                        (the checker's per-part mask IoU by colour segmentation; PSNR capped at 100)
  material              steps whose picture is drawn in the requested material (the checker's
                        `material_accuracy`: the implied render recoloured in each material, the
                        picture's furniture pixels vote for the nearest; over the steps whose
                        picture shows enough furniture to tell)
  valid plan            stories whose answer opens with an "Overview: (1) ...; (2) ..." line (models
                        trained with guide_overview) that lists every part once in a valid order
                        (n/a when no story has one)
  follows plan          among the stories with a valid plan, those whose steps add exactly its items
                        in its order: a valid plan with unfaithful steps vs. a wrong plan
  s / story             wall time of generate_story per story (text, pictures and any retried steps)
  consistency           parts already placed stay put: for each pair of consecutive steps k-1, k,
                        the pixels where the implied render of state k-1 shows a part face (a "pure"
                        pixel: one flat face, no edge) that the render of state k still shows
                        unchanged, i.e. not covered by the new part; the fraction of them whose
                        colour (Euclidean RGB distance, 0-255 units) moves by at most `--tolerance`
                        between generated images k-1 and k. Mean over the pairs of a story that have
                        both images and such pixels. On the ground-truth renders it is exactly 1.

Per-story numbers are averaged over stories (image metrics over the stories that have them).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hart_vlm.scripts import load_script

HERE = Path(__file__).resolve().parent
STEP_MODES = ("free", "given")
# generate_story's step_check: "auto" keeps each step to the answer's own plan (PlanFollower, its
# default); None writes every step as first sampled
DECODINGS = {"follow-plan": "auto", "free": None}
RATES = ("valid_order_rate", "complete_rate", "valid_complete_rate", "step_count_accuracy", "valid_step_rate",
         "image_rate")
IMAGE_METRICS = ("iou", "psnr", "ssim", "material_accuracy", "consistency")
DEFAULT_SAMPLING = "generate_story's defaults (greedy text)"


def _load_reconstruction():
    """evals/reconstruction.py, for the model loading and the RESULTS.md section writer it shares."""
    return load_script(HERE / "reconstruction.py", "evals_reconstruction")


# ------------------------------------------------------------------------------------------------
# 1. scoring one story
# ------------------------------------------------------------------------------------------------
def consistency(guide, parts_added: list[list[str]], images: list[Image.Image | None], resolution: int,
                tolerance: float) -> float | None:
    """Among the pixels of earlier parts that the implied state keeps unchanged from step k-1 to k,
    the fraction whose colour stays within `tolerance` between generated images k-1 and k; the mean
    over k (None when no pair of consecutive steps has both images and such pixels)."""
    from hart_vlm.data.assembly import make_renderer

    if len(parts_added) != len(images):
        raise ValueError(f"parts_added ({len(parts_added)}) and images ({len(images)}) must have one entry per step")
    if len(images) < 2:
        return None
    names = guide.furniture.part_names
    frames = make_renderer(guide.furniture, guide.plan.material, guide.plan.view, resolution).render_states(
        [[names.index(n) for n in added] for added in parts_added])

    def pixels(image: Image.Image) -> np.ndarray:
        rgb = image.convert("RGB")
        if rgb.size != (resolution, resolution):
            rgb = rgb.resize((resolution, resolution), Image.BICUBIC)
        return np.asarray(rgb, dtype=np.float64)  # (H, W, 3) in [0, 255]

    fractions = []
    for k in range(1, len(images)):
        before, after = frames[k - 1], frames[k]
        kept = (before.part_map >= 0) & (before.labels == after.labels) & before.pure & after.pure  # (H, W)
        if images[k - 1] is None or images[k] is None or not kept.any():
            continue
        moved = np.linalg.norm(pixels(images[k]) - pixels(images[k - 1]), axis=-1)  # (H, W)
        fractions.append(float((moved[kept] <= tolerance).mean()))
    return float(np.mean(fractions)) if fractions else None


def score_plan(guide, intro: str, parts_added: list[list[str]]) -> dict:
    """Whether the story's overview line (its `intro`) is a valid, complete plan for `guide`, and
    whether the steps, which added `parts_added`, followed it (both None without an overview)."""
    from hart_vlm.data.assembly import parse_overview

    items = parse_overview(guide.kind, intro, guide.furniture.part_names)
    if items is None:
        return {"plan_valid": None, "follows_plan": None}
    plan = [item.added for item in items]
    valid = (bool(items) and all(item.valid and not item.repeated and not item.unknown for item in items)
             and guide.furniture.order_is_valid(plan)
             and {n for added in plan for n in added} == set(guide.furniture.part_names))
    follows = valid and [sorted(a) for a in parts_added] == [sorted(a) for a in plan]
    return {"plan_valid": valid, "follows_plan": follows if valid else None}


def score_story(guide, steps: list[tuple[str, Image.Image | None]], resolution: int, tolerance: float,
                checker=None, intro: str = "") -> dict:
    """The per-story record: the checker's verdicts and means, the valid-step and image rates, the
    consistency between consecutive images, and the verdict on the plan in `intro` (score_plan)."""
    from hart_vlm.data.assembly import AssemblyChecker
    from hart_vlm.data.assembly.follow import miscounted

    checker = checker or AssemblyChecker()
    score = checker.score(guide, steps, resolution=resolution)
    n = len(steps)
    piece = guide.furniture
    wrong_counts = [miscounted(guide.kind, text, piece.part_names, (piece,)) for text, _ in steps]
    parts_added = [s.parts_added for s in score.steps]
    return {
        "index": guide.index, "kind": guide.kind, "prompt": guide.prompt,
        "steps_true": len(guide.steps), "steps_generated": n,
        "order_valid": score.order_valid, "complete": score.complete, "step_count_match": score.step_count_match,
        "valid_step_rate": sum(s.valid for s in score.steps) / n if n else 0.0,
        "miscounted_step_rate": sum(bool(w) for w in wrong_counts) / n if n else 0.0,
        "image_rate": sum(image is not None for _, image in steps) / n if n else 0.0,
        "iou": score.mean_iou, "psnr": score.mean_psnr, "ssim": score.mean_ssim,
        "material_accuracy": score.material_accuracy, "drawn_materials": [s.material for s in score.steps],
        "consistency": consistency(guide, parts_added, [image for _, image in steps], resolution, tolerance),
        **score_plan(guide, intro, parts_added),
        "intro": intro, "texts": [text for text, _ in steps], "parts_added": parts_added,
    }


def aggregate(stories: list[dict]) -> dict:
    """Rates over stories, and image metrics over the stories that have them (None if none)."""
    if not stories:
        raise ValueError("stories must not be empty")
    row = {"stories": len(stories),
           "valid_order_rate": float(np.mean([s["order_valid"] for s in stories])),
           "complete_rate": float(np.mean([s["complete"] for s in stories])),
           "valid_complete_rate": float(np.mean([s["order_valid"] and s["complete"] for s in stories])),
           "step_count_accuracy": float(np.mean([s["step_count_match"] for s in stories])),
           "valid_step_rate": float(np.mean([s["valid_step_rate"] for s in stories])),
           "miscounted_step_rate": float(np.mean([s["miscounted_step_rate"] for s in stories])),
           "image_rate": float(np.mean([s["image_rate"] for s in stories])),
           "mean_steps": float(np.mean([s["steps_generated"] for s in stories]))}
    planned = any(s.get("plan_valid") is not None for s in stories)
    valid_plans = [s for s in stories if s.get("plan_valid")]
    row["plan_valid_rate"] = float(np.mean([bool(s.get("plan_valid")) for s in stories])) if planned else None
    row["follows_plan_rate"] = float(np.mean([s["follows_plan"] for s in valid_plans])) if valid_plans else None
    for metric in IMAGE_METRICS:
        values = [s[metric] for s in stories if s[metric] is not None]
        row[metric] = float(np.mean(values)) if values else None
        row[f"{metric}_stories"] = len(values)
    seconds = [s["seconds"] for s in stories if s.get("seconds") is not None]
    row["seconds_per_story"] = float(np.mean(seconds)) if seconds else None
    return row


# ------------------------------------------------------------------------------------------------
# 2. the sweep
# ------------------------------------------------------------------------------------------------
def run_sweep(model, guides: list, cfgs: list[float], seed: int, tolerance: float, sampling: dict,
              step_modes: tuple[str, ...] = STEP_MODES, decodings: tuple[str, ...] = tuple(DECODINGS),
              residual: tuple[bool, ...] = (True, False)) -> list[dict]:
    """One row per (decoding, cfg, residual head on / off, step mode), each with its stories."""
    from hart_vlm.data.assembly import AssemblyChecker

    checker, resolution = AssemblyChecker(), model.config.image_size
    rows = []
    for decoding in decodings:
        for cfg in cfgs:
            for use_residual in residual:
                for mode in step_modes:
                    print(f"[assembly_bench] {decoding}, cfg {cfg}, residual {'on' if use_residual else 'off'}, "
                          f"{mode} steps", file=sys.stderr, flush=True)
                    stories = []
                    for i, guide in enumerate(guides):
                        start = time.perf_counter()
                        story = model.generate_story(
                            guide.prompt, num_steps=len(guide.steps) if mode == "given" else None, seed=seed + i,
                            cfg=cfg, use_residual=use_residual, step_check=DECODINGS[decoding], **sampling)
                        seconds = time.perf_counter() - start
                        steps = [(step.text, step.image) for step in story.steps]
                        stories.append({**score_story(guide, steps, resolution, tolerance, checker, story.intro),
                                        "seconds": seconds})
                    rows.append({"decoding": decoding, "cfg": cfg, "use_residual": use_residual, "steps": mode,
                                 **aggregate(stories), "per_story": stories})
    return rows


# ------------------------------------------------------------------------------------------------
# 3. report: table, plot, RESULTS.md
# ------------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(result: dict) -> str:
    lines = ["| decoding | CFG | residual head | steps | valid order | complete | valid and complete | step count acc. "
             "| valid steps | images | miscounted steps | valid plan | follows plan | IoU | PSNR (dB) | SSIM | material "
             "| consistency | s / story |",
             "| --- | ---: | --- | --- |" + " ---: |" * 15]
    for r in result["rows"]:
        lines.append(f"| {r.get('decoding', 'free')} | {r['cfg']:g} | {'on' if r['use_residual'] else 'off'} | {r['steps']} | "
                     + " | ".join(_fmt(r[k], 2) for k in RATES) + f" | {_fmt(r.get('miscounted_step_rate'), 3)} | "
                     + f"{_fmt(r.get('plan_valid_rate'), 2)} | {_fmt(r.get('follows_plan_rate'), 2)} | "
                     + f"{_fmt(r['iou'], 3)} | {_fmt(r['psnr'], 2)} | {_fmt(r['ssim'], 3)} | {_fmt(r.get('material_accuracy'), 3)} | "
                     + f"{_fmt(r['consistency'], 3)} | "
                     + f"{_fmt(r.get('seconds_per_story'), 2)} |")
    return "\n".join(lines)


def save_plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = [("valid_order_rate", "valid-order rate"), ("step_count_accuracy", "step-count accuracy (free)"),
              ("iou", "part IoU"), ("psnr", "PSNR (dB)"), ("material_accuracy", "material"),
              ("consistency", "consistency")]
    fig = Figure(figsize=(3 * len(panels), 3))
    for j, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        for decoding in result["setup"].get("decodings", ["free"]):
            for use_residual in (True, False):
                for mode in result["setup"]["step_modes"]:
                    if key == "step_count_accuracy" and mode == "given":
                        continue
                    rows = [r for r in result["rows"] if r["use_residual"] == use_residual and r["steps"] == mode
                            and r.get("decoding", "free") == decoding]
                    xs = [r["cfg"] for r in rows if r.get(key) is not None]
                    ys = [r[key] for r in rows if r.get(key) is not None]
                    ax.plot(xs, ys, marker="o" if decoding == "free" else "s", linestyle="-" if use_residual else "--",
                            label=f"{decoding}, residual {'on' if use_residual else 'off'}, {mode} steps")
        ax.set_xlabel("CFG")
        ax.set_title(title, fontsize=9)
        if key != "psnr":
            ax.set_ylim(-0.02, 1.02)
    fig.axes[0].legend(fontsize=6)
    fig.suptitle(f"assembly benchmark, {result['source']} model ({result['image_size']} px), "
                 f"{result['setup']['num']} held-out prompts", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def results_section(result: dict, json_path: Path, plot_path: Path, md_path: Path) -> list[str]:
    rec = _load_reconstruction()
    s = result["setup"]
    wording = s.get("wording", "data")
    return [f"## Assembly benchmark: {result['source']} model, {wording} wording", "", f"`{result['command']}`", "",
            f"- machine: {rec.machine_line(result['machine'])}, {result['date']}",
            f"- {s['num']} held-out prompts (seed {s['seed']}{', ' + s['wording'] + ' wording' if s.get('wording', 'data') != 'data' else ''}), "
            f"{result['image_size']} px, story seed = seed + i, "
            f"sampling {s['sampling'] or DEFAULT_SAMPLING}, consistency tolerance {s['tolerance']:g} (RGB distance)",
            f"- metrics: {result['metrics']}", "", table(result), "",
            f"Files: `{rec.relative(json_path)}`, `{rec.relative(plot_path)}`", "",
            f"![assembly benchmark]({os.path.relpath(plot_path, md_path.parent)})", ""]


# ------------------------------------------------------------------------------------------------
# 4. main
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    rec = _load_reconstruction()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_model_arguments(parser)
    parser.add_argument("--num", type=int, default=50, help="held-out prompts")
    parser.add_argument("--cfg", type=float, nargs="+", default=[0.0, 3.0, 4.5], help="classifier-free guidance sweep (3: generate_story's default; 4.5: HART's)")
    parser.add_argument("--tolerance", type=float, default=24.0,
                        help="largest RGB distance (0-255 units) at which a kept pixel counts as unchanged")
    parser.add_argument("--steps", nargs="+", choices=STEP_MODES, default=list(STEP_MODES), dest="step_modes",
                        help="step modes: 'free' (the model decides how many steps) and/or 'given' (the true count)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="text token budget per story")
    parser.add_argument("--temperature", type=float, default=None,
                        help="text sampling temperature, 0 = greedy (default: generate_story's, greedy)")
    parser.add_argument("--top-p", type=float, default=None,
                        help="text nucleus sampling when the temperature is above 0 (default: SamplingConfig's)")
    parser.add_argument("--repetition-penalty", type=float, default=None,
                        help="text repetition penalty (CTRL), > 1 discourages repeats (default: SamplingConfig's, 1)")
    parser.add_argument("--step-retries", type=int, default=None,
                        help="with follow-plan, how often a step the check rejects is written again "
                             "(default: SamplingConfig's, 20)")
    rec.add_image_sampling_arguments(parser)
    parser.add_argument("--wording", choices=("data", "varied", "unseen"), default="data",
                        help="how each held-out guide is asked for: the data's templates (default), the many ways "
                             "users word requests (as in training), or a family of wordings no training example uses")
    parser.add_argument("--decoding", nargs="+", choices=tuple(DECODINGS), default=list(DECODINGS), dest="decodings",
                        help="'follow-plan': generate_story's default step check keeps each step to the answer's own "
                             "plan (PlanFollower); 'free': every step as first sampled (default: both)")
    parser.add_argument("--residual", nargs="+", choices=("on", "off"), default=["on", "off"],
                        help="the residual head on and/or off (default: both)")
    parser.add_argument("--force-image-after", default=None,
                        help="regular expression that forces an image (default: generate_story's end-of-step rule)")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error("--num must be >= 1")
    if min(args.cfg) < 0:
        parser.error(f"--cfg values must be >= 0, got {args.cfg}")
    if args.tolerance < 0:
        parser.error(f"--tolerance must be >= 0, got {args.tolerance}")
    if args.temperature is not None and args.temperature < 0:
        parser.error(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        parser.error(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.repetition_penalty is not None and not args.repetition_penalty > 0:
        parser.error(f"--repetition-penalty must be > 0, got {args.repetition_penalty}")
    if args.step_retries is not None and args.step_retries < 0:
        parser.error(f"--step-retries must be >= 0, got {args.step_retries}")
    image_sampling = rec.image_sampling(parser, args)
    device = torch.device(args.device)
    model, source, is_default = rec.load_model(parser, args.model, device, args.dtype)

    from hart_vlm.data.assembly import generate_guide

    resolution = model.config.image_size
    guides = [generate_guide(i, "heldout", args.seed, resolution, args.wording) for i in range(args.num)]
    sampling = {k: v for k, v in (("max_new_tokens", args.max_new_tokens), ("force_image_after", args.force_image_after),
                                  ("temperature", args.temperature), ("top_p", args.top_p),
                                  ("repetition_penalty", args.repetition_penalty), ("step_retries", args.step_retries))
                if v is not None} | image_sampling
    rows = run_sweep(model, guides, args.cfg, args.seed, args.tolerance, sampling, tuple(args.step_modes),
                     tuple(args.decodings), tuple(r == "on" for r in args.residual))
    result = {
        "machine": rec._load_speed().machine(device),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python evals/assembly_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "source": source,
        "image_size": resolution,
        "setup": {"num": args.num, "seed": args.seed, "wording": args.wording, "dtype": args.dtype,
                  "decodings": list(args.decodings), "cfg": args.cfg,
                  "tolerance": args.tolerance,
                  "sampling": sampling, "step_modes": list(args.step_modes)},
        "metrics": "rates over stories; IoU / PSNR / SSIM / material / consistency: mean of per-story means over the "
                   "stories with images (see evals/assembly_bench.py)",
        "rows": rows,
    }
    print(table(result))
    rec.write_outputs(args, "assembly_bench", result, is_default, lambda path: save_plot(result, path),
                      lambda *paths: results_section(result, *paths))
    return result


if __name__ == "__main__":
    main()
