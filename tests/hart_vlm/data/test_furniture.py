import numpy as np
import pytest

from hart_vlm.data.assembly import FURNITURE_KINDS, MATERIALS, SIZES, VIEWS, VOCABULARY, Box, find_mentions
from hart_vlm.data.assembly.furniture import MAX_STEPS, MIN_STEPS, plan_steps, yaw_matrix
from hart_vlm.data.assembly.kinds import BUILDERS


def test_catalogue_sizes():
    assert len(FURNITURE_KINDS) >= 8
    assert len(MATERIALS) >= 6
    assert len(VIEWS) >= 2
    assert set(FURNITURE_KINDS) == set(VOCABULARY)


@pytest.mark.parametrize("kind", FURNITURE_KINDS)
def test_every_kind_builds_with_valid_random_orders(kind):
    orders = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        furniture = BUILDERS[kind](SIZES[seed % 3], rng)
        # Every part name and target phrase is in the kind's closed vocabulary.
        vocab = VOCABULARY[kind]
        denoted = {n for parts in vocab.values() for n in parts}
        assert set(furniture.part_names) <= denoted
        for part in furniture.parts:
            for phrase, needed in part.targets:  # what a part is fixed to is read as a reference
                mentions = find_mentions(kind, f"Fix it to the {phrase}.")
                assert all(not m.added for m in mentions)
                assert {n for m in mentions for n in m.parts if n in furniture.part_names} <= set(needed)
        steps = plan_steps(furniture, rng)
        assert MIN_STEPS <= len(steps) <= MAX_STEPS
        assert sorted(n for s in steps for n in s) == sorted(furniture.part_names)
        assert furniture.order_is_valid(steps)
        orders.add(tuple(n for s in steps for n in s))
    assert len(orders) > 1, "the precedence graph should allow several valid orders"


def test_reversed_order_is_invalid():
    furniture = BUILDERS["bookcase"]("medium", np.random.default_rng(0))
    steps = plan_steps(furniture, np.random.default_rng(1))
    assert furniture.order_is_valid(steps)
    assert not furniture.order_is_valid(steps[::-1])
    assert not furniture.order_is_valid(steps + [steps[0]])  # a part added twice


def test_box_geometry_and_validation():
    box = Box((1.0, 0.5, 0.0), (2.0, 1.0, 0.5), yaw=np.pi / 2)
    corners = box.corners()
    assert corners.shape == (8, 3)
    # Turned a quarter turn, the 2 m side runs along z.
    np.testing.assert_allclose(np.ptp(corners, axis=0), [0.5, 1.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(yaw_matrix(0.3) @ yaw_matrix(0.3).T, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="size"):
        Box((0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="finish"):
        Box((0, 0, 0), (1, 1, 1), finish="glass")
