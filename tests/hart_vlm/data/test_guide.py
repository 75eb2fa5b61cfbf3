import numpy as np
import pytest
from PIL import Image

from hart_vlm.data.assembly import (
    FURNITURE_KINDS,
    HELDOUT,
    MATERIALS,
    SIZES,
    SPLITS,
    corpus_texts,
    generate_caption_example,
    generate_guide,
    iter_guides,
    plan_caption,
    plan_guide,
)
from hart_vlm.data.assembly.furniture import MAX_STEPS, MIN_STEPS


def _combo(plan):
    return (plan.kind, plan.material, plan.size)


def test_splits_are_disjoint_by_combination():
    combos = {split: {_combo(plan_guide(i, split)) for i in range(600)} for split in SPLITS}
    combos["caption-train"] = {_combo(plan_caption(i, "train").guide) for i in range(300)}
    assert combos["heldout"] <= HELDOUT
    for split in ("train", "validation", "caption-train"):
        assert not combos[split] & combos["heldout"]
        assert not combos[split] & HELDOUT
    # The held-out combinations leave every kind, material and size in training.
    train = combos["train"]
    assert {c[0] for c in train} == set(FURNITURE_KINDS)
    assert {c[1] for c in train} == set(MATERIALS)
    assert {c[2] for c in train} == set(SIZES)
    assert len(combos["heldout"]) == len(HELDOUT)


def test_guide_index_does_not_depend_on_how_many_are_generated():
    plans = [plan_guide(i, "validation", seed=5) for i in range(6)]
    guides = list(iter_guides(2, "validation", seed=5, resolution=32, start=4))
    assert [g.prompt for g in guides] == [p.prompt for p in plans[4:]]
    assert [g.index for g in guides] == [4, 5]
    assert plan_guide(0, "train", 0).prompt != plan_guide(0, "validation", 0).prompt


def test_guide_structure_and_messages():
    guide = generate_guide(3, "train", seed=0, resolution=64)
    assert MIN_STEPS <= len(guide.steps) <= MAX_STEPS
    assert guide.params["material"] in MATERIALS and guide.params["view"]
    assert guide.furniture.order_is_valid([s.parts_added for s in guide.steps])
    messages = guide.to_messages()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == [{"type": "text", "text": guide.prompt}]
    content = messages[1]["content"]
    assert len(content) == 2 * len(guide.steps)
    for k, step in enumerate(guide.steps):
        assert content[2 * k] == {"type": "text", "text": f"Step {k + 1}: {step.text}"}
        assert content[2 * k + 1]["type"] == "image" and content[2 * k + 1]["image"] is step.image
        assert step.image.size == (64, 64) and step.image.mode == "RGB"
    paths = [f"images/x_{k}.png" for k in range(len(guide.steps))]
    assert guide.to_messages("path", paths)[1]["content"][1]["image"] == paths[0]
    with pytest.raises(ValueError, match="image_paths"):
        guide.to_messages("path", paths[:1])
    with pytest.raises(ValueError, match="image_format"):
        guide.to_messages("jpeg")


def test_overview_opens_the_answer_with_one_numbered_item_per_step_and_stays_out_of_the_steps():
    from hart_vlm.data.assembly.checker import AssemblyChecker
    from hart_vlm.data.assembly.phrasing import overview_text
    from hart_vlm.stories import Story

    assert overview_text([["legs"], ["front rail", "back rail"], ["seat"]]) == (
        "Overview: (1) legs; (2) front rail and back rail; (3) seat.")
    with pytest.raises(ValueError, match="step_parts"):
        overview_text([["legs"], []])
    guide = generate_guide(5, "train", seed=0, resolution=32)
    plain, with_overview = guide.to_messages(), guide.to_messages(overview=True)
    first = with_overview[1]["content"][0]["text"]
    assert first == guide.plan.overview + "\n" + plain[1]["content"][0]["text"]
    assert with_overview[1]["content"][1:] == plain[1]["content"][1:]
    assert guide.plan.overview.count(";") == len(guide.steps) - 1
    assert all(f"({k}) " in guide.plan.overview for k in range(1, len(guide.steps) + 1))
    # A story read back from such an answer keeps the overview as its intro, and the checker
    # scores the ground truth's steps perfectly either way.
    story = Story.from_parts(guide.prompt, [item["text"] if item["type"] == "text" else item["image"]
                                            for item in with_overview[1]["content"]])
    assert story.intro == guide.plan.overview and [s.text for s in story.steps] == [s.text for s in guide.steps]
    score = AssemblyChecker().score(guide, [(s.text, s.image) for s in story.steps])
    assert score.order_valid and score.complete and score.step_count_match


