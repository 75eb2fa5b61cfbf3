"""Every bad input gets a clear error (issue 42): one table across the Python API, the command line and
the recipes' configs. Each row is a call, the error type it must raise, and a pattern its message must
match: the argument or file it names and, where there is a choice, what is accepted."""

from __future__ import annotations

import json
import math

import pytest

from hart_vlm import HartVLM
from hart_vlm.app import Settings
from hart_vlm.outputs import ChatResponse
from hart_vlm.sampling import SamplingConfig
from hart_vlm.stories import Step, Story
from hart_vlm.training.config import TrainingConfig

from .conftest import random_image

ASK = [{"role": "user", "content": "How do I assemble a stool?"}]
VALUE = (ValueError,)
TYPE = (TypeError,)

# (1) sampling settings, through chat: every field, wrong type, not finite, out of range
SAMPLING = [
    (dict(max_new_tokens=0), VALUE, r"max_new_tokens must be >= 1"),
    (dict(max_new_tokens=2.5), TYPE, r"max_new_tokens must be an int"),
    (dict(max_new_tokens="64"), TYPE, r"max_new_tokens must be an int"),
    (dict(max_new_tokens=True), TYPE, r"max_new_tokens must be an int"),
    (dict(temperature=-0.1), VALUE, r"temperature must be >= 0"),
    (dict(temperature="0.5"), TYPE, r"temperature must be a finite number"),
    (dict(temperature=math.nan), TYPE, r"temperature must be a finite number"),
    (dict(temperature=math.inf), TYPE, r"temperature must be a finite number"),
    (dict(top_k=-1), VALUE, r"top_k must be >= 0"),
    (dict(top_k=2.5), TYPE, r"top_k must be an int"),
    (dict(top_p=0.0), VALUE, r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), VALUE, r"top_p must be in \(0, 1\]"),
    (dict(top_p=math.nan), TYPE, r"top_p must be a finite number"),
    (dict(repetition_penalty=0.0), VALUE, r"repetition_penalty must be > 0"),
    (dict(repetition_penalty=None), TYPE, r"repetition_penalty must be a finite number"),
    (dict(cfg=-0.5), VALUE, r"cfg and diffusion_cfg must be >= 0"),
    (dict(cfg=math.nan), TYPE, r"cfg must be a finite number"),
    (dict(cfg=math.inf), TYPE, r"cfg must be a finite number"),
    (dict(cfg="3"), TYPE, r"cfg must be a finite number"),
    (dict(diffusion_cfg=-1.0), VALUE, r"cfg and diffusion_cfg must be >= 0"),
    (dict(diffusion_cfg=math.nan), TYPE, r"diffusion_cfg must be a finite number"),
    (dict(image_temperature=-1.0), VALUE, r"image_temperature must be >= 0"),
    (dict(image_temperature=math.inf), TYPE, r"image_temperature must be a finite number"),
    (dict(image_top_k=(600,)), TYPE, r"image_top_k must be two ints"),
    (dict(image_top_k=(600.5, 300)), TYPE, r"image_top_k must be two ints"),
    (dict(image_top_k=(-1, 300)), VALUE, r"image_top_k must be two non-negative ints"),
    (dict(image_top_k="600"), TYPE, r"image_top_k must be two ints"),
    (dict(image_top_k_switch=1.5), TYPE, r"image_top_k_switch must be an int"),
    (dict(image_top_p=0.0), VALUE, r"image_top_p must be in \(0, 1\]"),
    (dict(diffusion_steps=0), VALUE, r"diffusion_steps must be in \[1, 1000\]"),
    (dict(diffusion_steps=1001), VALUE, r"diffusion_steps must be in \[1, 1000\]"),
    (dict(diffusion_steps=2.5), TYPE, r"diffusion_steps must be an int"),
    (dict(diffusion_temperature=-1.0), VALUE, r"diffusion_temperature must be >= 0"),
    (dict(use_residual="yes"), TYPE, r"use_residual must be True or False"),
    (dict(max_images=-1), VALUE, r"max_images must be >= 0 or None"),
    (dict(max_images=1.5), TYPE, r"max_images must be an int or None"),
    (dict(force_image_after="(unclosed"), VALUE, r"force_image_after is not a valid regular expression"),
    (dict(force_image_after=5), TYPE, r"force_image_after must be a regular expression string"),
    (dict(preview_every=-2), VALUE, r"preview_every must be >= 0 or None"),
    (dict(step_retries=-1), VALUE, r"step_retries must be >= 0"),
    (dict(step_retries=0.5), TYPE, r"step_retries must be an int"),
    (dict(retry_temperature=0.0), VALUE, r"retry_temperature must be > 0"),
    (dict(colour="red"), TYPE, r"unknown sampling argument\(s\) \['colour'\]; accepted: \["),
]

