"""PIL ↔ tensor conversion and resizing for the tokenizer (images as floats in [-1, 1])."""
from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

ImageLike = Union[Image.Image, np.ndarray]


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB; a missing or unreadable file raises ValueError naming it."""
    try:
        with Image.open(path) as image:
            image.load()  # read the pixels while the file is open
            rgb = pil_to_rgb(image)
            return image.copy() if rgb is image else rgb
    except FileNotFoundError as err:
        raise ValueError(f"image file not found: {os.fspath(path)!r}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image file {os.fspath(path)!r}: {err}") from err


def pil_to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: 16-bit and 32-bit integer greys scaled (PIL would clip them at
    255), float greys in [0, 1] or [0, 255] scaled, transparency laid over white (PIL would keep
    the colour under a transparent pixel); a float or integer image of another range is refused."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        low = float(values.min()) if values.size else 0.0
        if image.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif image.mode == "I" and low >= 0 and top <= 65535:
            scale = 1.0 if top <= 255 else 255.0 / 65535.0
        elif image.mode == "F" and low >= 0 and top <= 255:
            scale = 255.0 if top <= 1.0 else 1.0
        else:
            raise ValueError(f"a {image.mode!r} image with values from {low:g} to {top:g} has no known range; "
                             "convert it to 8-bit RGB first")
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def to_pil(image: ImageLike) -> Image.Image:
    """A PIL image (any mode, `pil_to_rgb`), or an (H, W, 3) / (H, W) uint8 array, as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(
                f"image array must be uint8 with shape (H, W), (H, W, 3) or (H, W, 4), got {image.dtype} {image.shape}"
            )
        return pil_to_rgb(Image.fromarray(image))
    raise TypeError(f"image must be a PIL.Image or a uint8 numpy array, got {type(image).__name__}")


def resize_center_crop(image: ImageLike, size: int) -> Image.Image:
    """Scale the shorter side to `size` (bicubic), then cut the centred size x size square."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    image = to_pil(image)
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def pil_to_tensor(image: ImageLike) -> torch.Tensor:
    """RGB image → float tensor (3, H, W) in [-1, 1]."""
    array = np.asarray(to_pil(image), dtype=np.float32)  # (H, W, 3) in [0, 255]
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()


def images_to_tensor(images: ImageLike | Sequence[ImageLike], size: int) -> torch.Tensor:
    """One or more images → (B, 3, size, size) in [-1, 1], each resized and centre-cropped."""
    if isinstance(images, (Image.Image, np.ndarray)):
        images = [images]
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    return torch.stack([pil_to_tensor(resize_center_crop(image, size)) for image in images])


def tensor_to_pil(images: torch.Tensor) -> Image.Image | list[Image.Image]:
    """(3, H, W) → one PIL image; (B, 3, H, W) → a list. Values in [-1, 1] (clamped)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must be (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
    pixels = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    pixels = pixels.movedim(-3, -1).cpu().numpy()  # (..., H, W, 3)
    if pixels.ndim == 3:
        return Image.fromarray(pixels)
    return [Image.fromarray(p) for p in pixels]
