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


def test_a_model_answers_every_family_and_the_table_summarises_them(reading, tiny_model_dir):
    from hart_vlm import HartVLM

    model = HartVLM.from_pretrained(tiny_model_dir).eval()
    result = reading.evaluate(model, num=1, seed=0, resolution=model.config.image_size)
    assert [r["family"] for r in result["rows"]] == ["trained", "unseen", "describe"]
    assert set(result["table"]) == {"trained", "unseen", "describe"}
    assert all(0.0 <= v <= 1.0 for m in result["table"].values() for v in m.values())


def test_general_questions_are_many_disjoint_from_training_and_scored_by_their_answers(general):
    assert len(general.QUESTIONS) >= 50 and len({q for q, _ in general.QUESTIONS}) == len(general.QUESTIONS)
    general.check_disjoint()
    assert general.score("The capital of France is Paris.", r"\bparis\b", images=0)
    assert not general.score("The capital of France is Paris.", r"\bparis\b", images=1)  # a picture is wrong
    assert not general.score("I think it is Lyon.", r"\bparis\b", images=0)