# (2) the rest of chat's arguments and the messages
CHAT = [
    (lambda m: m.chat([]), VALUE, r"messages must be a non-empty list"),
    (lambda m: m.chat("How?"), VALUE, r"messages must be a non-empty list"),
    (lambda m: m.chat([{"role": "robot", "content": "hi"}]), VALUE, r"messages\[0\]\['role'\] is 'robot'; accepted roles"),
    (lambda m: m.chat([{"content": "hi"}]), VALUE, r"messages\[0\] must be a dict with 'role' and 'content'"),
    (lambda m: m.chat([{"role": "user", "content": 5}]), VALUE, r"messages\[0\]\['content'\] must be a string or a list"),
    (lambda m: m.chat([{"role": "user", "content": [{"type": "video"}]}]), VALUE,
     r"messages\[0\]\['content'\]\[0\] has type 'video'; accepted content types: 'text', 'image'"),
    (lambda m: m.chat([{"role": "user", "content": [{"type": "text"}]}]), VALUE, r"a text item without a 'text' string"),
    (lambda m: m.chat([{"role": "user", "content": [{"type": "image"}]}]), VALUE, r"an image item without an 'image'"),
    (lambda m: m.chat([{"role": "user", "content": [{"type": "image", "image": 3}, {"type": "text", "text": "?"}]}]),
     TYPE, r"an image item must hold a PIL.Image or a file path"),
    (lambda m: m.chat([{"role": "user", "content": ""}]), VALUE, r"messages\[0\] is a user message with no text and no image"),
    (lambda m: m.chat([{"role": "assistant", "content": "Hello."}]), VALUE, r"no user message"),
    (lambda m: m.chat(ASK, reply="song"), VALUE, r"reply must be one of \('auto', 'guide', 'picture', 'text', 'free'\)"),
    (lambda m: m.chat(ASK, seed="abc"), VALUE, r"seed must be an int in \[0, 2\*\*64\) or None"),
    (lambda m: m.chat(ASK, seed=-1), VALUE, r"seed must be an int in \[0, 2\*\*64\)"),
    (lambda m: m.chat(ASK, seed=2**70), VALUE, r"seed must be an int in \[0, 2\*\*64\)"),
    (lambda m: m.chat(ASK, seed=1.5), VALUE, r"seed must be an int"),
    (lambda m: m.chat(ASK, step_check="sometimes", force_image_after="x"), TYPE, r"step_check must be callable"),
    (lambda m: m.chat(ASK, generation_config={"max_new_tokens": 4}), TYPE,
     r"generation_config must be a transformers.GenerationConfig"),
    (lambda m: m.chat([[{"role": "user", "content": "Hi"}]] * 2, streamer=object(), max_new_tokens=2), VALUE,
     r"streamer= follows one conversation"),
    (lambda m: m.chat([{"role": "user", "content": "stool " * 5000}]), VALUE, r"the model's context holds \d+"),
    (lambda m: m.chat([ASK, [{"role": "user", "content": "Hi"}]]), VALUE, r"ask for different kinds of answer"),
]

