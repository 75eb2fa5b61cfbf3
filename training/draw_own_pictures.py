"""Draw, with a trained model, the pictures that a training run will read as the model's own
(hart_vlm/training/own_pictures.py: one round of DAgger, Ross et al. 2011).

    python training/draw_own_pictures.py --config training/configs/vlm_default_cpu_dagger.yaml \
        --model runs/vlm_longer5k/model --steps 5000 6000 --out runs/own_pictures_5k.safetensors

The run's config fixes its data (the procedural assembly mixture) and its batch order
(GroupedBatchSampler is a pure function of the seed), so the guides that its optimizer steps
[FROM, TO) will see are known before it starts. Each of them, with probability --prob, gets a cut c
drawn from 1..pictures-1, and its first c pictures are drawn by --model as generation draws them
(guidance --cfg, SamplingConfig's other defaults), each after the guide's true text and the
model's own earlier pictures. The file is saved every --save-every guides (atomically) and a
rerun goes on from it; train_vlm.py reads it with `own_pictures: PATH`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hart_vlm.scripts import load_script
from hart_vlm.training.own_pictures import OwnPictures, choose_cuts, draw_own_inputs


def planned_guides(cfg, positions: int, resolution: int, first_step: int, last_step: int) -> tuple[list[int], list[int], object]:
    """(indices, pictures) of the guide examples the run's steps [first_step, last_step) read, in
    order and without repeats, and the run's training set."""
    from hart_vlm.data.assembly import plan_guide
    from hart_vlm.training.batching import GroupedBatchSampler
    from hart_vlm.training.data import AssemblyMixture

    if cfg.data or cfg.dataset is not None:
        raise ValueError("own pictures are drawn for the procedural assembly mixture; the config names other data")
    train_set = AssemblyMixture(cfg.mixture_examples, "train", cfg.data_seed, resolution, cfg.mixture_weights, positions,
                                cfg.guide_overview, cfg.varied_prompts)
    accum = cfg.gradient_accumulation_steps
    length = train_set.length if cfg.length_grouping else None
    sampler = GroupedBatchSampler(len(train_set), cfg.batch_size, last_step * accum, cfg.seed, length, cfg.group_batches)
    indices, seen = [], set()
    for b, batch in enumerate(sampler):
        if b < first_step * accum:
            continue
        for i in batch:
            if train_set.task(i) == "guide" and i not in seen:
                seen.add(i)
                indices.append(i)
    pictures = [len(plan_guide(i, "train", cfg.data_seed, cfg.varied_prompts).step_texts) for i in indices]
    return indices, pictures, train_set


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training run's YAML config (train_vlm.py)")
    parser.add_argument("--model", required=True, help="the saved HartVLM that draws (e.g. the run's starting model)")
    parser.add_argument("--steps", type=int, nargs=2, required=True, metavar=("FROM", "TO"),
                        help="the run's optimizer steps whose guides get own pictures")
    parser.add_argument("--out", required=True, help="the own-pictures file to write (safetensors)")
    parser.add_argument("--prob", type=float, default=0.5, help="share of those guides that get own pictures")
    parser.add_argument("--cfg", type=float, default=4.5, help="classifier-free guidance (4.5: HART's, and generate_story's default when the shipped recipes ran)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cuts and of the drawing")
    parser.add_argument("--save-every", type=int, default=50, help="save after this many drawn guides")
    parser.add_argument("--limit", type=int, default=None, help="draw at most this many guides (a trial)")
    args = parser.parse_args(argv)
    first, last = args.steps
    if not 0 <= first < last:
        parser.error(f"--steps must be FROM < TO with FROM >= 0, got {first} {last}")
    if not 0.0 <= args.prob <= 1.0:
        parser.error(f"--prob must be in [0, 1], got {args.prob}")
    if args.cfg < 0:
        parser.error(f"--cfg must be >= 0, got {args.cfg}")

    from hart_vlm import HartVLM
    from hart_vlm.sampling import SamplingConfig
    from hart_vlm.training.config import parse_config

    train_vlm = load_script(Path(__file__).resolve().parent / "train_vlm.py", "training_train_vlm")
    cfg = parse_config(train_vlm.VLMTrainingConfig, ["--config", args.config])  # the run's config, as train_vlm.py reads it
    model = HartVLM.from_pretrained(args.model).float().eval()
    indices, pictures, train_set = planned_guides(cfg, model.config.layout.num_positions, model.config.image_size, first, last)
    cuts = choose_cuts(indices, pictures, args.prob, args.seed)
    info = {"model": str(args.model), "config": str(args.config), "steps": [first, last], "prob": args.prob,
            "cfg": args.cfg, "seed": args.seed, "guides_planned": len(cuts)}
    out = Path(args.out)
    own = OwnPictures({}, info)
    if out.is_file():
        own = OwnPictures.load(out)
        if {k: v for k, v in own.info.items() if k != "seconds"} != info:
            raise SystemExit(f"{out} was drawn with other settings ({own.info}); give another --out")
    sampling = SamplingConfig(cfg=args.cfg)
    todo = [i for i in cuts if i not in own.inputs][: args.limit]
    print(f"{len(indices)} guides in steps [{first}, {last}), {len(cuts)} with own pictures "
          f"({sum(cuts.values())} pictures); {len(todo)} guides to draw", flush=True)
    start, drawn = time.perf_counter(), 0
    seconds = float(own.info.get("seconds", 0.0))
    for n, index in enumerate(todo, start=1):
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
        own.inputs[index] = draw_own_inputs(model, train_set[index], cuts[index], sampling, generator).half()
        drawn += cuts[index]
        if n % args.save_every == 0 or n == len(todo):
            own.info["seconds"] = seconds + time.perf_counter() - start
            own.save(out)
            rate = (time.perf_counter() - start) / drawn
            print(f"{n}/{len(todo)} guides, {rate:.2f} s a picture", flush=True)
    print(f"wrote {out}: {len(own.inputs)} guides")
    return out


if __name__ == "__main__":
    main()
