"""PlanFollower, the step check that keeps generated steps to the answer's own overview."""

from __future__ import annotations

import numpy as np
import pytest

from hart_vlm.data.assembly import FURNITURE_KINDS, SIZES, PlanFollower, detect_kind, plan_guide
from hart_vlm.data.assembly.follow import all_pieces, requested_pieces
from hart_vlm.data.assembly.kinds import BUILDERS

TABLE_PLAN = "Overview: (1) legs; (2) long rails and short rails; (3) tabletop."


@pytest.mark.parametrize("prompt, kind", [
    ("How do I assemble a two-shelf white bookcase?", "bookcase"),
    ("Help me put together a white bookshelf.", "bookcase"),
    ("my oak bookshelves", "bookcase"),
    ("TWO OAK BOOKSHELVES", "bookcase"),
    ("a small walnut bedside table", "nightstand"),  # not "table"
    ("How do I build a single grey bed frame?", "bed frame"),
    ("a pine bed with nine slats", "bed frame"),
    ("two closets", "wardrobe"),
    ("a bar stool", "stool"),
    ("a sofa", None),
    ("a table and a chair", None),  # two kinds: no single plan vocabulary
])
def test_detect_kind_reads_the_kind_and_its_synonyms(prompt, kind):
    assert detect_kind(prompt) == kind
    follower = PlanFollower.from_prompt(prompt)
    assert (follower is None) if kind is None else follower.kind == kind


def test_every_generated_guide_passes_its_own_check():
    """A data guide (overview + its steps) always follows its plan and its plan fits its prompt:
    the check never rejects the way the training data is written, in every kind and both prompt
    wordings."""
    seen = set()
    for index in range(300):
        plan = plan_guide(index, split="train", seed=3, wording="varied" if index % 2 else "data")
        follower = PlanFollower.from_prompt(plan.prompt)
        assert follower is not None and follower.kind == plan.kind, plan.prompt
        seen.add(plan.kind)
        assert follower("", plan.overview + "\n") == "accept", plan.prompt
        assert plan.furniture.part_names in {piece.part_names for piece in follower.pieces}, plan.prompt
        lines = plan.step_lines(overview=True)
        before = ""
        for line in lines:
            head, _, step = line.rpartition("\n")
            before = f"{before}\n{head}".strip("\n") if head else before
            assert follower(before, step) == "accept", (before, step)
            before = f"{before}\n{step}"
        assert follower(before, "Step 99: Fit the legs.") == "stop"
    assert seen == set(FURNITURE_KINDS)


@pytest.mark.parametrize("before, line, verdict", [
    (TABLE_PLAN, "Step 1: Lay the legs out on a blanket.", "accept"),
    (TABLE_PLAN + "\nStep 1: Lay the legs out.", "Step 2: Attach the long rails and the short rails to the legs.", "accept"),
    (TABLE_PLAN + "\nStep 1: Lay the legs out.", "Step 2: Join the rails to the legs.", "accept"),  # "rails" = both
    (TABLE_PLAN + "\nStep 1: Lay the legs out.", "Step 2: Attach the long rails to the legs.", "retry"),  # half the item
    (TABLE_PLAN + "\nStep 1: Lay the legs out.", "Step 2: Rest the tabletop on the legs.", "retry"),  # skips an item
    (TABLE_PLAN + "\nStep 1: Lay the legs out.", "Step 2: Attach the legs and the rails.", "retry"),  # repeats the legs
    (TABLE_PLAN + "\nStep 1: Lay the legs out.", "Step 2: Fix the lower shelf and the rails.", "retry"),  # not in the plan
    (TABLE_PLAN + "\nStep 1: Lay the legs out.\nStep 2: Join the rails to the legs.\nStep 3: Rest the tabletop on them.",
     "Step 4: Attach the long rails.", "stop"),  # every part of the plan is in place
    (TABLE_PLAN + "\nStep 1: a\nStep 2: b", "Step 3: Lay the legs out.", "accept"),  # steps that added nothing
    # a step that stood although it strayed: the plan goes on from what the steps put in place
    (TABLE_PLAN + "\nStep 1: Lay the legs out.\nStep 2: Rest the tabletop on the legs.",
     "Step 3: Rest the tabletop on the legs.", "retry"),  # a repeat
    (TABLE_PLAN + "\nStep 1: Lay the legs out.\nStep 2: Rest the tabletop on the legs.",
     "Step 3: Join the rails to the legs.", "accept"),
    (TABLE_PLAN + "\nStep 1: Lay the legs out.\nStep 2: Attach the long rails to the legs.",
     "Step 3: Attach the short rails to the legs.", "accept"),  # the rest of a half-done item
    (TABLE_PLAN + "\nStep 1: Lay the legs out.\nStep 2: Attach the long rails to the legs.",
     "Step 3: Rest the tabletop on the rails.", "retry"),
    ("", TABLE_PLAN + " Step 1: Lay the legs out.", "accept"),  # the overview on the step's own line
    ("", TABLE_PLAN + " Step 1: Fit the tabletop.", "retry"),
    ("Sure, here is how.", "Step 1: Attach the long rails.", "accept"),  # no plan: nothing to follow
    ("Overview: (1) legs; (2) legs.", "Step 1: Fit the tabletop.", "accept"),  # an unusable plan
    ("Overview: (1) legs; (2) sofa cushions.", "Step 1: Fit the tabletop.", "accept"),
    (TABLE_PLAN, "Some text without a step header.", "accept"),
])
def test_plan_follower_verdicts(before, line, verdict):
    assert PlanFollower("table")(before, line) == verdict