# (3) stories, the processor, saving and loading
OTHER_API = [
    (lambda m: m.generate_story(""), VALUE, r"prompt must be a non-empty string"),
    (lambda m: m.generate_story(3), VALUE, r"prompt must be a non-empty string"),
    (lambda m: m.generate_story("How?", num_steps=0), VALUE, r"num_steps must be >= 1 or None"),
    (lambda m: m.generate_story("How?", step_check="accept"), VALUE, r"step_check must be 'auto', None or a StepCheck"),
    (lambda m: m.generate_story("How?", seed="x"), VALUE, r"seed must be an int"),
    (lambda m: m.generate_story("How?", cfg=math.nan), TYPE, r"cfg must be a finite number"),
    (lambda m: m.processor(ASK, padding_side="middle"), VALUE, r"padding_side must be 'left' or 'right'"),
    (lambda m: m.processor([], add_generation_prompt=True), VALUE, r"conversations must be a non-empty list"),
    (lambda m: m.processor([ASK], max_length=3), VALUE, r"more than max_length=3"),
    (lambda m: m.processor.apply_chat_template(ASK, return_tensors="np", tokenize=True), VALUE,
     r"return_tensors must be 'pt' or None"),
    (lambda m: m.processor.apply_chat_template(ASK, chat_template="x"), TYPE, r"unsupported arguments \['chat_template'\]"),
    (lambda m: HartVLM.from_pretrained("/nonexistent/folder"), VALUE, r"'/nonexistent/folder' is not a folder"),
    (lambda m: HartVLM.from_components(42), VALUE, r"llm must be a local causal-LM folder, one of the names"),
    (lambda m: __import__("hart_vlm").load_default("huge"), VALUE, r"name must be one of \('tiny', 'smollm2'\)"),
    (lambda m: __import__("hart_vlm").load_default(dtype="half"), TYPE, r"dtype must be a torch.dtype .* or 'auto'"),
    (lambda m: Story("p", [Step("a", random_image(0))], metadata={"cfg": math.nan}).save("/tmp/x"), TYPE,
     r"metadata must hold only JSON values"),
    (lambda m: Story("p", "steps"), TYPE, r"steps must be a list of Step"),
    (lambda m: Story("p", [3]), TYPE, r"steps\[0\] must be a Step"),
    (lambda m: Story(5, []), TYPE, r"prompt must be a str"),
    (lambda m: Step(5), TYPE, r"text must be a str"),
    (lambda m: Story("p", [Step("a")]).save(42), TYPE, r"dir must be a str or os.PathLike folder path"),
    (lambda m: Story("p", [Step("a")]).storyboard(columns=0), VALUE, r"columns must be an int >= 1"),
    (lambda m: ChatResponse(["text", 5]), TYPE, r"parts\[1\] must be a str or a PIL.Image.Image, got int"),
    (lambda m: SamplingConfig.from_kwargs(cfg=-1), VALUE, r"cfg and diffusion_cfg must be >= 0"),
]

# (4) the recipes' configs, built in Python as a script would
CONFIGS = [
    (dict(batch_size=0), r"batch_size must be >= 1, got 0"),
    (dict(batch_size=2.5), r"batch_size must be an int, got 2.5"),
    (dict(max_steps=0), r"max_steps must be >= 1"),
    (dict(max_steps="many"), r"max_steps must be an int, got 'many'"),
    (dict(gradient_accumulation_steps=0), r"gradient_accumulation_steps must be >= 1"),
    (dict(learning_rate=0.0), r"learning_rate must be > 0"),
    (dict(learning_rate=math.nan), r"learning_rate must be a finite number"),
    (dict(learning_rate="fast"), r"learning_rate must be a number, got 'fast'"),
    (dict(warmup_steps=-1), r"warmup_steps must be >= 0"),
    (dict(schedule_steps=5, warmup_steps=10), r"schedule_steps \(5\) must exceed warmup_steps \(10\)"),
    (dict(lr_schedule="zigzag"), r"lr_schedule must be one of \['constant', 'cosine', 'linear'\], got 'zigzag'"),
    (dict(mixed_precision="fp8"), r"mixed_precision must be one of \['auto', 'no', 'bf16', 'fp16'\]"),
    (dict(min_lr_ratio=1.5), r"min_lr_ratio must be in \[0, 1\]"),
    (dict(adam_beta1=1.0), r"adam_beta1 must be in \[0, 1\)"),
    (dict(adam_beta2=-0.1), r"adam_beta2 must be in \[0, 1\)"),
    (dict(weight_decay=-0.1), r"weight_decay must be >= 0"),
    (dict(max_grad_norm=math.inf), r"max_grad_norm must be a finite number"),
    (dict(log_every=0), r"log_every must be >= 1"),
    (dict(eval_every=-1), r"eval_every must be >= 0"),
    (dict(keep_checkpoints=0), r"keep_checkpoints must be >= 1"),
    (dict(num_workers=-2), r"num_workers must be >= 0"),
    (dict(seed=-1), r"seed must be >= 0"),
    (dict(output_dir=""), r"output_dir must name a folder"),
    (dict(progress="maybe"), r"progress must be true or false, got 'maybe'"),
    (dict(resume=True, resume_from="x"), r"give either resume .* or resume_from"),
]

