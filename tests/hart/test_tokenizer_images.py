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


@pytest.mark.parametrize("image, rgb", [
    (Image.fromarray(np.full((4, 4), 32896, np.uint16)), (128, 128, 128)),  # 16-bit grey: scaled, not clipped at 255
    (Image.fromarray(np.full((4, 4), 200, np.int32)), (200, 200, 200)),     # 32-bit integers within 0..255
    (Image.fromarray(np.full((4, 4), 40000, np.int32)), (156, 156, 156)),   # ... within 0..65535
    (Image.fromarray(np.full((4, 4), 0.5, np.float32)), (128, 128, 128)),   # float in [0, 1]
    (Image.new("RGBA", (4, 4), (255, 0, 0, 0)), (255, 255, 255)),            # transparent: the white under it
    (Image.new("RGBA", (4, 4), (0, 0, 0, 128)), (127, 127, 127)),
    (Image.new("LA", (4, 4), (0, 255)), (0, 0, 0)),
    (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
    (Image.new("1", (4, 4), 1), (255, 255, 255)),
    (np.zeros((4, 4, 4), np.uint8), (255, 255, 255)),                        # an RGBA array, fully transparent
])
def test_every_image_mode_becomes_the_rgb_it_shows(image, rgb):
    out = to_pil(image)
    assert out.mode == "RGB" and tuple(np.asarray(out)[0, 0]) == rgb


def test_images_of_unknown_range_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'F' image with values from -3 to -3 has no known range"):
        to_pil(Image.fromarray(np.full((4, 4), -3.0, np.float32)))
    Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(tmp_path / "deep.png")
    assert tuple(np.asarray(load_image(tmp_path / "deep.png"))[0, 0]) == (128, 128, 128)