def test_plan_reads_the_items_and_bad_kinds_are_refused():
    assert PlanFollower("table").plan(TABLE_PLAN) == [("legs",), ("long rails", "short rails"), ("tabletop",)]
    assert PlanFollower("table").plan("Step 1: legs") is None
    assert repr(PlanFollower("desk")) == "PlanFollower('desk')"
    with pytest.raises(ValueError, match="kind must be one of"):
        PlanFollower("sofa")
    with pytest.raises(TypeError, match="prompt must be a str"):
        detect_kind(None)


SINGLE_BED = "How do I assemble a single grey bed frame with six slats?"
BED_PLAN = "Overview: (1) headboard; (2) left side rail and right side rail; (3) footboard; (4) slats."
BEAM_PLAN = "Overview: (1) headboard; (2) left side rail and right side rail; (3) footboard; (4) centre beam; (5) slats."


def _part_sets(kind: str, prompt: str) -> set[frozenset]:
    return {frozenset(piece.part_names) for piece in requested_pieces(kind, prompt)}


def test_a_request_fixes_the_parts_its_words_count():
    assert _part_sets("bed frame", SINGLE_BED) == {frozenset({"headboard", "left side rail", "right side rail",
                                                              "footboard", "slats"})}
    assert all("centre beam" in s for s in _part_sets("bed frame", "a king-size pine bed frame"))
    shelves = {name for s in _part_sets("bookcase", "How do I assemble a two-shelf white bookcase?") for name in s}
    assert shelves >= {"first shelf", "second shelf"} and not shelves & {"shelf", "third shelf"}
    assert len(_part_sets("bookcase", "a large bookshelf with one shelf")) == 1
    assert len(_part_sets("bookcase", "a white bookcase")) == 3  # no count: one, two or three shelves
    assert len(_part_sets("bookcase", "a five-shelf bookcase")) == 3  # a count no piece has rules nothing out
    assert {"left door", "right door"} <= set.union(*map(set, _part_sets("cabinet", "a cabinet with two doors")))
    assert all("lower shelf" in s for s in _part_sets("table", "a large table with six legs and a lower shelf"))
    assert len(_part_sets("table", "a large oak table")) == 2  # with and without a lower shelf
    assert {len(s) for s in _part_sets("cabinet", "a large oak cabinet")} == {8}  # large ones have two doors
    assert len(requested_pieces("cabinet", "a medium-sized oak cabinet")) == 2  # one or two doors, medium only
    assert {len(s) for s in _part_sets("cabinet", "a small oak cabinet")} == {7, 8}
    assert all("drawer unit" not in s for s in _part_sets("desk", "a small desk without drawers"))
    with pytest.raises(TypeError, match="prompt must be a str"):
        requested_pieces("bookcase", None)


def test_the_pieces_cover_every_count_the_builders_draw():
    """all_pieces draws each builder 256 times per size; later seeds bring no new counts."""
    for kind, builder in BUILDERS.items():
        known = {(size, tuple(sorted(piece.params.items()))) for size, piece in all_pieces(kind)}
        later = {(size, tuple(sorted(builder(size, np.random.default_rng(seed)).params.items())))
                 for size in SIZES for seed in range(256, 768)}
        assert later <= known, kind
    with pytest.raises(ValueError, match="kind must be one of"):
        all_pieces("sofa")


