"""Image datasets for tokenizer training: a folder, a `datasets` dataset, renders of the procedural
assembly data, and random crops of the photographs that ship inside scikit-image's wheel.

Each returns (3, S, S) float tensors in [-1, 1] and is a pure function of (seed, index), so the
order of a run is set by the batch sampler alone and a resumed run sees the same images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from hart.images import load_image, pil_to_tensor, resize_center_crop
from hart_vlm.data.assembly.guide import plan_caption, render_caption

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# scikit-image's bundled photographs: colour scenes, micrographs and grey textures (made RGB);
# the cat ("chelsea") is held out for evaluation.
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                "colorwheel", "stereo_motorcycle", "logo", "camera", "brick", "grass", "gravel", "moon",
                "coins", "text", "page", "clock", "cell")
EVAL_PHOTOS = ("chelsea",)


class ImageFolder(Dataset):
    """Every image file under `root` (recursively, sorted by path), resized and centre-cropped."""

    def __init__(self, root: str | os.PathLike, size: int):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"image folder not found: {str(root)!r}")
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {str(root)!r}")
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return pil_to_tensor(resize_center_crop(load_image(self.files[index]), self.size))


class HFImages(Dataset):
    """The `column` of a `datasets.Dataset` (PIL images, as the `Image` feature decodes them)."""

    def __init__(self, dataset: Any, size: int, column: str = "image"):
        if column not in dataset.column_names:
            raise ValueError(f"the dataset has no column {column!r} (columns: {dataset.column_names})")
        if len(dataset) == 0:
            raise ValueError("the dataset is empty")
        self.dataset, self.size, self.column = dataset, size, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.dataset[int(index)][self.column]
        if not isinstance(image, Image.Image):
            raise TypeError(f"row {index} of column {self.column!r} is a {type(image).__name__}, not a PIL image")
        return pil_to_tensor(resize_center_crop(image.convert("RGB"), self.size))


class AssemblyImages(Dataset):
    """Renders of the procedural assembly data: the single picture of caption example `index`
    (a random piece of furniture, view and assembly state), rendered at `size` pixels."""

    def __init__(self, num_images: int, size: int, split: str = "train", seed: int = 0):
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.num_images, self.size, self.split, self.seed = num_images, size, split, seed

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> torch.Tensor:
        return pil_to_tensor(render_caption(plan_caption(int(index), self.split, self.seed), self.size))


class PhotoCrops(Dataset):
    """`num_crops` random crops (a quarter to all of the shorter side, random position, random
    horizontal flip) of scikit-image's bundled photographs, resized to `size`."""

    def __init__(self, num_crops: int, size: int, photos: tuple[str, ...] = TRAIN_PHOTOS, seed: int = 0):
        try:
            from skimage import data
        except ImportError as err:
            raise ValueError("photo crops need scikit-image (pip install scikit-image)") from err
        if num_crops < 1:
            raise ValueError(f"num_crops must be >= 1, got {num_crops}")
        self.photos = [_rgb(getattr(data, name)()) for name in photos]
        self.num_crops, self.size, self.seed = num_crops, size, seed

    def __len__(self) -> int:
        return self.num_crops

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, 0x70686F, int(index)])  # 0x70686F: "pho"
        photo = self.photos[int(rng.integers(len(self.photos)))]
        H, W = photo.shape[:2]
        side = int(min(H, W) * rng.uniform(0.25, 1.0))
        top, left = int(rng.integers(H - side + 1)), int(rng.integers(W - side + 1))
        crop = photo[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = Image.fromarray(np.ascontiguousarray(crop)).resize((self.size, self.size), Image.Resampling.BICUBIC)
        return pil_to_tensor(image)


def _rgb(array: Any) -> np.ndarray:
    """A scikit-image sample (grey, RGB, RGBA, or a stereo pair's first image) as uint8 (H, W, 3)."""
    array = np.asarray(array[0] if isinstance(array, tuple) else array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))
