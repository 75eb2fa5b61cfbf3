"""Draw, with a trained unified model, every picture of procedural training guides as generation
draws them, and store each with the render it should show (hart_vlm/training/drawn_pairs.py):
the data of a decoder phase that learns to decode what the LLM writes.

    python training/draw_decoder_pairs.py --model runs/vlm_longer5k_d2/model --guides 1500 \
        --data-seed 4 --out runs/drawn_pairs_5k.safetensors

Guides 0..N-1 of the training split (data seed --data-seed, prompts worded as --varied-prompts
says, answers opening with the plan line unless --no-overview) are drawn with guidance --cfg and
SamplingConfig's other defaults (top-k 600/300, the residual head on), each picture after the
guide's true text and the model's own earlier pictures. The file is saved every --save-every
guides (atomically) and a rerun goes on from it. Train on it with train_tokenizer.py's
`drawn_pairs: PATH` (training/configs/tokenizer_default_cpu_decoder_drawn.yaml).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hart_vlm.training.drawn_pairs import DrawnPairs
from hart_vlm.training.own_pictures import draw_own_pictures


def draw_guide(model, guide, sampling, generator: torch.Generator, overview: bool) -> tuple[torch.Tensor, ...]:
    """(f_hat, residual, renders) of every picture of `guide`, drawn by `model`."""
    messages = guide.to_messages("pil", overview=overview)
    renders = model.processor(messages)["pixel_values"]
    tok = model.image_tokenizer
    f_hats, residuals = [], []
    for codes, residual in draw_own_pictures(model, messages, len(guide.steps), sampling, generator):
        f_hats.append(tok.indices_to_f_hat(codes)[0])
        residuals.append(residual[0])
    return torch.stack(f_hats), torch.stack(residuals), renders


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the saved HartVLM that draws (or `default`)")
    parser.add_argument("--guides", type=int, required=True, help="draw guides 0..N-1 of the training split")
    parser.add_argument("--out", required=True, help="the drawn-pairs file to write (safetensors)")
    parser.add_argument("--data-seed", type=int, default=4, help="seed of the procedural guides")
    parser.add_argument("--varied-prompts", action=argparse.BooleanOptionalAction, default=True,
                        help="word the requests in many ways, as the default model's last phases were trained")
    parser.add_argument("--overview", action=argparse.BooleanOptionalAction, default=True,
                        help="answers open with the plan line, as the default model writes them")
    parser.add_argument("--cfg", type=float, default=4.5, help="classifier-free guidance (4.5: HART's, and generate_story's default when the shipped recipes ran)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawing")
    parser.add_argument("--save-every", type=int, default=100, help="save after this many drawn guides")
    args = parser.parse_args(argv)
    if args.guides < 1:
        parser.error(f"--guides must be >= 1, got {args.guides}")
    if args.cfg < 0:
        parser.error(f"--cfg must be >= 0, got {args.cfg}")
    if args.save_every < 1:
        parser.error(f"--save-every must be >= 1, got {args.save_every}")

    from hart_vlm import HartVLM, load_default
    from hart_vlm.data.assembly import generate_guide
    from hart_vlm.sampling import SamplingConfig

    model = (load_default() if args.model == "default" else HartVLM.from_pretrained(args.model)).float().eval()
    info = {"model": str(args.model), "data_seed": args.data_seed, "varied_prompts": args.varied_prompts,
            "overview": args.overview, "cfg": args.cfg, "seed": args.seed}
    out = Path(args.out)
    pairs = DrawnPairs.empty(info)
    if out.is_file():
        pairs = DrawnPairs.load(out)
        if {k: v for k, v in pairs.info.items() if k != "seconds"} != info:
            raise SystemExit(f"{out} was drawn with other settings ({pairs.info}); give another --out")
    done = set(pairs.guides.tolist())
    todo = [i for i in range(args.guides) if i not in done]
    print(f"{len(done)} guides drawn already, {len(todo)} to draw", flush=True)
    sampling = SamplingConfig(cfg=args.cfg)
    start, drawn, new = time.perf_counter(), 0, []
    seconds = float(pairs.info.get("seconds", 0.0))
    for n, index in enumerate(todo, start=1):
        guide = generate_guide(index, "train", args.data_seed, model.config.image_size, args.varied_prompts)
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
        new.append((*draw_guide(model, guide, sampling, generator, args.overview), index))
        drawn += len(guide.steps)
        if n % args.save_every == 0 or n == len(todo):
            pairs, new = pairs.extend(new), []
            pairs.info["seconds"] = seconds + time.perf_counter() - start
            pairs.save(out)
            print(f"{n}/{len(todo)} guides, {len(pairs)} pictures, "
                  f"{(time.perf_counter() - start) / drawn:.2f} s a picture", flush=True)
    print(f"wrote {out}: {len(pairs)} pictures of {len(set(pairs.guides.tolist()))} guides")
    return out


if __name__ == "__main__":
    main()
