"""Tokenizer demo: one image through HART's hybrid tokenizer, discrete-only vs hybrid.

No trained tokenizer ships with the library yet, so this script first trains a small one on the
CPU for about a minute on random crops of a few photos (scikit-image's bundled samples when
scikit-image is installed, procedurally drawn shapes otherwise), then encodes one of those
photos and writes original | discrete-only | hybrid side by side:

    python examples/tokenizer_demo.py --out demo_tokenizer.png
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchmetrics.functional.image import peak_signal_noise_ratio

from hart.images import pil_to_tensor, resize_center_crop, tensor_to_pil
from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig

# A small tokenizer for 64 px images: downsample 4, a 16 x 16 latent reached in 8 scales. Trained
# from scratch in one stage, so the encoder and codebook are not frozen (HART freezes them in its
# second, hybrid-only stage).
DEMO_CONFIG = HybridTokenizerConfig(
    vocab_size=512,
    z_channels=16,
    ch=16,
    ch_mult=(1, 2, 2),
    num_res_blocks=1,
    norm_num_groups=8,
    v_patch_nums=(1, 2, 3, 4, 6, 8, 11, 16),
    freeze_codebook_for_hybrid=False,
)
LEARNING_RATE = 4e-3
BATCH_SIZE = 8


def photos() -> tuple[list[np.ndarray], str]:
    """Training photos (uint8 HxWx3, the first one is shown) and where they come from."""
    try:
        from skimage import data
    except ImportError:
        shapes = [draw_shapes(np.random.default_rng(i), 256) for i in range(16)]
        return shapes, "procedurally drawn shapes (scikit-image is not installed)"
    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()], (
        "scikit-image's sample photos astronaut, chelsea, coffee, rocket, immunohistochemistry"
    )


def draw_shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        box, fill = (int(x0), int(y0), int(x0 + w), int(y0 + h)), tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return np.asarray(image)


def random_crops(images: list[np.ndarray], count: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """`count` random square crops (a random scale of each photo), resized to size x size."""
    crops = []
    for _ in range(count):
        photo = images[rng.integers(len(images))]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = photo[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops.append(pil_to_tensor(resize_center_crop(np.ascontiguousarray(crop), size)))
    return torch.stack(crops)  # (count, 3, size, size)


def train(tokenizer: HybridTokenizer, images: list[np.ndarray], steps: int, max_seconds: float, seed: int) -> tuple[int, float]:
    """HART's hybrid training (decoder gets the discrete or the full latent, p = 0.5) for at most
    `steps` steps or `max_seconds`; the learning rate decays with whichever runs out first."""
    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.9))
    size = tokenizer.config.image_size
    start, step = time.perf_counter(), 0
    tokenizer.train()
    while (progress := max(step / steps, (time.perf_counter() - start) / max_seconds)) < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * progress))  # cosine decay
        losses = tokenizer.training_losses(random_crops(images, BATCH_SIZE, size, rng), generator)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            print(f"  step {step:4d}  reconstruction {losses.reconstruction.item():.4f}  vq {losses.vq.item():.4f}")
    tokenizer.eval()
    return step, time.perf_counter() - start


def labelled_panels(panels: list[tuple[Image.Image, str]], scale: int) -> Image.Image:
    width, height = panels[0][0].width * scale, panels[0][0].height * scale
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    sheet = Image.new("RGB", (len(panels) * (width + 8) + 8, height + 40), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, label) in enumerate(panels):
        x = 8 + i * (width + 8)
        sheet.paste(image.resize((width, height), Image.Resampling.NEAREST), (x, 32))
        draw.text((x, 8), label, fill="black", font=font)
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_tokenizer.png", help="where to write the PNG")
    parser.add_argument("--steps", type=int, default=600, help=f"training steps (batch {BATCH_SIZE})")
    parser.add_argument("--max-seconds", type=float, default=70.0, help="stop training after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 copes best with a busy machine)")
    parser.add_argument("--save", default=None, help="also save the trained tokenizer to this folder")
    args = parser.parse_args()
    if args.steps < 1 or args.max_seconds <= 0 or args.threads < 1:
        parser.error("--steps and --threads must be >= 1 and --max-seconds > 0")

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train_photos, source = photos()
    tokenizer = HybridTokenizer(DEMO_CONFIG)
    print(f"Training a {sum(p.numel() for p in tokenizer.parameters()) / 1e6:.2f}M-parameter tokenizer "
          f"on random crops of {source}, {DEMO_CONFIG.image_size} px, scales {DEMO_CONFIG.v_patch_nums} ...")
    steps, seconds = train(tokenizer, train_photos, args.steps, args.max_seconds, args.seed)

    # The first training image, whole: a tokenizer trained for a minute has not learnt to generalise.
    image = resize_center_crop(train_photos[0], DEMO_CONFIG.image_size)
    x = pil_to_tensor(image)[None]  # (1, 3, H, W)
    encoding = tokenizer.encode(x)
    discrete = tokenizer.decode(encoding.indices)
    hybrid = tokenizer.decode(encoding.indices, encoding.residual)
    psnr_discrete = peak_signal_noise_ratio(discrete, x, data_range=2.0).item()
    psnr_hybrid = peak_signal_noise_ratio(hybrid, x, data_range=2.0).item()

    panels = [
        (image, "original (a training image)"),
        (tensor_to_pil(discrete[0]), f"discrete-only {psnr_discrete:.1f} dB"),
        (tensor_to_pil(hybrid[0]), f"hybrid {psnr_hybrid:.1f} dB"),
    ]
    labelled_panels(panels, scale=4).save(args.out)
    if args.save:
        tokenizer.save_pretrained(args.save)
        print(f"Saved the tokenizer to {args.save} (HybridTokenizer.from_pretrained loads it)")
    print(f"The tokenizer was trained in this demo itself: {steps} steps, {seconds:.0f} s on this CPU.")
    print(f"PSNR of the first training image: discrete-only {psnr_discrete:.2f} dB, hybrid (discrete + residual) {psnr_hybrid:.2f} dB")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
