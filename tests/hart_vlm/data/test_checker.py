import numpy as np
import pytest
from PIL import Image

from hart_vlm.data.assembly import AssemblyChecker, generate_guide


@pytest.fixture(scope="module")
def guide():
    return generate_guide(4, "validation", seed=0, resolution=64)


@pytest.fixture(scope="module")
def checker():
    return AssemblyChecker()


def test_ground_truth_scores_perfectly(guide, checker):
    result = checker.score(guide, [(f"Step {k + 1}: {s.text}", s.image) for k, s in enumerate(guide.steps)])
    assert result.order_valid and result.complete and result.step_count_match
    assert [s.parts_added for s in result.steps] == [s.parts_added for s in guide.steps]
    assert result.mean_psnr == checker.psnr_cap
    assert result.mean_ssim == pytest.approx(1.0, abs=1e-6)
    assert result.mean_iou == 1.0
    assert all(s.part_iou and min(s.part_iou.values()) == 1.0 for s in result.steps)
    assert all(np.array_equal(np.asarray(a), np.asarray(s.image)) for a, s in zip(result.implied_images, guide.steps))
    summary = result.to_dict()
    assert summary["order_valid"] and len(summary["steps"]) == len(guide.steps)


def test_shuffled_guide_scores_poorly(guide, checker):
    shuffled = [(s.text, s.image) for s in guide.steps][::-1]
    result = checker.score(guide, shuffled)
    assert not result.order_valid
    assert result.complete  # the same parts, in a wrong order
    assert result.mean_psnr < 25 and result.mean_iou < 0.6 and result.mean_ssim < 0.95


def test_images_swapped_between_steps_lower_iou(guide, checker):
    steps = [(s.text, guide.steps[-1].image) for s in guide.steps]  # right texts, every picture the last
    result = checker.score(guide, steps)
    assert result.order_valid
    assert result.steps[-1].iou == 1.0
    assert result.steps[0].iou < 0.8


def test_text_only_missing_and_invalid_steps(guide, checker):
    texts = [(s.text, None) for s in guide.steps[:-1]] + [("Admire your work.", None)]
    result = checker.score(guide, texts)
    assert result.mean_psnr is None and result.mean_iou is None
    assert not result.steps[-1].valid and not result.order_valid
    assert not result.complete and result.missing_parts == guide.steps[-1].parts_added
    assert result.step_count_match


def test_generated_images_are_resized_and_noise_costs_a_little(guide, checker):
    rng = np.random.default_rng(0)
    noisy = []
    for s in guide.steps:
        pixels = np.asarray(s.image.resize((128, 128), Image.NEAREST)).astype(int) + rng.integers(-6, 7, (128, 128, 3))
        noisy.append((s.text, Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))))
    result = checker.score(guide, noisy)
    assert result.order_valid
    assert 20 < result.mean_psnr < checker.psnr_cap
    assert result.mean_iou > 0.6


def test_bad_input(guide, checker):
    with pytest.raises(TypeError, match="generated_steps"):
        checker.score(guide, [("Step 1", "not an image")])
    with pytest.raises(TypeError, match="guide"):
        checker.score("bookcase", [])
    with pytest.raises(ValueError, match="psnr_cap"):
        AssemblyChecker(psnr_cap=0)


def test_an_image_before_any_part_is_placed_is_scored_as_background():
    """A step whose text names no part, with a picture: nothing is in place, so the implied scene
    is empty and the checker scores the picture against it instead of failing."""
    from hart_vlm.data.assembly import AssemblyChecker, generate_guide

    guide = generate_guide(0, split="heldout", seed=0, resolution=64)
    score = AssemblyChecker().score(guide, [("Hello there.", guide.steps[0].image)])
    assert not score.steps[0].valid
    assert score.steps[0].psnr is not None


def test_material_is_read_from_the_colours_of_the_picture(guide, checker):
    """The renders of the guide in each of the eight materials are read as that material (the
    geometry and shading being the same, only the colour tells), so a picture in the wrong
    material lowers material_accuracy even where part IoU hardly sees it."""
    from hart_vlm.data.assembly import MATERIALS
    from hart_vlm.data.assembly.guide import make_renderer

    plan = guide.plan
    result = checker.score(guide, [(s.text, s.image) for s in guide.steps])
    assert [s.material for s in result.steps] == [plan.material] * len(guide.steps)
    assert result.material_accuracy == 1.0 and result.to_dict()["material_accuracy"] == 1.0
    additions = [[plan.furniture.part_names.index(n) for n in s.parts_added] for s in guide.steps]
    wrong_ious = []
    for material in MATERIALS:
        frames = make_renderer(plan.furniture, material, plan.view, 64).render_states(additions)
        recoloured = checker.score(guide, [(s.text, f.image) for s, f in zip(guide.steps, frames)])
        assert [s.material for s in recoloured.steps] == [material] * len(guide.steps), material
        assert recoloured.material_accuracy == float(material == plan.material)
        if material != plan.material:
            wrong_ious.append(recoloured.mean_iou)
    assert max(wrong_ious) > 0.8  # black drawn as walnut: still the right parts in the right places


def test_a_picture_without_furniture_has_no_material(guide, checker):
    background = Image.new("RGB", guide.steps[0].image.size, (184, 202, 232))
    result = checker.score(guide, [(guide.steps[0].text, background)] + [(s.text, None) for s in guide.steps[1:]])
    assert result.steps[0].material is None and result.steps[0].iou == 0.0
    assert result.material_accuracy is None
    with pytest.raises(ValueError, match="min_material_pixels"):
        AssemblyChecker(min_material_pixels=0)
