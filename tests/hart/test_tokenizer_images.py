import numpy as np
import pytest
import torch
from PIL import Image

from hart.images import images_to_tensor, load_image, pil_to_tensor, resize_center_crop, tensor_to_pil, to_pil


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_pil_tensor_round_trip_is_exact():
    image = random_image(20, 12)
    tensor = pil_to_tensor(image)
    assert tensor.shape == (3, 12, 20) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_pil(tensor)), np.asarray(image))
    batch = tensor_to_pil(torch.stack([tensor, -tensor]))
    assert isinstance(batch, list) and len(batch) == 2
    assert np.asarray(tensor_to_pil(torch.full((3, 2, 2), 5.0))).max() == 255  # clamped


@pytest.mark.parametrize("width, height", [(300, 200), (200, 300), (64, 64), (50, 40)])
def test_resize_center_crop_gives_the_square(width, height):
    out = resize_center_crop(random_image(width, height), 64)
    assert out.size == (64, 64) and out.mode == "RGB"


def test_center_crop_keeps_the_middle():
    array = np.zeros((64, 192, 3), dtype=np.uint8)
    array[:, 64:128] = 255  # white middle third
    assert np.asarray(resize_center_crop(array, 32))[:, 2:-2].min() == 255  # bicubic blurs the borders only


def test_images_to_tensor_batches_mixed_inputs():
    batch = images_to_tensor([random_image(80, 60), np.zeros((40, 50), dtype=np.uint8)], 32)
    assert batch.shape == (2, 3, 32, 32)
    assert torch.all(batch[1] == -1)
    assert images_to_tensor(random_image(10, 10), 16).shape == (1, 3, 16, 16)


def test_bad_images_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="image file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image file"):
        load_image(tmp_path / "bad.png")
    random_image(8, 8).convert("L").save(tmp_path / "grey.png")
    assert load_image(tmp_path / "grey.png").mode == "RGB"
    with pytest.raises(ValueError, match="uint8"):
        to_pil(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="PIL.Image"):
        to_pil("picture.png")
    with pytest.raises(ValueError, match="size"):
        resize_center_crop(random_image(8, 8), 0)
    with pytest.raises(ValueError, match="at least one"):
        images_to_tensor([], 16)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tensor_to_pil(torch.zeros(1, 4, 8, 8))
