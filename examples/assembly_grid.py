"""A grid of sample assembly steps, one row per furniture kind, each step captioned.

    python examples/assembly_grid.py --out docs/assembly_grid.png
"""

from __future__ import annotations

import argparse
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hart_vlm.data.assembly import FURNITURE_KINDS, plan_guide, render_plan

CELL, PAD, LABEL_W, CAPTION_H = 176, 8, 150, 62


def pick_guides(seed: int) -> list:
    """The first train guide of each kind, preferring a material and view not used yet."""
    chosen: dict[str, object] = {}
    used: set[str] = set()
    index = 0
    while len(chosen) < len(FURNITURE_KINDS):
        plan = plan_guide(index, "train", seed)
        fresh = plan.material not in used or index > 400
        if plan.kind not in chosen and fresh:
            chosen[plan.kind] = plan
            used.add(plan.material)
        index += 1
    return [chosen[kind] for kind in FURNITURE_KINDS]


def main(argv: list[str] | None = None) -> Image.Image:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=CELL, help="render size of each step")
    parser.add_argument("--steps", type=int, default=6, help="steps shown per row (first, last, and evenly between)")
    args = parser.parse_args(argv)

    plans = pick_guides(args.seed)
    font = ImageFont.load_default(size=11)
    title = ImageFont.load_default(size=14)
    cell_w, cell_h = args.resolution + PAD, args.resolution + CAPTION_H
    grid = Image.new("RGB", (LABEL_W + args.steps * cell_w + PAD, len(plans) * cell_h + PAD), "white")
    draw = ImageDraw.Draw(grid)
    for row, plan in enumerate(plans):
        guide = render_plan(plan, args.resolution)
        y = PAD + row * cell_h
        draw.text((PAD, y + 4), plan.kind, fill="black", font=title)
        details = textwrap.fill(f"{plan.material}, {plan.size}, {plan.view} view, {len(guide.steps)} steps", 20)
        draw.multiline_text((PAD, y + 24), details, fill=(90, 90, 90), font=font)
        shown = np.unique(np.linspace(0, len(guide.steps) - 1, min(args.steps, len(guide.steps))).round().astype(int))
        for col, k in enumerate(shown):
            x = LABEL_W + col * cell_w
            grid.paste(guide.steps[k].image, (x, y))
            caption = textwrap.fill(f"Step {k + 1}: {guide.steps[k].text}", 30, max_lines=4, placeholder=" ...")
            draw.multiline_text((x, y + args.resolution + 3), caption, fill="black", font=font, spacing=1)
    grid.save(args.out)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")
    return grid


if __name__ == "__main__":
    main()
