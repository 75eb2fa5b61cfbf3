"""Distils a packaged model's residual head into a one-step head (hart/one_step_head.py).

    OMP_WAIT_POLICY=PASSIVE python training/distill_head.py --model tiny --out runs/distill_head
    python training/distill_head.py --model tiny --out runs/distill_head --package   # into the package

1. conditions: the head's inputs while the model draws the pictures of stories it writes for
   training-split guides (never the benchmark's held-out ones; every other story's text sampled at
   temperature 0.7, the rest greedy), cached in OUT/conditions.safetensors;
2. regression pairs: the teacher's DDIM (eta = 0) sample from each of `--pairs` noises per condition;
3. the student (a copy of the teacher run at t = T - 1) regresses the pairs (mean squared error);
4. every `--eval-every` steps, on held-out conditions, the student's samples against the 8-step
   teacher's (the per-condition mean and spread of 8 draws), next to the undistilled head at one step.

The student is written to OUT/one_step_head.safetensors (atomically); `--package` also stores it in
the package (hart_vlm/models/<name>/) as the model's `one_step_head`, which `diffusion_steps=1` uses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from hart.one_step_head import OneStepResidualHead, ode_targets
from hart_vlm.training.tensor_files import load_tensors, save_tensors


def collect_conditions(model, num_stories: int, seed: int) -> torch.Tensor:
    """(N, cond_dim) head conditions from stories drawn for training-split guides."""
    from hart_vlm.data.assembly import generate_guide

    head, seen = model.diffusion_head, []
    original = head.sample

    def recording(cond_NC, *args, **kwargs):
        seen.append(cond_NC.detach().float().clone())
        return original(cond_NC, *args, **kwargs)

    head.sample = recording
    try:
        for i in range(num_stories):
            guide = generate_guide(i, "train", seed, model.config.image_size, "varied")
            model.generate_story(guide.prompt, seed=seed + i, temperature=0.7 if i % 2 else 0.0)
            if (i + 1) % 10 == 0:
                print(f"[distill_head] conditions from {i + 1}/{num_stories} stories: "
                      f"{sum(len(c) for c in seen)}", file=sys.stderr, flush=True)
    finally:
        del head.sample
    return torch.cat(seen)


@torch.no_grad()
def spread_stats(sample_fn, cond_NC: torch.Tensor, draws: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-condition mean and standard deviation over `draws` samples: (N, D) each."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.stack([sample_fn(cond_NC, g) for _ in range(draws)])  # (draws, N, D)
    return xs.mean(0), xs.std(0)


def compare(reference, candidate) -> dict:
    """How far a sampler's per-condition means and spreads are from the reference's."""
    (m_ref, s_ref), (m, s) = reference, candidate
    return {"mean_rmse": float((m - m_ref).pow(2).mean().sqrt()),
            "spread_ratio": float(s.mean() / s_ref.mean()),
            "spread_rmse": float((s - s_ref).pow(2).mean().sqrt())}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="packaged model name (hart_vlm/models/)")
    p.add_argument("--out", type=Path, default=Path("runs/distill_head"))
    p.add_argument("--stories", type=int, default=120, help="training-split stories whose conditions are used")
    p.add_argument("--pairs", type=int, default=2, help="regression pairs (noises) per condition")
    p.add_argument("--ode-steps", type=int, default=50, help="DDIM steps of the regression targets")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--package", action="store_true", help="store the student in the package afterwards")
    args = p.parse_args(argv)
    for name in ("stories", "pairs", "ode_steps", "steps", "batch", "eval_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    from hart_vlm import load_default

    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_default(args.model, dtype=torch.float32)
    teacher = model.diffusion_head.eval().requires_grad_(False)
    D = teacher.config.target_dim

    cond_path = args.out / "conditions.safetensors"
    if cond_path.is_file():
        conds = load_tensors(cond_path, "head_conditions", "head conditions", "distill_head.py")[0]["conditions"]
    else:
        start = time.perf_counter()
        conds = collect_conditions(model, args.stories, args.seed)
        save_tensors(cond_path, {"conditions": conds}, "head_conditions", {"model": args.model, "stories": args.stories})
        print(f"[distill_head] {len(conds)} conditions in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    perm = torch.randperm(len(conds), generator=torch.Generator().manual_seed(args.seed))
    n_val = min(2048, len(conds) // 10)
    val, train = conds[perm[:n_val]], conds[perm[n_val:]]

    pairs_path = args.out / f"pairs_{args.pairs}x{args.ode_steps}.safetensors"
    if pairs_path.is_file():
        pairs = load_tensors(pairs_path, "head_pairs", "regression pairs", "distill_head.py")[0]
    else:
        start = time.perf_counter()
        g = torch.Generator().manual_seed(args.seed + 1)
        cond_P = train.repeat(args.pairs, 1)
        noise_P = torch.randn((len(cond_P), D), generator=g)
        target_P = torch.cat([ode_targets(teacher, n, c, args.ode_steps)
                              for n, c in zip(noise_P.split(4096), cond_P.split(4096))])
        pairs = {"cond": cond_P, "noise": noise_P, "target": target_P}
        save_tensors(pairs_path, pairs, "head_pairs", {"ode_steps": args.ode_steps})
        print(f"[distill_head] {len(cond_P)} ODE pairs in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    # the references on held-out conditions: the shipped 8-step sampler, and the teacher at one step
    def teacher_fn(steps):
        return lambda c, g: teacher.sample(c, num_steps=steps, generator=g)

    draws = 8
    reference = spread_stats(teacher_fn(8), val, draws, 123)
    history = {"undistilled_1_step": compare(reference, spread_stats(teacher_fn(1), val, draws, 7)),
               "teacher_8_step_redraw": compare(reference, spread_stats(teacher_fn(8), val, draws, 7)),
               "student": []}
    print(json.dumps({k: v for k, v in history.items() if k != "student"}), flush=True)

    student = OneStepResidualHead.from_teacher(teacher)
    student.train().requires_grad_(True)
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed + 2)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(pairs["cond"]), (args.batch,), generator=g)
        loss = (student.generate(pairs["noise"][idx], pairs["cond"][idx]) - pairs["target"][idx]).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            student.eval()
            row = {"step": step, "seconds": round(time.perf_counter() - start, 1), "regression": float(loss.detach()),
                   **compare(reference, spread_stats(lambda c, gg: student.sample(c, generator=gg), val, draws, 7))}
            student.train()
            history["student"].append(row)
            print(json.dumps(row), flush=True)

    student.eval().requires_grad_(False)
    out_file = args.out / "one_step_head.safetensors"
    save_tensors(out_file, student.state_dict(), "one_step_head", {"model": args.model, "steps": args.steps})
    history["setup"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(f"[distill_head] student -> {out_file}", file=sys.stderr)
    if args.package:
        add_to_package(args.model, student, args.out)
    return history


def add_to_package(name: str, student: OneStepResidualHead, work: Path) -> None:
    """The packaged model `name` with `student` as its one_step_head, packaged again in place
    (training/package_model.py: fp16 shards, verified, checksums, written whole)."""
    import shutil

    from hart_vlm import load_default
    from hart_vlm.default_model import default_model_path
    from hart_vlm.scripts import load_script

    packager = load_script(Path(__file__).resolve().parent / "package_model.py", "training_package_model")
    model = load_default(name, dtype=torch.float32)
    if model.config.base_llm is not None:
        raise ValueError(f"--package: {name!r} is a LoRA package; package its training run's adapter instead")
    model.config.one_step_head = True
    model.one_step_head = student.float()
    folder, card = work / "model_with_one_step_head", work / "MODEL_CARD.md"
    model.save_pretrained(folder)
    shutil.copyfile(default_model_path(name) / "MODEL_CARD.md", card)
    packager.package(folder, default_model_path(name), card)


if __name__ == "__main__":
    main()
