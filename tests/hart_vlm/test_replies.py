"""chat() answers as a person expects (issue 41): the kind of answer read from the last user turn,
and the answer each kind gets."""

from __future__ import annotations

import pytest

from hart_vlm.data.assembly import plan_caption
from hart_vlm.data.assembly.phrasing import PROMPTS, DESCRIBE_ASKS
from hart_vlm.data.assembly.wordings import MORE_PROMPTS, QUESTIONS, UNSEEN_PROMPTS, UNSEEN_QUESTIONS
from hart_vlm.outputs import Done, ImageDone, TextDelta
from hart_vlm.stories.replies import reply_kind, reply_settings
from tests.evals import load_eval

from .conftest import random_image

PIECES = ("small oak stool", "two-shelf white bookcase", "large walnut desk with two drawers", "queen-size bed frame")


def user(text, image=None):
    content = [{"type": "text", "text": text}]
    if image is not None:
        content.insert(0, {"type": "image", "image": image})
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("template", PROMPTS + MORE_PROMPTS + UNSEEN_PROMPTS)
def test_every_guide_request_of_the_data_and_of_the_held_out_family_is_a_guide(template):
    for piece in PIECES:
        text = template.format(a_desc=("an " if piece[0] in "aeiou" else "a ") + piece, desc=piece)
        assert reply_kind(user(text)) == "guide", text


def test_drawing_requests_are_pictures_and_the_rest_is_text():
    draws = [plan_caption(i) for i in range(200)]
    draws = [c.user_text for c in draws if c.task == "draw"]
    assert len(draws) > 60
    for text in draws + ["Draw a red chair.", "Can you sketch an oak table?", "Show me a picture of a bed."]:
        assert reply_kind(user(text)) == "picture", text
    general = [q for q, _ in load_eval("general_questions").QUESTIONS]
    for text in general + ["Hello! Who are you?", "What is 2+2?", "I like oak furniture."]:
        assert reply_kind(user(text)) == "text", text
    picture = random_image(0)
    step = "Step 2: Attach the two side panels to the bottom panel."
    asks = list(DESCRIBE_ASKS) + [q.format(step=step) for qs in (*QUESTIONS.values(), *UNSEEN_QUESTIONS.values()) for q in qs]
    for text in asks + ["How do I assemble this bookcase? Draw each step."]:
        assert reply_kind(user(text, picture)) == "text", text  # a question about a picture is answered in words
    # the last user turn decides, whatever came before
    history = user("Draw a red chair.") + [{"role": "assistant", "content": "Here it is."}] + user("Thanks! Who are you?")
    assert reply_kind(history) == "text"


def test_reply_settings_and_explicit_arguments_win():
    sampling, check = reply_settings("guide", user("How do I assemble a small oak stool?"))
    assert sampling["force_image_after"] and sampling["temperature"] == 0.0 and repr(check) == "PlanFollower('stool')"
    assert reply_settings("text", user("Hi"))[0] == {"max_images": 0}
    assert reply_settings("text", user("Hi"), max_images=2)[0] == {"max_images": 2}
    assert reply_settings("picture", user("Draw a bed."))[0]["max_images"] == 1
    assert reply_settings("picture", user("Draw a bed."))[0]["temperature"] == 0.0
    assert reply_settings("free", user("Hi"), cfg=2.0) == ({"cfg": 2.0}, None)
    with pytest.raises(ValueError, match="reply must be one of"):
        reply_settings("poem", user("Hi"))
    with pytest.raises(ValueError, match="no user message"):
        reply_kind([{"role": "assistant", "content": "Hello."}])


def test_chat_rejects_an_unknown_reply_and_a_batch_of_mixed_kinds(tiny_model):
    with pytest.raises(ValueError, match="reply must be one of"):
        tiny_model.chat(user("Hi"), reply="song")
    with pytest.raises(ValueError, match="different kinds of answer"):
        tiny_model.chat([user("Hi"), user("Draw a red chair.")], max_new_tokens=2)
    with pytest.raises(ValueError, match="step_check=None"):
        tiny_model.chat([user("How do I build a stool?"), user("How do I build a bed?")], max_new_tokens=2)


def test_text_replies_draw_nothing_and_picture_replies_draw_one(tiny_model):
    for seed in range(3):
        reply = tiny_model.chat(user("What is 2+2?"), seed=seed, max_new_tokens=24)
        assert not reply.images
        reply = tiny_model.chat(user("Draw a red chair."), seed=seed, max_new_tokens=120)
        assert len(reply.images) == 1
        # the same model left free draws whenever it writes <|image_start|>: forced here to show the difference
        free = tiny_model.chat(user("What is 2+2?"), reply="free", seed=seed, max_new_tokens=4,
                               force_image_after="^", max_images=1)
        assert len(free.images) == 1


def test_a_guide_in_chat_is_the_story_generate_story_draws_and_streams_the_same(default_model):
    prompt = "Show me, step by step, how to put together a small oak stool."
    story = default_model.generate_story(prompt, seed=3)
    reply = default_model.chat(user(prompt), seed=3)
    texts = [p for p in reply.parts if isinstance(p, str)]
    assert len(reply.images) == len(story.steps) >= 2
    assert [s.image.tobytes() for s in story.steps] == [im.tobytes() for im in reply.images]
    assert all(step.text in "".join(texts) for step in story.steps)
    streamed, images, done = "", 0, None
    for event in default_model.chat(user(prompt), seed=3, stream=True):
        streamed += event.text if isinstance(event, TextDelta) else ""
        images += isinstance(event, ImageDone)
        done = event.response if isinstance(event, Done) else done
    assert streamed == "".join(texts) and images == len(reply.images) and done.parts == reply.parts


def test_the_default_model_answers_a_drawing_request_with_a_sentence_and_the_picture(default_model):
    for request in ("Draw a small oak stool seen from the front left.", "Show me a picture of a white bookcase."):
        reply = default_model.chat(user(request), seed=0)
        assert len(reply.parts) == 2 and len(reply.images) == 1, reply.parts
        assert reply.parts[0].startswith("Here is ") and reply.parts[0].rstrip().endswith("."), reply.parts[0]
