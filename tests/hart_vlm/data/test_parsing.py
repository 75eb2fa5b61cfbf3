import numpy as np
import pytest

from hart_vlm.data.assembly import SPLITS, find_mentions, parse_overview, parse_step, plan_guide
from hart_vlm.data.assembly.phrasing import ACTIONS, HARDWARE, PROMPTS


def test_at_least_five_phrasings_per_action():
    assert all(len(templates) >= 5 for templates in ACTIONS.values())
    assert len(PROMPTS) >= 5


def test_parser_reads_back_every_generated_step():
    for split in SPLITS:
        for index in range(300):
            plan = plan_guide(index, split, seed=7)
            present: set[str] = set()
            for k, (text, parts) in enumerate(zip(plan.step_texts, plan.step_parts)):
                parsed = parse_step(plan.kind, f"Step {k + 1}: {text}", plan.furniture.part_names, present)
                assert sorted(parsed.added) == sorted(parts), text
                assert not parsed.repeated and not parsed.unknown, text
                present |= set(parts)


def test_hardware_phrases_name_no_part():
    for kind in ("bookcase", "desk", "nightstand", "table", "bed frame"):
        for phrases in HARDWARE.values():
            for phrase in phrases:
                assert find_mentions(kind, phrase) == []


@pytest.mark.parametrize(
    ("text", "added"),
    [
        ("Attach the left side panel to the bottom panel.", ["left side panel"]),
        ("Fix both side panels onto the base panel with cam bolts.", ["left side panel", "right side panel"]),
        ("Lay the top panel on top of the left side and the right side.", ["top panel"]),
        ("With the sides in place, slide in the first shelf.", ["first shelf"]),
        ("Now put the SECOND   SHELF between the sides, then nail the back panel to the frame.",
         ["second shelf", "back panel"]),
        ("Admire your work.", []),
    ],
)
def test_parser_on_free_text(text, added):
    names = ("bottom panel", "left side panel", "right side panel", "top panel", "first shelf",
             "second shelf", "back panel")
    parsed = parse_step("bookcase", text, names, present={"bottom panel"})
    assert sorted(parsed.added) == sorted(added)
    assert parsed.valid == bool(added)


def test_parser_flags_unknown_and_repeated_parts():
    names = ("bottom panel", "left side panel", "right side panel", "top panel", "shelf", "back panel")
    parsed = parse_step("bookcase", "Insert the third shelf, then attach the bottom panel again.",
                        names, present={"bottom panel"})
    assert parsed.added == [] and not parsed.valid
    assert parsed.unknown == ["third shelf"]
    assert parsed.repeated == ["bottom panel"]


def test_parser_rejects_bad_input():
    with pytest.raises(ValueError, match="kind"):
        find_mentions("sofa", "Attach the cushion.")
    with pytest.raises(TypeError, match="text"):
        find_mentions("stool", None)


def test_phrasing_is_varied():
    texts = [plan_guide(i).step_texts[0] for i in range(200)]
    prompts = [plan_guide(i).prompt for i in range(200)]
    assert len(set(texts)) > 40 and len(set(prompts)) > 150
    starts = {p.split()[0] for p in prompts}
    assert {"How", "Show", "I"} <= starts
    assert np.mean(["?" in p for p in prompts]) > 0.2


def test_parse_overview_reads_the_plan_line_item_by_item():
    plan = plan_guide(4, "train", 0)
    items = parse_overview(plan.kind, f"Sure.\n{plan.overview}\nStep 1: ...", plan.furniture.part_names)
    assert [item.added for item in items] == plan.step_parts
    assert parse_overview(plan.kind, "Step 1: " + plan.step_texts[0], plan.furniture.part_names) is None
    first = plan.step_parts[0][0]
    repeated = parse_overview(plan.kind, f"Overview: (1) {first}; (2) {first}.", plan.furniture.part_names)
    assert repeated[0].added == [first] and repeated[1].repeated == [first] and not repeated[1].valid
    with pytest.raises(TypeError, match="text"):
        parse_overview(plan.kind, None, plan.furniture.part_names)
