"""evals/understanding.py and evals/general_questions.py: their scoring reads the ground truth back
perfectly, wrong answers score nothing, and a model's answers flow through."""

from __future__ import annotations

import pytest

from hart_vlm.data.assembly import plan_caption
from tests.evals import load_eval


@pytest.fixture(scope="module")
def reading():
    return load_eval("understanding")


@pytest.fixture(scope="module")
def general():
    return load_eval("general_questions")


def test_the_ground_truth_answers_score_perfectly_and_wrong_ones_do_not(reading):
    for family, topic, _, cap in reading.examples(20, seed=0):
        if topic == "describe":
            continue
        assert all(v == 1.0 for v in reading.score(topic, cap.assistant_text, cap).values()), cap.assistant_text
        wrong = reading.score(topic, "It is a green sofa, no parts at all.", cap)
        assert all(v < 1.0 for v in wrong.values()) or topic == "parts" and not cap.present
    described = [c for c in (plan_caption(i, "heldout", 0) for i in range(60)) if c.task == "describe"]
    for cap in described:
        assert reading.score("describe", cap.assistant_text, cap) == {"kind": 1.0, "material": 1.0, "parts": 1.0}


def test_questions_about_drawn_pictures_quote_the_story_and_know_their_truth(reading):
    import numpy as np

    steps = ["Lay the base down.", "Fix the two sides.", "Add the top."]
    asked = reading.drawn_questions(steps, 2, np.random.default_rng(0))
    assert [(t, truth) for t, _, truth in asked] == [("kind", None), ("material", None), ("step", 2), ("match", True),
                                                     ("match", False)]
    assert "Step 1: Lay the base down.\nStep 2: Fix the two sides.\nStep 3: Add the top." in asked[2][1]
    assert "Step 2: Fix the two sides." in asked[3][1] and "Step 3: Add the top." in asked[4][1]
    assert reading.first_number("It shows the result of step 12.") == 12 and reading.first_number("none") is None
    assert reading.yes_no("Yes, it does.", True) == 1.0 and reading.yes_no("No.", True) == 0.0
    assert reading.yes_no("Maybe yes", True) == 0.0  # the first word decides


def test_the_drawn_family_asks_about_every_picture_of_the_models_own_story(reading):
    """A stand-in model whose story has three pictures and whose answers are right for the held-out
    guide scores 1.0 on every drawn question; one that says "no" to everything does not."""
    from types import SimpleNamespace

    from hart_vlm.data.assembly import plan_guide

    plan = plan_guide(0, "heldout", 0, "varied")

    class Stub:
        def __init__(self, right):
            self.right = right

        def generate_story(self, prompt, seed):
            assert prompt == plan.prompt
            return SimpleNamespace(steps=[SimpleNamespace(text=f"Do thing {k}.", image=k) for k in (1, 2, 3)])

        def chat(self, messages, **_):
            picture, question = messages[0]["content"][0]["image"], messages[0]["content"][1]["text"]
            if not self.right:
                return SimpleNamespace(text="No.")
            if "Step 1:" in question and "Step 3:" in question:
                return SimpleNamespace(text=f"It shows the result of step {picture}.")
            if "Step" in question:
                return SimpleNamespace(text="Yes." if f"Step {picture}:" in question else "No.")
            return SimpleNamespace(text=f"This is {plan.material} {plan.kind}.")

    rows = reading.evaluate_drawn(Stub(True), 1, 0)
    assert len(rows) == 3 * 5 and {r["topic"] for r in rows} == {"kind", "material", "step", "match"}
    assert reading.summarize(rows) == {"drawn": {"kind": 1.0, "material": 1.0, "step": 1.0, "match": 1.0}}
    wrong = reading.summarize(reading.evaluate_drawn(Stub(False), 1, 0))["drawn"]
    assert wrong["kind"] == wrong["step"] == 0.0 and wrong["match"] == 0.5  # its "no" is right for the three neighbouring steps


def test_a_model_answers_every_family_and_the_table_summarises_them(reading, tiny_model_dir):
    from hart_vlm import HartVLM

    model = HartVLM.from_pretrained(tiny_model_dir).eval()
    result = reading.evaluate(model, num=1, seed=0, resolution=model.config.image_size)
    assert [r["family"] for r in result["rows"]] == ["trained"] * 6 + ["unseen"] * 6 + ["describe"]
    assert set(result["table"]) == {"trained", "unseen", "describe"}
    assert all(0.0 <= v <= 1.0 for m in result["table"].values() for v in m.values())


def test_general_questions_are_many_disjoint_from_training_and_scored_by_their_answers(general):
    assert len(general.QUESTIONS) >= 50 and len({q for q, _ in general.QUESTIONS}) == len(general.QUESTIONS)
    general.check_disjoint()
    assert general.score("The capital of France is Paris.", r"\bparis\b", images=0)
    assert not general.score("The capital of France is Paris.", r"\bparis\b", images=1)  # a picture is wrong
    assert not general.score("I think it is Lyon.", r"\bparis\b", images=0)
