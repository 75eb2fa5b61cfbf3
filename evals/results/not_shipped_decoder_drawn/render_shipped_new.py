"""Draws the pictures of three procedural training guides the decoder phase did not see (guides
1500-1502 of data seed 4) with the shipped model, as training/draw_decoder_pairs.py draws them, and
writes render_shipped_new.png: per picture, the render (top), the drawn latents decoded by the
shipped decoder (middle) and by the decoder trained on drawn pairs (bottom).

    python evals/results/not_shipped_decoder_drawn/render_shipped_new.py --new runs/vlm_decoder_drawn/model
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from hart.images import tensor_to_pil
from hart_vlm import HartVLM, load_default
from hart_vlm.data.assembly import generate_guide
from hart_vlm.sampling import SamplingConfig
from hart_vlm.scripts import load_script

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shipped", default="default", help="the model that draws, with its decoder (default: embedded)")
    parser.add_argument("--new", required=True, help="the same model with the decoder trained on drawn pairs")
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".png")))
    args = parser.parse_args()
    draw = load_script(ROOT / "training" / "draw_decoder_pairs.py", "training_draw_decoder_pairs")
    shipped = (load_default() if args.shipped == "default" else HartVLM.from_pretrained(args.shipped)).float().eval()
    new = HartVLM.from_pretrained(args.new).float().eval()
    columns = []
    for index in (1500, 1501, 1502):
        guide = generate_guide(index, "train", 4, shipped.config.image_size, True)
        f_hat, residual, renders = draw.draw_guide(shipped, guide, SamplingConfig(cfg=4.5),
                                                   torch.Generator().manual_seed(index), True)
        with torch.no_grad():
            old = shipped.image_tokenizer.decode_latent(f_hat + residual)
            trained = new.image_tokenizer.decode_latent(f_hat + residual)
        columns += list(zip(renders, old, trained))
    side = 96
    sheet = Image.new("RGB", (side * len(columns), side * 3), "white")
    for c, images in enumerate(columns):
        for r, image in enumerate(images):
            sheet.paste(tensor_to_pil(image).resize((side, side)), (c * side, r * side))
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
