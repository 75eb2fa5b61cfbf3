import numpy as np
import pytest

from hart_vlm.data.assembly import FURNITURE_KINDS, VIEWS, RenderConfig, generate_guide, plan_guide, render_plan
from hart_vlm.data.assembly.checker import segment_by_color


def _one_plan_per_kind_and_view():
    """Guides covering every kind, and every view at least once (text-only search, fast)."""
    found, index = {}, 0
    while len(found) < len(FURNITURE_KINDS) or {p.view for p in found.values()} != set(VIEWS):
        plan = plan_guide(index, "train", seed=1)
        key = plan.kind if plan.kind not in found else (plan.kind, plan.view)
        if key not in found and (plan.kind not in found or plan.view not in {p.view for p in found.values()}):
            found[key] = plan
        index += 1
    return list(found.values())


PLANS = _one_plan_per_kind_and_view()


def test_same_seed_same_bytes():
    a, b = generate_guide(5, "train", seed=3), generate_guide(5, "train", seed=3)
    assert [s.text for s in a.steps] == [s.text for s in b.steps]
    assert all(x.image.tobytes() == y.image.tobytes() for x, y in zip(a.steps, b.steps))
    c = generate_guide(5, "train", seed=4)
    assert a.prompt != c.prompt or a.steps[-1].image.tobytes() != c.steps[-1].image.tobytes()


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.kind}-{p.view}")
def test_masks_match_pixels_and_final_render_shows_every_part(plan):
    guide = render_plan(plan, 128)
    for step in guide.steps:
        frame, image = step.frame, np.asarray(step.image)
        assert image.shape == (128, 128, 3)
        assert set(step.masks) == set(step.state)
        # A pixel's mask is the part seen at its centre; masks are disjoint.
        assert sum(m.astype(int) for m in step.masks.values()).max() <= 1
        # Every pure pixel (one flat face, no edge or blend) has exactly a colour of the part
        # whose mask holds it, or the background / shadow colour outside every mask.
        names = plan.furniture.part_names
        for name, mask in step.masks.items():
            own = {tuple(c) for c in frame.palette[frame.palette_parts == names.index(name)]}
            assert all(tuple(px) in own for px in image[mask & frame.pure]), name
        outside = frame.pure & (frame.part_map < 0)
        assert all(tuple(px) in {tuple(frame.palette[0]), tuple(frame.palette[1])} for px in image[outside])
        # ... so colour segmentation of the render gives its masks back.
        np.testing.assert_array_equal(segment_by_color(image, frame, 1), frame.part_map[frame.pure])
        # Most of the furniture is flat colour, not edges or blends.
        on_parts = frame.part_map >= 0
        assert (on_parts & frame.pure).sum() >= 0.4 * on_parts.sum()
    final = guide.steps[-1]
    assert set(final.state) == set(plan.furniture.part_names)
    for name, mask in final.masks.items():
        assert mask.sum() >= 10, f"{plan.kind}: {name} is (almost) hidden in the final render"
    # Each step adds visible pixels of the parts it names.
    for step in guide.steps:
        assert any(step.masks[n].any() for n in step.parts_added)


def test_any_resolution_and_antialiasing():
    plan = plan_guide(2)
    for res in (48, 200):
        guide = render_plan(plan, res)
        image = np.asarray(guide.steps[-1].image)
        assert image.shape == (res, res, 3)
        assert guide.steps[-1].masks[plan.furniture.part_names[0]].shape == (res, res)
    frame = render_plan(plan, 128).steps[-1].frame
    palette = {tuple(c) for c in frame.palette}
    blended = [tuple(px) for px in np.asarray(frame.image)[~frame.pure]]
    assert sum(px not in palette for px in blended) > 100  # edges and silhouettes are antialiased


def test_distinct_parts_never_share_a_colour():
    frame = render_plan(plan_guide(0), 64).steps[-1].frame
    owner = {}
    for colour, part in zip(map(tuple, frame.palette), frame.palette_parts):
        assert owner.setdefault(colour, part) == part


def test_render_config_validation():
    with pytest.raises(ValueError, match="resolution"):
        RenderConfig(resolution=8)
    with pytest.raises(ValueError, match="supersample"):
        RenderConfig(supersample=0)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_part_visible_in_final_render_of_many_guides(split):
    for index in range(30):
        guide = render_plan(plan_guide(index, split, seed=2), 128)
        for name, mask in guide.steps[-1].masks.items():
            assert mask.sum() >= 10, f"{guide.kind} {guide.params}: {name} hidden"


def test_face_colors_recolour_the_scene_the_renderer_draws():
    """face_colors(box_colors(material)) is the palette the renderer uses, before rounding; in
    another material only the faces of boxes made of the material change colour."""
    from hart_vlm.data.assembly.guide import box_colors, make_renderer

    plan = plan_guide(3, "train", seed=0)
    renderer = make_renderer(plan.furniture, plan.material, plan.view, 32)
    own = renderer.face_colors(box_colors(plan.furniture, plan.material))
    assert np.abs(own - renderer.colors.astype(float)).max() <= 3  # rounding, and the nudges that keep parts apart
    other = "red" if plan.material != "red" else "blue"
    recoloured = renderer.face_colors(box_colors(plan.furniture, other))
    finishes = np.repeat([b.finish == "material" for p in plan.furniture.parts for b in p.boxes], 6)
    changed = np.abs(recoloured - own).sum(-1) > 1
    assert not changed[:2].any() and np.array_equal(changed[2:], finishes)
    with pytest.raises(ValueError, match="base_colors"):
        renderer.face_colors([(0, 0, 0)])
    with pytest.raises(ValueError, match="material"):
        box_colors(plan.furniture, "purple")
    with pytest.raises(ValueError, match="material"):
        box_colors(plan.furniture, (0, 300, 0))
    # any sRGB colour renders the same geometry
    teal = make_renderer(plan.furniture, (0, 128, 128), plan.view, 32)
    assert np.allclose(teal.face_colors(box_colors(plan.furniture, (0, 128, 128))), teal.colors, atol=3)
    additions = [[plan.furniture.part_names.index(n) for n in plan.furniture.part_names]]
    assert np.array_equal(teal.render_states(additions)[0].labels, renderer.render_states(additions)[0].labels)
