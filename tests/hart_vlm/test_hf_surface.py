"""The Hugging Face surface of generation (issue 41): sampling defaults as a GenerationConfig saved
and loaded with the model, `generation_config=` with keyword overrides, a transformers streamer."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GenerationConfig, TextStreamer

from hart_vlm import HartVLM
from hart_vlm.sampling import SamplingConfig

QUESTION = [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}]


def test_the_defaults_are_a_generation_config_saved_and_loaded_with_the_model(tiny_model, tmp_path):
    assert SamplingConfig.from_generation_config(tiny_model.generation_config) == SamplingConfig()
    tiny_model.generation_config = SamplingConfig(cfg=1.5, temperature=0.0, max_new_tokens=9).to_generation_config()
    tiny_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["cfg"] == 1.5 and saved["do_sample"] is False and saved["max_new_tokens"] == 9
    loaded = HartVLM.from_pretrained(tmp_path)
    assert SamplingConfig.from_generation_config(loaded.generation_config) == SamplingConfig(
        cfg=1.5, temperature=0.0, max_new_tokens=9)
    # chat runs with the saved defaults: greedy, 9 tokens at most, the same as asking for them
    assert loaded.chat(QUESTION, seed=1).parts == loaded.chat(QUESTION, seed=2, temperature=0.0, max_new_tokens=9).parts


def test_generation_config_and_keywords_override_the_defaults(tiny_model):
    short = tiny_model.chat(QUESTION, seed=0, generation_config=GenerationConfig(max_new_tokens=5))
    assert short.parts == tiny_model.chat(QUESTION, seed=0, max_new_tokens=5).parts
    greedy = tiny_model.chat(QUESTION, seed=0, generation_config=GenerationConfig(do_sample=False, max_new_tokens=12),
                             max_new_tokens=6)
    assert greedy.parts == tiny_model.chat(QUESTION, seed=5, temperature=0.0, max_new_tokens=6).parts
    with pytest.raises(TypeError, match="'guidance'"):
        tiny_model.chat(QUESTION, generation_config=GenerationConfig(guidance=2.0))
    with pytest.raises(TypeError, match="transformers.GenerationConfig"):
        tiny_model.chat(QUESTION, generation_config={"max_new_tokens": 4})
    story = tiny_model.generate_story("How do I assemble a stool?", num_steps=1, seed=0, max_new_tokens=30,
                                      force_image_after=r"[\s\S]{12}", generation_config=GenerationConfig(cfg=1.0))
    assert story.metadata["cfg"] == 1.0 and story.metadata["max_new_tokens"] == 30


def test_a_broken_generation_config_names_its_file(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"cfg": -2.0}))
    with pytest.raises(ValueError, match="generation_config.json.*cfg"):
        HartVLM.from_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="generation_config.json"):
        HartVLM.from_pretrained(tmp_path)


class Recorder:
    def __init__(self):
        self.puts, self.ended = [], False

    def put(self, value):
        assert not self.ended
        self.puts.append(value.reshape(-1).tolist())

    def end(self):
        self.ended = True


def test_a_transformers_streamer_gets_the_prompt_then_the_text(tiny_model, capsys):
    recorder = Recorder()
    reply = tiny_model.chat(QUESTION, seed=0, max_new_tokens=40, reply="free", force_image_after=r"[\s\S]{30}",
                            max_images=1, streamer=recorder)
    prompt = tiny_model.processor([QUESTION], add_generation_prompt=True)["input_ids"][0].tolist()
    assert recorder.ended and recorder.puts[0] == prompt
    streamed = [i for ids in recorder.puts[1:] for i in ids]
    decoded = tiny_model.processor.tokenizer.decode(streamed, skip_special_tokens=True)
    assert len(reply.images) == 1 and decoded.replace(" ", "") == reply.text.replace(" ", "")
    printer = TextStreamer(tiny_model.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    text = tiny_model.chat(QUESTION, seed=0, max_new_tokens=20, streamer=printer).text
    assert capsys.readouterr().out.strip() == text.strip()
    with pytest.raises(ValueError, match="one conversation"):
        tiny_model.chat([QUESTION, QUESTION], streamer=Recorder(), max_new_tokens=2)


def test_the_processor_is_a_processor_mixin_with_a_chat_template_for_images(tiny_model, tmp_path):
    from transformers import ProcessorMixin

    from hart_vlm import HartVLMProcessor

    from .conftest import interleaved_conversation

    processor = tiny_model.processor
    assert isinstance(processor, ProcessorMixin)
    conversation = interleaved_conversation(0)
    text = processor.apply_chat_template(conversation)
    assert text.count("<|image|>") == 3 and isinstance(text, str)
    assert processor.apply_chat_template([conversation, QUESTION], add_generation_prompt=True)[1].endswith(
        processor.apply_chat_template(QUESTION, add_generation_prompt=True))
    inputs = processor.apply_chat_template(conversation, tokenize=True, return_dict=True)
    assert inputs["pixel_values"].shape[0] == 3 and inputs["input_ids"].shape == inputs["labels"].shape
    with torch.no_grad():
        assert torch.isfinite(tiny_model(**inputs).loss)
    ids = processor.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True)
    assert ids == processor([QUESTION], add_generation_prompt=True)["input_ids"][0].tolist()
    with pytest.raises(TypeError, match="unsupported arguments"):
        processor.apply_chat_template(QUESTION, chat_template="{{ 1 }}")
    processor.save_pretrained(tmp_path)
    again = HartVLMProcessor.from_pretrained(tmp_path)
    assert again.apply_chat_template(conversation) == text and isinstance(again, ProcessorMixin)