@pytest.mark.parametrize("wording", ["varied", "unseen"])
def test_varied_wordings_change_only_the_prompt_and_keep_every_count_and_the_material(wording):
    from hart_vlm.data.assembly.phrasing import KIND_SYNONYMS, VIEW_WORDS, _features, describe

    plain = [plan_guide(i, "train", seed=0) for i in range(300)]
    varied = [plan_guide(i, "train", seed=0, wording=wording) for i in range(300)]
    assert [p.prompt for p in varied] == [plan_guide(i, "train", 0, wording).prompt for i in range(300)]
    for a, b in zip(plain, varied):
        assert (a.step_texts, a.step_parts, a.params) == (b.step_texts, b.step_parts, b.params)
        assert b.material in b.prompt
        for phrase, adjective in _features(b.furniture):  # every count, as "with two shelves" or "two-shelf"
            assert phrase in b.prompt or (adjective is not None and adjective in b.prompt), (phrase, b.prompt)
        if b.kind in ("desk", "nightstand") and b.furniture.params["drawers"] == 0:
            assert "without drawers" in b.prompt
    prompts = [p.prompt for p in varied]
    assert sum(a.prompt != b.prompt for a, b in zip(plain, varied)) > 200
    assert sum(p.description in q for p, q in zip(plain, prompts)) > 30  # describe's wording stays common
    assert any("-shelf " in q for q in prompts) and any("-door " in q for q in prompts)
    assert any("-legged " in q for q in prompts) and any("-drawer " in q for q in prompts)
    assert any(word in q for q in prompts for word in KIND_SYNONYMS["bookcase"])
    no_view = [not any(f"the {v}" in q for v in VIEW_WORDS.values()) for q in prompts]
    assert 0.1 < np.mean(no_view) < 0.5
    bookcases = [q for p, q in zip(varied, prompts) if p.kind == "bookcase"]
    assert any(not any(s in q for s in ("small", "medium-sized", "large")) for q in bookcases)
    assert any("two-shelf" in q for q in bookcases)
    # The held-out prompts the benchmarks use keep their one wording.
    held = plan_guide(0, "heldout", seed=0)
    assert describe(held.furniture, held.material, held.size) in held.prompt


def test_the_unseen_wordings_are_never_trained_on():
    """The 'unseen' family of requests and questions shares no template with what training draws
    from, so that the benchmarks can measure wordings no training example uses."""
    from hart_vlm.data.assembly import plan_question
    from hart_vlm.data.assembly.phrasing import PROMPTS
    from hart_vlm.data.assembly.wordings import (MORE_PROMPTS, QUESTION_LEADS, QUESTION_TAILS, QUESTIONS,
                                                 UNSEEN_PROMPTS, UNSEEN_QUESTIONS)

    def stem(template):  # the words before the first placeholder
        return template.split("{")[0]

    assert not {stem(t) for t in UNSEEN_PROMPTS} & {stem(t) for t in PROMPTS + MORE_PROMPTS}
    trained = [plan_guide(i, "train", 0, "varied").prompt for i in range(400)]
    assert not any(q.startswith(stem(t)) for q in trained for t in UNSEEN_PROMPTS if stem(t))
    def bare(ask):  # without the lead-in and courtesy that varied questions get
        lead = max((x for x in QUESTION_LEADS if ask.startswith(x)), key=len)
        tail = max((x for x in QUESTION_TAILS if ask.endswith(x)), key=len)
        return ask[len(lead): len(ask) - len(tail)]

    asked = {bare(plan_question(i, "train", 0).user_text.split("\n")[0]) for i in range(300)}

    def matches(ask, templates):  # the asks quote a step where a template has {step}
        return any(ask.startswith(stem(t)) and ask.endswith(t.split("}")[-1]) for qs in templates.values() for t in qs)

    assert all(matches(ask, QUESTIONS) for ask in asked)
    assert not any(matches(ask, UNSEEN_QUESTIONS) for ask in asked)
    with pytest.raises(ValueError, match="wording must be one of"):
        plan_guide(0, "train", 0, "other")


