"""Interleaved generation with a tiny random model: images, cache, seeds, streaming, errors, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from hart_vlm.generation import InterleavedGenerator
from hart_vlm.sampling import SamplingConfig
from hart_vlm.outputs import ImageDone, ImagePreview, TextDelta, collect
from hart_vlm.stories import Story

from .conftest import random_image

QUESTION = [{"role": "user", "content": [{"type": "text", "text": "How do I assemble a stool?"}]}]
EVERY_FEW_TOKENS = r"[\s\S]{12}"  # forces an image once a text segment holds 12 characters


def _run(model, sampling: SamplingConfig, seed: int = 0, messages=QUESTION):
    inputs = model.processor([messages], add_generation_prompt=True, padding_side="left")
    runner = InterleavedGenerator(model, sampling, torch.Generator().manual_seed(seed))
    events = list(runner.run(inputs["input_ids"], inputs["attention_mask"], inputs.get("pixel_values")))
    return runner, inputs, events


def test_each_image_start_gives_one_complete_image_and_the_cache_holds_it(tiny_model):
    sampling = SamplingConfig(max_new_tokens=40, force_image_after=EVERY_FEW_TOKENS, max_images=3)
    runner, inputs, events = _run(tiny_model, sampling)
    response = collect(events)
    images = [e for e in events if isinstance(e, ImageDone)]
    assert len(images) == len(response.images) == 3
    size = tiny_model.config.image_size
    assert all(im.image.size == (size, size) for im in images)
    # cache length = prompt + every text token fed + every image's full layout
    grown = runner.state.next_pos[0].item() - inputs["attention_mask"][0].sum().item()
    assert grown == len(runner.state.records[0].history) + 3 * tiny_model.layout.num_positions
    assert runner.state.cache.get_seq_length() == runner.state.mask.shape[1]
    # the cond row sees every real position, the images' too: text after an image reads it
    real = runner.state.mask[0].bool()
    image_positions = (runner.state.blocks[0] >= 0) & real
    assert int(image_positions.sum()) == 3 * tiny_model.layout.num_input_positions


def test_a_seed_reproduces_the_answer_exactly(tiny_model):
    kwargs = dict(max_new_tokens=30, force_image_after=EVERY_FEW_TOKENS, max_images=2)
    a = tiny_model.chat(QUESTION, seed=5, **kwargs)
    b = tiny_model.chat(QUESTION, seed=5, **kwargs)
    c = tiny_model.chat(QUESTION, seed=6, **kwargs)
    assert a.text == b.text and [i.tobytes() for i in a.images] == [i.tobytes() for i in b.images]
    assert a.text != c.text or [i.tobytes() for i in a.images] != [i.tobytes() for i in c.images]
    # and the global RNG is neither used nor disturbed
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    tiny_model.chat(QUESTION, seed=5, **kwargs)
    assert torch.equal(torch.rand(1), before)


def test_streamed_events_add_up_to_the_answer(tiny_model):
    kwargs = dict(max_new_tokens=30, force_image_after=EVERY_FEW_TOKENS, max_images=2, preview_every=1)
    events = list(tiny_model.chat(QUESTION, stream=True, seed=3, **kwargs))
    answer = tiny_model.chat(QUESTION, seed=3, **kwargs)
    streamed = collect(events)
    assert streamed.text == answer.text
    assert [i.tobytes() for i in streamed.images] == [i.tobytes() for i in answer.images]
    assert any(isinstance(e, TextDelta) for e in events)
    previews = [e for e in events if isinstance(e, ImagePreview)]
    assert len(previews) == 2 * (tiny_model.layout.num_scales - 1)
    # streaming previews by default (every 2nd scale), none when not streaming
    default_kwargs = {k: v for k, v in kwargs.items() if k != "preview_every"}
    default_events = list(tiny_model.chat(QUESTION, stream=True, seed=3, **default_kwargs))
    assert sum(isinstance(e, ImagePreview) for e in default_events) == 2 * ((tiny_model.layout.num_scales - 1) // 2)


def test_a_preview_arrives_while_its_picture_is_still_being_drawn(tiny_model, monkeypatch):
    scales_drawn = []
    original = tiny_model.image_logits
    monkeypatch.setattr(tiny_model, "image_logits", lambda h: scales_drawn.append(1) or original(h))
    seen = []
    for event in tiny_model.chat(QUESTION, stream=True, seed=3, max_new_tokens=10, force_image_after="^",
                                 max_images=1, preview_every=1):
        if isinstance(event, ImagePreview):
            seen.append((event.scale_index, len(scales_drawn)))
    K = tiny_model.layout.num_scales
    assert seen == [(k, k + 1) for k in range(K - 1)]  # the preview of scale k before scale k + 1 is drawn


def test_cfg_zero_equals_unguided(tiny_model):
    """cfg = 0 runs no unconditional rows; with the rows present but a vanishing weight the
    answer is the same: the twins never leak into the conditional rows."""
    kwargs = dict(max_new_tokens=20, force_image_after=EVERY_FEW_TOKENS, max_images=2, cfg=0.0, diffusion_cfg=0.0)
    plain = tiny_model.chat(QUESTION, seed=4, **kwargs)
    with_twins = tiny_model.chat(QUESTION, seed=4, **{**kwargs, "diffusion_cfg": 1e-30})
    assert plain.text == with_twins.text and len(plain.images) == len(with_twins.images) == 2
    for x, y in zip(plain.images, with_twins.images):
        diff = torch.tensor(list(x.tobytes()), dtype=torch.int16) - torch.tensor(list(y.tobytes()), dtype=torch.int16)
        assert diff.abs().max() <= 1  # float noise of a batch of 2 rows instead of 1, at most one level


def test_generation_records_no_autograd_graph(tiny_model):
    """The cache must not carry gradients: with autograd on, every pass kept the graph of the whole
    history alive (a five-step story of the default model held 4 GB instead of 0.5)."""
    sampling = SamplingConfig(max_new_tokens=20, force_image_after=EVERY_FEW_TOKENS, max_images=1)
    runner, _, events = _run(tiny_model, sampling)
    assert len(collect(events).images) == 1
    assert torch.is_grad_enabled()
    assert not any(layer.keys.requires_grad or layer.values.requires_grad for layer in runner.state.cache.layers)


def test_guidance_grows_with_the_scale():
    s = SamplingConfig(cfg=4.5)
    assert [s.scale_guidance(k, 4) for k in range(4)] == [0.0, 1.5, 3.0, 4.5]


def test_batches_modes_and_limits(tiny_model):
    batch = [QUESTION, [{"role": "user", "content": "Show me step by step how to build a desk."}]]
    answers = tiny_model.chat(batch, seed=0, max_new_tokens=20, force_image_after=EVERY_FEW_TOKENS, max_images=1)
    assert len(answers) == 2 and all(len(a.images) == 1 for a in answers)
    for mode in (dict(use_residual=False),):
        a = tiny_model.chat(QUESTION, seed=0, max_new_tokens=10, force_image_after=EVERY_FEW_TOKENS, max_images=1, **mode)
        assert len(a.images) == 1
    none = tiny_model.chat(QUESTION, seed=0, max_new_tokens=15, force_image_after=EVERY_FEW_TOKENS, max_images=0)
    assert none.images == []


def test_generate_story_and_save(tmp_path, tiny_model):
    story = tiny_model.generate_story("How do I assemble a stool?", num_steps=2, seed=0, max_new_tokens=40,
                                      force_image_after=EVERY_FEW_TOKENS)
    assert isinstance(story, Story) and 1 <= len(story.steps) <= 2
    assert sum(step.image is not None for step in story.steps) == len([p for p in story.to_markdown().splitlines() if "![" in p])
    folder = story.save(tmp_path / "story")
    for name in ("index.html", "storyboard.png", "story.json", "step_01.png"):
        assert (folder / name).exists()
    assert json.loads((folder / "story.json").read_text())["prompt"] == "How do I assemble a stool?"


def test_a_story_is_written_greedily_unless_a_temperature_is_given(tiny_model):
    kwargs = {"num_steps": 2, "seed": 3, "max_new_tokens": 24, "force_image_after": EVERY_FEW_TOKENS}
    default = tiny_model.generate_story("How do I assemble a stool?", **kwargs)
    greedy = tiny_model.generate_story("How do I assemble a stool?", temperature=0.0, **kwargs)
    assert default.metadata["temperature"] == 0.0
    assert [s.text for s in default.steps] == [s.text for s in greedy.steps]
    hot = tiny_model.generate_story("How do I assemble a stool?", temperature=1.5, **kwargs)
    assert hot.metadata["temperature"] == 1.5


def test_a_story_records_every_sampling_setting_in_effect(tiny_model, tmp_path):
    kwargs = {"num_steps": 1, "seed": 3, "max_new_tokens": 24, "force_image_after": EVERY_FEW_TOKENS}
    story = tiny_model.generate_story("How do I assemble a stool?", **kwargs)
    defaults = SamplingConfig()
    for name in ("cfg", "diffusion_cfg", "image_top_k", "diffusion_steps", "step_retries"):
        assert story.metadata[name] == getattr(defaults, name)  # defaults recorded, not only what was passed
    guided = tiny_model.generate_story("How do I assemble a stool?", cfg=defaults.cfg + 1.5, **kwargs)
    assert guided.metadata["cfg"] == defaults.cfg + 1.5
    guided.save(tmp_path / "s")
    assert json.loads((tmp_path / "s" / "story.json").read_text())["metadata"]["image_top_k"] == list(defaults.image_top_k)


class _Checks:
    """A step check that answers from a script and records what it was asked."""

    def __init__(self, verdicts):
        self.verdicts, self.calls = verdicts, []

    def __call__(self, before: str, line: str) -> str:
        self.calls.append((before, line))
        return self.verdicts(len(self.calls)) if callable(self.verdicts) else self.verdicts


def _checked_texts(parts) -> list[str]:
    """The text parts whose last line gets checked: the random model writes many newlines, and an
    empty line after the last one is not a line to check."""
    return [t for t in parts if isinstance(t, str) and t.rsplit("\n", 1)[-1].strip()]


def _run_checked(model, sampling: SamplingConfig, check, seed: int = 0):
    inputs = model.processor([QUESTION], add_generation_prompt=True, padding_side="left")
    runner = InterleavedGenerator(model, sampling, torch.Generator().manual_seed(seed), step_check=check)
    events = list(runner.run(inputs["input_ids"], inputs["attention_mask"], inputs.get("pixel_values")))
    return runner, inputs, events


def test_a_line_rejected_every_time_is_retried_then_the_first_try_stands(tiny_model):
    """Each line is sampled 1 + step_retries times; when all are rejected the first (greedy) try is
    fed again, and the text goes on exactly as without a check: the taken-back positions are
    invisible to everything after them."""
    sampling = SamplingConfig(max_new_tokens=40, temperature=0.0, force_image_after=EVERY_FEW_TOKENS, max_images=3,
                              step_retries=2)
    plain = collect(_run(tiny_model, sampling)[2])
    check = _Checks("retry")
    runner, inputs, events = _run_checked(tiny_model, sampling, check)
    answer = collect(events)
    assert answer.text == plain.text and len(answer.images) == 3
    # a line is what follows the segment's last newline; an empty one (the random model writes
    # many newlines) is not checked
    checked = _checked_texts(plain.parts)
    assert checked and len(check.calls) == len(checked) * (1 + 2)
    lines = [line for _, line in check.calls]
    assert all(t.endswith(line.strip()) for t, line in zip(checked, lines[0::3]))  # the first try is greedy
    assert any(a != b for a, b in zip(lines[0::3], lines[1::3]))  # the retries are sampled
    # the cache: taken-back positions stay but are masked; position ids were reused
    grown = runner.state.next_pos[0].item() - inputs["attention_mask"][0].sum().item()
    assert grown == len(runner.state.records[0].history) + 3 * tiny_model.layout.num_positions
    assert runner.state.mask[0].sum().item() == runner.state.next_pos[0].item()
    assert runner.state.cache.get_seq_length() == runner.state.mask.shape[1] > runner.state.next_pos[0].item()


def test_a_retry_that_ends_before_its_sentence_is_taken_back(tiny_model, monkeypatch):
    """A retry that reaches a newline (or the end of the turn, or an image) before its sentence
    ends cannot be checked: it counts as rejected and is taken back like one."""
    import hart_vlm.generation as generation
    import hart_vlm.generation.lines as lines_module

    broken = []

    class Line(lines_module.Line):
        def __setattr__(self, name, value):
            if name == "broken" and value:
                broken.append(self.tries)
            super().__setattr__(name, value)

    monkeypatch.setattr(lines_module, "Line", Line)
    # every third token id counts as a line end, so that sampled retries often end early
    monkeypatch.setattr(generation.InterleavedGenerator, "ends_line", lambda self, token: token % 3 == 0)
    sampling = SamplingConfig(max_new_tokens=40, temperature=0.0, force_image_after=EVERY_FEW_TOKENS, max_images=3,
                              step_retries=4, retry_temperature=5.0, top_k=0, top_p=1.0)
    plain = collect(_run(tiny_model, sampling)[2])
    runner, inputs, events = _run_checked(tiny_model, sampling, _Checks("retry"))
    assert broken and all(tries > 0 for tries in broken)  # only retries break
    assert collect(events).text == plain.text  # every try rejected: the greedy lines stand
    assert runner.state.mask[0].sum().item() == runner.state.next_pos[0].item()


def test_an_accepted_retry_is_kept_and_stop_ends_the_answer(tiny_model):
    sampling = SamplingConfig(max_new_tokens=60, temperature=0.0, force_image_after=EVERY_FEW_TOKENS, max_images=4,
                              step_retries=3)
    check = _Checks(lambda n: "retry" if n == 1 else "accept")  # the first line's greedy try is rejected once
    answer = collect(_run_checked(tiny_model, sampling, check)[2])
    first, retry = check.calls[0][1], check.calls[1][1]
    assert first != retry and _checked_texts(answer.parts)[0].endswith(retry.strip())
    # the second line's check says the answer is complete: it ends before that line
    check = _Checks(lambda n: "accept" if n == 1 else "stop")
    answer = collect(_run_checked(tiny_model, sampling, check)[2])
    assert len(check.calls) == 2 and len(answer.images) < 4
    assert len(_checked_texts(answer.parts)) == 1 and _checked_texts(answer.parts)[0].endswith(check.calls[0][1].strip())
    assert check.calls[1][0].endswith(check.calls[0][1].strip()) and isinstance(answer.parts[-1], Image.Image)


def test_when_no_try_is_accepted_the_first_near_miss_stands(tiny_model):
    """A "near-miss" rejects a line like "retry" but ranks above it: when every try is rejected,
    the first near miss stands instead of the first try."""
    sampling = SamplingConfig(max_new_tokens=60, temperature=0.0, force_image_after=EVERY_FEW_TOKENS, max_images=4,
                              step_retries=3)
    # the first line: retry, near miss, near miss, retry (out of tries); later lines are accepted
    check = _Checks(lambda n: {1: "retry", 2: "near-miss", 3: "near-miss", 4: "retry"}.get(n, "accept"))
    runner, _, events = _run_checked(tiny_model, sampling, check)
    answer = collect(events)
    tries = [line for _, line in check.calls[:4]]
    assert len(set(tries)) > 1 and tries[1] != tries[0]
    kept = _checked_texts(answer.parts)[0]
    assert kept.endswith(tries[1].strip()) and not kept.endswith(tries[0].strip())
    assert check.calls[4][0].endswith(tries[1].strip())  # the next line reads the kept one before it
    assert runner.state.mask[0].sum().item() == runner.state.next_pos[0].item()


class _LineChecks(_Checks):
    line_pattern = r"\S"  # every line with a visible character is read as soon as it ends


@pytest.fixture
def short_lines(monkeypatch):
    """Sampling for whole-line checks with the tiny model: no forced image (only whole lines are
    checked), greedy text kept from repeating itself, and every fourth token id ends a line."""
    import hart_vlm.generation as generation

    monkeypatch.setattr(generation.InterleavedGenerator, "ends_line", lambda self, token: token % 4 == 0)
    return dict(max_new_tokens=40, temperature=0.0, repetition_penalty=3.0, force_image_after=r"(?!)")


def test_a_whole_line_is_read_when_it_ends_and_the_first_try_stands_when_all_are_rejected(tiny_model, short_lines):
    """With a `line_pattern`, a line that matches it is checked when it ends, and a rejected one
    is taken back with its line end and sampled again."""
    sampling = SamplingConfig(step_retries=2, **short_lines)
    plain = collect(_run(tiny_model, sampling)[2])
    check = _LineChecks("retry")
    runner, _, events = _run_checked(tiny_model, sampling, check)
    answer = collect(events).text
    lines = [line for _, line in check.calls]
    assert len(lines) >= 6
    firsts = lines[0::3]
    # every try rejected: the first (greedy) tries stand, and they are the text written without a
    # check, line by line (the token budget may end the answer during a last line's retries)
    assert plain.text.startswith("".join(firsts)) and answer.startswith("".join(firsts[:len(lines) // 3]))
    assert all(a != b for a, b in zip(firsts, lines[1::3]))  # the retries are sampled
    assert [before for before, _ in check.calls[3::3]] == ["".join(firsts[:k]) for k in range(1, len(firsts))]
    assert runner.state.mask[0].sum().item() == runner.state.next_pos[0].item()


def test_an_accepted_retry_of_a_whole_line_is_kept(tiny_model, short_lines):
    sampling = SamplingConfig(step_retries=3, **short_lines)
    check = _LineChecks(lambda n: "retry" if n == 1 else "accept")
    answer = collect(_run_checked(tiny_model, sampling, check)[2])
    first, retry = check.calls[0][1], check.calls[1][1]
    assert first != retry and answer.text.startswith(retry) and not answer.text.startswith(first)
    assert check.calls[2][0] == retry  # the next line reads the kept one before it
    with pytest.raises(TypeError, match="line_pattern must be a str"):
        bad = _Checks("accept")
        bad.line_pattern = 3
        InterleavedGenerator(tiny_model, sampling, step_check=bad)


def test_a_near_miss_of_a_whole_line_stands_when_no_try_is_accepted(tiny_model, short_lines):
    sampling = SamplingConfig(step_retries=2, **short_lines)
    check = _LineChecks(lambda n: "near-miss" if n == 2 else "retry" if n <= 3 else "accept")
    answer = collect(_run_checked(tiny_model, sampling, check)[2])
    first, near = check.calls[0][1], check.calls[1][1]
    assert first != near and answer.text.startswith(near) and check.calls[3][0] == near


def test_with_a_step_check_the_stream_adds_up_and_batches_run(tiny_model):
    kwargs = dict(max_new_tokens=40, force_image_after=EVERY_FEW_TOKENS, max_images=2, temperature=0.0, step_retries=1)
    check = _Checks(lambda n: "retry" if n % 2 else "accept")
    streamed = collect(list(tiny_model.chat(QUESTION, stream=True, seed=3, step_check=check, **kwargs)))
    answer = tiny_model.chat(QUESTION, seed=3, step_check=_Checks(lambda n: "retry" if n % 2 else "accept"), **kwargs)
    assert streamed.text == answer.text and len(answer.images) == 2
    batch = [QUESTION, [{"role": "user", "content": "Show me step by step how to build a desk."}]]
    answers = tiny_model.chat(batch, seed=0, step_check=_Checks("retry"), **kwargs)
    assert [len(a.images) for a in answers] == [2, 2]
    story = tiny_model.generate_story("How do I assemble a stool?", num_steps=1, seed=0, max_new_tokens=30,
                                      force_image_after=EVERY_FEW_TOKENS, step_check=_Checks("accept"))
    assert story.metadata["step_check"].startswith("<") and len(story.steps) == 1


def test_generate_story_follows_the_plan_of_a_furniture_prompt_by_default(tiny_model):
    kwargs = dict(num_steps=1, seed=0, max_new_tokens=20, force_image_after=EVERY_FEW_TOKENS)
    assert tiny_model.generate_story("How do I assemble a stool?", **kwargs).metadata["step_check"] == "PlanFollower('stool')"
    assert tiny_model.generate_story("How do I bake bread?", **kwargs).metadata["step_check"] is None
    assert tiny_model.generate_story("How do I assemble a stool?", step_check=None, **kwargs).metadata["step_check"] is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.chat([]), "messages"),
        (lambda m: m.chat(QUESTION, temperature=-1.0), "temperature"),
        (lambda m: m.chat(QUESTION, cfg=-0.5), "cfg"),
        (lambda m: m.chat(QUESTION, diffusion_steps=0), "diffusion_steps"),
        (lambda m: m.chat(QUESTION, top_p=0.0), "top_p"),
        (lambda m: m.chat(QUESTION, colour="red"), "unknown sampling argument"),
        (lambda m: m.chat(QUESTION, temperature="0.5"), "temperature must be a finite number"),
        (lambda m: m.chat(QUESTION, diffusion_steps=2.5), "diffusion_steps must be an int"),
        (lambda m: m.chat(QUESTION, top_k=2.5), "top_k must be an int"),
        (lambda m: m.chat(QUESTION, cfg=float("nan")), "cfg must be a finite number"),
        (lambda m: m.chat(QUESTION, image_temperature=float("inf")), "image_temperature must be a finite number"),
        (lambda m: m.chat(QUESTION, max_new_tokens=True), "max_new_tokens must be an int"),
        (lambda m: m.chat(QUESTION, force_image_after="(unclosed"), "force_image_after is not a valid regular"),
        (lambda m: m.chat(QUESTION, force_image_after=3), "force_image_after must be a regular expression"),
        (lambda m: m.chat(QUESTION, image_top_k=(600.5, 300)), "image_top_k must be two ints"),
        (lambda m: m.chat(QUESTION, seed="abc"), "seed must be an int"),
        (lambda m: m.chat(QUESTION, seed=2**70), "seed must be an int"),
        (lambda m: m.chat(QUESTION, seed=-1), "seed must be an int"),
        (lambda m: m.generate_story("How?", seed=1.5), "seed must be an int"),
        (lambda m: m.generate_story("", seed=0), "prompt"),
        (lambda m: m.generate_story("How?", num_steps=0), "num_steps"),
        (lambda m: m.chat(QUESTION, reply="free", step_check=_Checks("accept")), "step_check needs force_image_after"),
        (lambda m: m.generate_story("How?", step_check="accept"), "step_check must be 'auto', None or a StepCheck"),
        (lambda m: m.chat(QUESTION, force_image_after="x", step_check="sometimes"), "step_check must be callable"),
        (lambda m: m.generate_story("How?", max_new_tokens=20, force_image_after=EVERY_FEW_TOKENS,
                                    step_check=_Checks("maybe")), "step_check must return a Verdict"),
        (lambda m: m.generate_story("How?", step_retries=-1), "step_retries"),
        (lambda m: m.generate_story("How?", retry_temperature=0.0), "retry_temperature"),
    ],
)
def test_bad_arguments_give_clear_errors(tiny_model, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(tiny_model)


def test_story_command_line(tmp_path, tiny_model, capsys):
    from hart_vlm.cli import main

    tiny_model.save_pretrained(tmp_path / "model")
    code = main(["story", "How do I assemble a stool?", "--out", str(tmp_path / "out"), "--model", str(tmp_path / "model"),
                 "--steps", "1", "--max-new-tokens", "30", "--seed", "1", "--cfg", "2"])
    assert code == 0
    assert json.loads((tmp_path / "out" / "story.json").read_text())["metadata"]["cfg"] == 2
    captured = capsys.readouterr()
    assert "index.html" in captured.out and (tmp_path / "out" / "storyboard.png").exists()
    assert "PlanFollower('stool')" in captured.err
    saved = json.loads((tmp_path / "out" / "story.json").read_text())
    assert saved["metadata"]["step_check"] == "PlanFollower('stool')"
    main(["story", "How do I assemble a stool?", "--out", str(tmp_path / "free"), "--model", str(tmp_path / "model"),
          "--steps", "1", "--max-new-tokens", "30", "--no-follow-plan"])
    free = json.loads((tmp_path / "free" / "story.json").read_text())["metadata"]
    assert free["step_check"] is None


def test_chat_command_line_saves_images_and_prints_their_paths(tmp_path, tiny_model, monkeypatch, capsys):
    from hart_vlm.cli import main

    tiny_model.save_pretrained(tmp_path / "model")
    lines = iter(["Show me how to build a stool.", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code = main(["chat", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "images"), "--max-new-tokens", "20",
                 "--force-image-after", r"[\s\S]{6}", "--max-images", "1"])
    assert code == 0
    out = capsys.readouterr().out
    saved = sorted((tmp_path / "images").glob("*.png"))
    assert len(saved) == 1 and str(saved[0]) in out


def test_chat_command_line_sends_a_picture_with_the_first_message(tmp_path, tiny_model, monkeypatch, capsys):
    from hart_vlm.cli import main

    tiny_model.save_pretrained(tmp_path / "model")
    random_image(3).save(tmp_path / "photo.png")
    seen = []
    original = type(tiny_model).chat

    def spy(self, messages, **kwargs):
        seen.append([[part["type"] for part in m["content"]] for m in messages if m["role"] == "user"])
        return original(self, messages, **kwargs)

    monkeypatch.setattr(type(tiny_model), "chat", spy)
    lines = iter(["What is shown in this image?", "And now?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "images"),
                 "--image", str(tmp_path / "photo.png"), "--max-new-tokens", "8"]) == 0
    assert seen == [[["image", "text"]], [["image", "text"], ["text"]]]
    assert not list((tmp_path / "images").glob("*.png"))  # questions about a picture are answered in text
    (tmp_path / "bad.png").write_text("not a picture")
    with pytest.raises(SystemExit):
        main(["chat", "--model", str(tmp_path / "model"), "--image", str(tmp_path / "bad.png")])
    assert "--image" in capsys.readouterr().err


def test_the_context_bounds_the_prompt_and_the_answer(tiny_model, text_tokenizer):
    context = tiny_model.backbone.config.max_position_embeddings
    long = [{"role": "user", "content": "stool " * (context + 10)}]
    with pytest.raises(ValueError, match=f"the model's context holds {context}"):
        tiny_model.chat(long, max_new_tokens=4)
    with pytest.raises(ValueError, match=f"the model's context holds {context}"):
        tiny_model.chat(long, stream=True, max_new_tokens=4)  # refused at the call, before the prefill
    # a prompt that leaves room for a few tokens: the answer stops at the context, pictures that do not fit are
    # not started
    prompt = tiny_model.processor([QUESTION], add_generation_prompt=True)["input_ids"].shape[1]
    words = "stool " * 1
    room = [{"role": "user", "content": "How do I assemble a stool? " + words * (context - prompt - 40)}]
    length = tiny_model.processor([room], add_generation_prompt=True)["input_ids"].shape[1]
    assert context - length < tiny_model.layout.num_positions
    reply = tiny_model.chat(room, reply="free", seed=0, max_new_tokens=500, force_image_after=r"[\s\S]{3}")
    answer = tiny_model.processor.tokenizer(reply.text, add_special_tokens=False)["input_ids"]
    assert not reply.images and len(answer) <= context - length + 2
    for empty in ("", "   ", []):
        with pytest.raises(ValueError, match="no text and no image"):
            tiny_model.chat([{"role": "user", "content": empty}])


def test_four_threads_chatting_on_one_model_get_what_one_thread_gets(tiny_model):
    from concurrent.futures import ThreadPoolExecutor

    def answer(seed):
        reply = tiny_model.chat(QUESTION, reply="free", seed=seed, max_new_tokens=16, force_image_after=EVERY_FEW_TOKENS,
                                max_images=1)
        return reply.text, [image.tobytes() for image in reply.images]

    alone = [answer(seed) for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(answer, range(8)))
    assert together == alone and all(images for _, images in alone)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_story_bytes_in_another_process(tiny_model, tmp_path):
    import hashlib
    import subprocess
    import sys

    tiny_model.save_pretrained(tmp_path / "model")
    code = ("import hashlib, sys; from hart_vlm import HartVLM; m = HartVLM.from_pretrained(sys.argv[1]).eval(); "
            "s = m.generate_story('How do I assemble a stool?', num_steps=2, seed=7, max_new_tokens=40, "
            f"force_image_after={EVERY_FEW_TOKENS!r}); s.save(sys.argv[2]); "
            "print(hashlib.sha256(open(sys.argv[2] + '/story.json', 'rb').read() + "
            "b''.join(st.image.tobytes() for st in s.steps if st.image)).hexdigest())")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "model"), str(tmp_path / f"s{i}")],
                             stdout=subprocess.PIPE, text=True) for i in range(2)]
    digests = [run.communicate(timeout=300)[0].strip() for run in runs]
    story = tiny_model.generate_story("How do I assemble a stool?", num_steps=2, seed=7, max_new_tokens=40,
                                      force_image_after=EVERY_FEW_TOKENS)
    story.save(tmp_path / "here")
    here = hashlib.sha256((tmp_path / "here" / "story.json").read_bytes()
                          + b"".join(s.image.tobytes() for s in story.steps if s.image)).hexdigest()
    assert digests == [here, here]


def test_bf16_products_are_used_by_the_passes_of_many_rows_only(tiny_model, monkeypatch):
    """With `bf16_products` the prompt and the picture's scales multiply in bf16 and every one-row text
    pass in float32; the answer is still whole (a picture, text) and the cache float32."""
    from hart_vlm import precision

    rows_in_bf16 = []
    real = precision.bf16_linear

    def counting(x, weight, bias=None):
        rows_in_bf16.append(x.shape[:-1].numel())
        return real(x, weight, bias)

    monkeypatch.setattr(precision, "bf16_linear", counting)
    tiny_model.bf16_products = True
    try:
        runner, _, events = _run(tiny_model, SamplingConfig(max_new_tokens=20, force_image_after=EVERY_FEW_TOKENS,
                                                            max_images=1))
    finally:
        tiny_model.bf16_products = False
    assert len(collect(events).images) == 1
    assert rows_in_bf16 and min(rows_in_bf16) > 1
    assert 2 * tiny_model.layout.last_scale_length in rows_in_bf16  # the last scale with its guidance twin
    assert {runner.state.cache.layers[0].keys.dtype} == {torch.float32}