# (5) the chat page's settings
PAGE = [
    (dict(cfg=math.nan), r"cfg must be a finite number >= 0"),
    (dict(cfg=-1.0), r"cfg must be a finite number >= 0"),
    (dict(temperature=math.inf), r"temperature must be a finite number >= 0"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*63\)"),
    (dict(seed="abc"), r"seed must be an integer"),
    (dict(seed=2**70), r"seed must be an integer"),
    (dict(seed=1.5), r"seed must be an integer"),
]


def test_the_table_holds_more_than_a_hundred_bad_inputs():
    assert len(SAMPLING) + len(CHAT) + len(OTHER_API) + len(CONFIGS) + len(PAGE) + len(CLI) >= 100


@pytest.mark.parametrize("kwargs, errors, message", SAMPLING, ids=lambda v: repr(v)[:40])
def test_bad_sampling_settings(tiny_model, kwargs, errors, message):
    with pytest.raises(errors, match=message):
        tiny_model.chat(ASK, **{"max_new_tokens": 2, **kwargs})
    with pytest.raises(errors, match=message):  # the same checks wherever the settings come from
        SamplingConfig.from_kwargs(**kwargs)


@pytest.mark.parametrize("call, errors, message", CHAT + OTHER_API, ids=lambda v: getattr(v, "__name__", repr(v))[:30])
def test_bad_calls(tiny_model, call, errors, message):
    with pytest.raises(errors, match=message):
        call(tiny_model)


@pytest.mark.parametrize("fields, message", CONFIGS, ids=lambda v: repr(v)[:40])
def test_bad_recipe_configs(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**fields)


@pytest.mark.parametrize("fields, message", PAGE, ids=lambda v: repr(v)[:40])
def test_bad_page_settings(fields, message):
    with pytest.raises(ValueError, match=message):
        Settings(**fields)


# (6) the command line: exit status 2 and the message on stderr, before anything loads
CLI = [
    (["story"], r"the following arguments are required: prompt"),
    (["story", "How?"], r"the following arguments are required: --out"),
    (["story", "How?", "--out", "o", "--steps", "two"], r"argument --steps: invalid int value: 'two'"),
    (["story", "How?", "--out", "o", "--cfg", "high"], r"argument --cfg: invalid float value: 'high'"),
    (["story", "How?", "--out", "o", "--device", "toaster"], r"--device 'toaster' is not a device name"),
    (["story", "How?", "--out", "o", "--device", "cuda:3"], r"--device 'cuda:3'"),
    (["chat", "--image", "/nonexistent.png"], r"--image '/nonexistent.png' is not a readable picture"),
    (["data", "assembly", "--out", "o", "--num", "-3"], r"num"),
    (["serve", "--port", "http"], r"argument --port: invalid int value: 'http'"),
    (["fly"], r"invalid choice: 'fly'"),
]


@pytest.mark.parametrize("argv, message", CLI, ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else v[:20])
def test_bad_command_lines(argv, message, capsys, monkeypatch, tmp_path):
    from hart_vlm import cli_generate
    from hart_vlm.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_generate, "load_named_model", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_a_bad_generation_config_file_names_itself(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"top_p": 3.0}))
    with pytest.raises(ValueError, match=r"generation_config.json: .*top_p must be in \(0, 1\]"):
        HartVLM.from_pretrained(tmp_path)