def test_question_answers_say_what_the_picture_shows():
    from hart_vlm.data.assembly import plan_question

    topics = set()
    for i in range(80):
        cap = plan_question(i, "train", 0)
        topic = cap.task.split(":")[1]
        topics.add(topic)
        finished = len(cap.present) == len(cap.guide.furniture.part_names)
        if topic == "kind":
            assert cap.guide.kind in cap.assistant_text
        elif topic == "material":
            assert cap.assistant_text.startswith(f"It is {cap.guide.material}")
        elif topic == "progress":
            assert cap.assistant_text.startswith("Yes" if finished else "No")
        elif topic == "step":  # the guide's steps are listed under the question
            assert "\n".join(cap.guide.step_lines()) in cap.user_text
            assert cap.assistant_text == f"It shows the result of step {cap.num_steps}."
        elif topic == "match":  # one step quoted, answered yes exactly when it is the picture's
            assert cap.guide.step_lines()[cap.asked_step - 1] in cap.user_text
            assert cap.assistant_text.startswith("Yes" if cap.asked_step == cap.num_steps else "No")
    assert topics == {"kind", "material", "parts", "progress", "step", "match"}
    # a topic asked of the same picture
    asked = plan_question(3, "heldout", 0, "unseen", topic="step")
    assert asked.task == "question:step" and asked.present == plan_question(3, "heldout", 0, "unseen").present
    with pytest.raises(ValueError, match="topic must be one of"):
        plan_question(0, "train", 0, topic="colour")


def test_caption_examples():
    tasks = set()
    for index in range(12):
        example = generate_caption_example(index, "train", seed=0, resolution=32)
        user, assistant = example["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        tasks.add((tuple(i["type"] for i in user["content"]), tuple(i["type"] for i in assistant["content"])))
        images = [i["image"] for m in example["messages"] for i in m["content"] if i["type"] == "image"]
        assert len(images) == 1 and isinstance(images[0], Image.Image)
        if assistant["content"][-1]["type"] == "image":  # a drawing opens with one sentence, then the picture
            lead = assistant["content"][0]["text"]
            assert lead.startswith("Here is ") and lead.endswith(".") and "\n" not in lead
    assert tasks == {(("text",), ("text", "image")), (("image", "text"), ("text",))}


def test_corpus_texts_is_deterministic_and_covers_all_texts():
    texts = list(corpus_texts(20, seed=1))
    assert texts == list(corpus_texts(20, seed=1))
    plan = plan_guide(7, "heldout", seed=1)
    assert plan.prompt in texts and f"Step 1: {plan.step_texts[0]}" in texts
    described = [plan_caption(i, "validation", 1) for i in range(20)]
    assert all(c.user_text in texts for c in described)
    assert all(c.assistant_text in texts for c in described if c.assistant_text)
    assert len(set(texts)) > 0.8 * len(texts)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        plan_guide(0, "test")
    with pytest.raises(ValueError, match="index"):
        generate_guide(-1)
    with pytest.raises(ValueError, match="seed"):
        plan_guide(0, "train", seed=-3)
    with pytest.raises(ValueError, match="resolution"):
        generate_guide(0, resolution=4)
    with pytest.raises(ValueError, match="num"):
        next(iter_guides(-1))
    with pytest.raises(ValueError, match="num_guides"):
        next(corpus_texts(2.5))


def test_rng_is_per_guide():
    a = np.asarray(generate_guide(1, seed=9, resolution=32).steps[0].image)
    list(iter_guides(3, seed=9, resolution=32))  # other guides in between change nothing
    assert np.array_equal(a, np.asarray(generate_guide(1, seed=9, resolution=32).steps[0].image))