@pytest.mark.parametrize("before, line, verdict", [
    ("", BED_PLAN + "\n", "accept"),
    ("", BEAM_PLAN + "\n", "retry"),  # a single bed frame has no centre beam
    ("Sure.", "Overview: (1) headboard; (2) slats; (3) left side rail and right side rail; (4) footboard.\n",
     "retry"),  # the slats need the side rails first
    ("", "Overview: (1) headboard; (2) left side rail; (3) footboard.\n", "retry"),  # parts missing
    ("", "Overview: (1) headboard; (2) sofa.\n", "retry"),  # not a usable plan
    ("", "Here is how to build it.\n", "accept"),  # not an overview line
    ("", BEAM_PLAN + " Step 1: Take the headboard.", "retry"),  # the overview on the step's own line
    ("", BED_PLAN + " Step 1: Take the headboard.", "accept"),
    (BEAM_PLAN, "Step 1: Take the headboard.", "accept"),  # a plan that stood: the steps follow it
])
def test_the_overview_is_checked_against_the_request(before, line, verdict):
    assert PlanFollower("bed frame", SINGLE_BED)(before, line) == verdict


def test_without_a_request_any_piece_of_the_kind_fits():
    follower = PlanFollower("bed frame")
    assert follower.fits(BED_PLAN) and follower.fits(BEAM_PLAN)
    assert not follower.fits("Overview: (1) headboard; (2) footboard.")
    assert PlanFollower.from_prompt(SINGLE_BED).request == SINGLE_BED
    with pytest.raises(TypeError, match="request must be a str or None"):
        PlanFollower("bed frame", 3)


TWO_SHELF = "How do I assemble a two-shelf white bookcase?"
SHELF_PLAN = ("Overview: (1) bottom panel; (2) left side panel and right side panel; (3) top panel; (4) back panel; "
              "(5) first shelf and second shelf.")
SHELF_STEPS = SHELF_PLAN + ("\nStep 1: Lay out the bottom panel.\nStep 2: Attach the left side panel and the right "
                            "side panel.\nStep 3: Place the top panel.\nStep 4: Fit the back panel.")


@pytest.mark.parametrize("prompt, step, plan_parts, wrong", [
    (TWO_SHELF, "Set the three shelves on the pins.", ("first shelf", "second shelf"), ["three shelves"]),
    (TWO_SHELF, "Set the two shelves on the pins.", ("first shelf", "second shelf"), []),
    (TWO_SHELF, "Attach the 3 side panels.", ("left side panel", "right side panel"), ["3 side panels"]),
    (TWO_SHELF, "Fit one shelf.", ("first shelf", "second shelf"), []),  # "shelf" names one part: not counted
    ("a large oak table with six legs", "Stand the four legs up.", ("legs",), ["four legs"]),  # pieces of a part
    ("a large oak table with six legs", "Stand the six legs up.", ("legs",), []),
    ("a large oak table", "Stand the four legs up.", ("legs",), []),  # four or six: either is right
    ("a chair", "Stand the four legs up.", ("front legs", "back legs"), []),  # a group of plural parts
    ("a single bed frame with six slats", "Lay the seven slats.", ("slats",), ["seven slats"]),
])
def test_a_step_that_counts_wrong_is_found(prompt, step, plan_parts, wrong):
    assert PlanFollower.from_prompt(prompt).miscounted(step, plan_parts) == wrong


def test_a_step_that_counts_wrong_is_written_again():
    """A two-shelf bookcase's "three shelves" add the right parts but miscount them: a near miss."""
    follower = PlanFollower.from_prompt(TWO_SHELF)
    assert follower(SHELF_STEPS, "Step 5: Set the three shelves on the pins inside the side panels.") == "near-miss"
    assert follower(SHELF_STEPS, "Step 5: Set the two shelves on the pins inside the side panels.") == "accept"
    assert follower(SHELF_STEPS, "Step 5: Set the shelves on the pins inside the side panels.") == "accept"
    # a step that misses a part is a plain retry, whatever it counts
    assert follower(SHELF_STEPS, "Step 5: Set the first shelf on the pins.") == "retry"
