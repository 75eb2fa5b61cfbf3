"""The unified model: block-causal forward, shared vocabulary, losses, saving, Auto classes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor, DynamicCache, LlamaConfig, LlamaForCausalLM

from hart_vlm import HartVLM, HartVLMConfig, HartVLMProcessor
from hart_vlm.layout import TEXT_BLOCK

from .conftest import build_tiny, interleaved_conversation


def _cut_points(blocks_BL: torch.Tensor) -> list[int]:
    """Every position where no row is inside a scale block: text one token at a time, each block whole."""
    L = blocks_BL.shape[1]
    cuts = [0]
    for p in range(1, L):
        prev, cur = blocks_BL[:, p - 1], blocks_BL[:, p]
        inside = (prev == cur) & (cur != TEXT_BLOCK)
        if not bool(inside.any()):
            cuts.append(p)
    return cuts + [L]


@pytest.mark.parametrize("backbone", ["llama", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_cached_blockwise_forward_equals_full_forward(text_tokenizer, backbone, attn, padding_side):
    model = build_tiny(text_tokenizer, backbone, attn)
    conversations = [interleaved_conversation(0), interleaved_conversation(7)[:1]]
    batch = model.processor(conversations, padding_side=padding_side)
    mask = batch["attention_mask"]
    with torch.no_grad():
        full = model(**batch).hidden_states
        embeds, blocks, _, _ = model.embed_inputs(batch["input_ids"], batch["pixel_values"])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.backbone.config)
        pieces = []
        cuts = _cut_points(blocks)
        assert len(cuts) > 10  # several text steps and several scale blocks
        for a, b in zip(cuts[:-1], cuts[1:]):
            h, cache = model.run_backbone(
                embeds[:, a:b], mask[:, :b], blocks[:, :b], positions[:, a:b], cache=cache, use_cache=True
            )
            pieces.append(h)
        cached = torch.cat(pieces, dim=1)
    real = mask.bool()
    assert torch.isfinite(full[real]).all()
    assert (cached[real] - full[real]).abs().max().item() < 1e-5


def test_block_mask_lets_a_scale_see_itself_but_not_the_future(tiny_model):
    """Changing the input of one position of a scale changes the hidden states of that whole scale
    (bidirectional inside a block) and of later positions, but of nothing earlier."""
    batch = tiny_model.processor([interleaved_conversation(0)])
    with torch.no_grad():
        embeds, blocks, starts, _ = tiny_model.embed_inputs(batch["input_ids"], batch["pixel_values"])
        mask = batch["attention_mask"]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        base, _ = tiny_model.run_backbone(embeds, mask, blocks, pos)
        layout = tiny_model.layout
        p0 = int(starts[1, 1])  # the first generated image
        scale3 = layout.input_block(2)  # 9 positions of scale 3
        first, last = p0 + 1 + scale3.start, p0 + 1 + scale3.stop - 1
        bumped = embeds.clone()
        bumped[0, last] += 1.0  # the last position of scale 3
        out, _ = tiny_model.run_backbone(bumped, mask, blocks, pos)
    diff = (out - base).abs().amax(-1)[0]
    assert diff[:first].max() == 0  # nothing before the block changes
    assert diff[first:last].min() > 0  # the whole block (positions before `last` too) sees it
    assert diff[last + 1 :].max() > 0


def test_text_logits_equal_the_backbones_own(tiny_model, text_tokenizer):
    ids = text_tokenizer("Step 1: attach the legs to the seat.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = tiny_model(input_ids=ids)
        backbone = tiny_model.backbone(input_ids=ids).logits
    assert out.logits.shape[-1] == tiny_model.vocab.text_vocab_size and out.image_logits.shape[0] == 0
    assert torch.equal(out.logits, backbone)


def test_logits_are_computed_only_where_something_is_predicted(tiny_model):
    """Without labels: text logits everywhere, code logits at each image's code positions only,
    equal to the image head on the hidden states there; with labels, the losses and no logits."""
    batch = tiny_model.processor([interleaved_conversation(0)])
    starts = (batch["input_ids"][0] == tiny_model.vocab.image_start_id).nonzero()[:, 0]
    with torch.no_grad():
        out = tiny_model(**{k: v for k, v in batch.items() if k != "labels"})
        trained = tiny_model(**batch)
    n_codes = tiny_model.layout.num_codes
    assert out.image_logits.shape == (3, n_codes, tiny_model.config.image_tokenizer.vocab_size)
    for i, p in enumerate(starts.tolist()):
        expected = tiny_model.image_logits(out.hidden_states[0, p : p + n_codes])
        torch.testing.assert_close(out.image_logits[i], expected)
    assert trained.logits is None and trained.image_logits is None and torch.isfinite(trained.loss)


def test_vocabulary_extension_keeps_text_logits(tmp_path, text_tokenizer):
    """A pretrained LLM whose tokenizer lacks the image specials: from_components adds them and
    resizes the embeddings; logits of the original text ids do not move."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", "<s>", "</s>"] + "how do i assemble a stool attach the legs to seat step 1 2 : .".split()
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    base_tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    llm.save_pretrained(tmp_path / "llm")
    base_tok.save_pretrained(tmp_path / "llm")
    ids = base_tok("how do i attach the legs to the seat", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = llm(input_ids=ids).logits
    model = HartVLM.from_components(tmp_path / "llm", hart_tokenizer="tiny").eval()
    assert model.vocab.text_vocab_size > len(words)  # the specials were added
    with torch.no_grad():
        after = model(input_ids=ids).logits
    torch.testing.assert_close(after[..., : len(words)], before, rtol=0, atol=1e-5)
    assert model.processor.tokenizer.convert_tokens_to_ids("<|image_start|>") == model.vocab.image_start_id
    # "default": the packaged models' trained HART tokenizer, weights and all
    from hart_vlm.default_model import load_image_tokenizer

    trained = HartVLM.from_components(tmp_path / "llm", hart_tokenizer="default")
    expected = load_image_tokenizer("default").state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in trained.image_tokenizer.state_dict().items())


def test_image_code_ids_embed_through_the_codebook(tiny_model):
    """DESIGN.md §2: the row of code c is word_embed(codebook[c])."""
    codes = torch.tensor([[0, 5, 17]])
    ids = tiny_model.vocab.codes_to_ids(codes)
    with torch.no_grad():
        rows = tiny_model.embed_ids(ids)
        expected = tiny_model.bridge.word_embed(tiny_model.codebook()[codes])
    torch.testing.assert_close(rows, expected)
    torch.testing.assert_close(tiny_model.vocab.ids_to_codes(ids), codes)


def test_losses_are_reported_separately_and_fall(text_tokenizer):
    from hart_vlm.data.assembly import generate_guide

    model = build_tiny(text_tokenizer, seed=1).train()
    conversations = [generate_guide(i, split="train", seed=0, resolution=32).to_messages() for i in range(3)]
    batch = model.processor(conversations)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for _ in range(30):
        out = model(**batch, generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        history.append([out.loss.item(), out.text_loss.item(), out.image_loss.item(), out.diffusion_loss.item()])
    first, last = history[0], history[-1]
    assert all(torch.isfinite(torch.tensor(h)).all() for h in history)
    assert last[0] < 0.6 * first[0]
    assert last[1] < first[1] and last[2] < first[2]
    # the total is the weighted sum of the three parts
    c = model.config
    assert abs(last[0] - (c.text_loss_weight * last[1] + c.image_loss_weight * last[2] + c.diffusion_loss_weight * last[3])) < 1e-4


def test_only_assistant_images_are_targets(tiny_model):
    conversation = interleaved_conversation(0)
    batch = tiny_model.processor([conversation])
    starts = (batch["input_ids"] == tiny_model.vocab.image_start_id).nonzero()
    labelled = batch["labels"][starts[:, 0], starts[:, 1]] != -100
    assert labelled.tolist() == [False, True, True]  # the user's image is read, not learned


def test_save_load_and_auto_round_trip(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    loaded = HartVLM.from_pretrained(tmp_path / "m").eval()
    auto = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "m"), HartVLMConfig)
    assert isinstance(auto, HartVLM) and loaded.processor is not None
    processor = AutoProcessor.from_pretrained(tmp_path / "m")
    assert isinstance(processor, HartVLMProcessor) and processor.layout == tiny_model.processor.layout
    batch = tiny_model.processor([interleaved_conversation(3)])
    with torch.no_grad():
        ref = tiny_model(**batch, generator=torch.Generator().manual_seed(0))
        for other in (loaded, auto):
            out = other(**batch, generator=torch.Generator().manual_seed(0))
            torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
            torch.testing.assert_close(out.loss, ref.loss, rtol=0, atol=0)
    # the loaded model generates exactly like the original, residual head included
    messages = [{"role": "user", "content": "How do I assemble a stool?"}]
    a = tiny_model.chat(messages, seed=3, max_new_tokens=12, force_image_after=r"\S")
    b = loaded.chat(messages, seed=3, max_new_tokens=12, force_image_after=r"\S")
    assert a.text == b.text and len(a.images) == len(b.images) >= 1
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.images, b.images))


def test_bad_input_gives_clear_errors(tmp_path, tiny_model, text_tokenizer):
    proc = tiny_model.processor
    with pytest.raises(ValueError, match="content type"):
        proc([[{"role": "user", "content": [{"type": "video", "video": "x.mp4"}]}]])
    with pytest.raises(ValueError, match="role"):
        proc([[{"role": "robot", "content": "hi"}]])
    with pytest.raises(ValueError, match="cannot read image file|not found"):
        proc([[{"role": "user", "content": [{"type": "image", "image": "missing.png"}]}]], base_dir=tmp_path)
    batch = proc([interleaved_conversation(0)])
    with pytest.raises(ValueError, match="multiple of|image"):
        tiny_model(input_ids=batch["input_ids"], pixel_values=torch.zeros(3, 3, 30, 30))
    with pytest.raises(ValueError, match="pixel_values holds 1 images"):
        tiny_model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"][:1])
    too_long = torch.zeros(1, tiny_model.backbone.config.max_position_embeddings + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="context"):
        tiny_model(input_ids=too_long)
    # a checkpoint whose vocabulary differs from the model it is loaded into
    tiny_model.save_pretrained(tmp_path / "m")
    other = HartVLMConfig.from_preset("tiny", tokenizer=text_tokenizer, hart_tokenizer_config={"vocab_size": 128})
    with pytest.raises(ValueError, match="codebook size: checkpoint 256 vs config 128"):
        HartVLM.from_pretrained(tmp_path / "m", config=other)


def test_from_preset_builds_a_ready_to_use_model():
    model = HartVLM.from_preset("tiny").eval()
    assert model.processor is not None and model.config.image_size == 32
    reply = model.chat([{"role": "user", "content": "How do I assemble a desk?"}], seed=0, max_new_tokens=8,
                       force_image_after=r"\S", max_images=1)
    assert len(reply.images) == 1


def test_a_dropped_context_hides_everything_before_the_image(tiny_model):
    """`dropped_context`: a target image's positions see nothing before its <|image_start|>, so
    changing the user's words does not change them (the unconditional branch of CFG); the recipe
    draws which images (training/ChatLosses)."""
    a, b = interleaved_conversation(0), interleaved_conversation(0)
    b[0]["content"][0]["text"] = "Tell me how the desk goes together?"
    hidden = {}
    for dropped in (True, False):
        outs = []
        for conversation in (a, b):
            batch = tiny_model.processor([conversation])
            with torch.no_grad():
                out = tiny_model(**batch, dropped_context=torch.tensor([False, dropped, False]),
                                 generator=torch.Generator().manual_seed(0))
            start = int((batch["input_ids"][0] == tiny_model.vocab.image_start_id).nonzero()[1])  # first target image
            outs.append(out.hidden_states[0, start : start + tiny_model.layout.num_input_positions + 1])
        hidden[dropped] = outs
    torch.testing.assert_close(*hidden[True], rtol=0, atol=1e-5)
    assert not torch.allclose(*hidden[False])  # without dropout the context matters
    with pytest.raises(ValueError, match=r"dropped_context must be a bool tensor of shape \(3,\)"):
        tiny_model(**tiny_model.processor([a]), dropped_context=torch.tensor([True]))


def test_context_dropout_is_drawn_for_target_images_only(tiny_model):
    from hart_vlm.training.batching import ChatLosses

    batch = tiny_model.processor([interleaved_conversation(0)] * 2)
    seen = []
    original = tiny_model.forward
    tiny_model.forward = lambda **kw: seen.append(kw["dropped_context"]) or original(**kw)
    losses = ChatLosses(tiny_model.vocab.image_start_id, context_dropout=0.99)
    out = losses(tiny_model, batch, torch.Generator().manual_seed(0), 0)
    assert set(out) == {"loss", "text_loss", "image_loss", "diffusion_loss", "positions"}
    assert seen[0].tolist() == [False, True, True] * 2  # the user's picture (read only) is never dropped
    ChatLosses(tiny_model.vocab.image_start_id)(tiny_model, batch, torch.Generator(), 0)
    assert seen[1] is None
    with pytest.raises(ValueError, match=r"context_dropout must be in \[0, 1\)"):
        ChatLosses(0, context_dropout=1.0)


def test_without_context_block(text_tokenizer):
    model = build_tiny(text_tokenizer, image_context_block=False)
    assert model.layout.num_input_positions == sum(p * p for p in model.layout.v_patch_nums[1:])
    batch = model.processor([interleaved_conversation(2)])
    out = model(**batch)
    assert torch.isfinite(out.loss)
    reply = model.chat(QUESTION_FOR_IMAGES, seed=0, max_new_tokens=6, force_image_after=r"\S", max_images=1)
    assert len(reply.images) == 1


QUESTION_FOR_IMAGES = [{"role": "user", "content": "How do I assemble a bookcase?"}]


def test_jsonl_rows_become_model_inputs(tmp_path, tiny_model):
    """The instruction format of DESIGN.md §7, written by the data generator, loads through the
    processor with its relative image paths."""
    import json

    from hart_vlm.data.assembly import write_jsonl

    path = write_jsonl(tmp_path, num=2, split="train", seed=0, resolution=32, include_captions=False)
    rows = [json.loads(line) for line in open(path)]
    batch = tiny_model.processor([row["messages"] for row in rows], base_dir=tmp_path)
    n_images = sum(item["type"] == "image" for row in rows for m in row["messages"] for item in m["content"])
    assert batch["pixel_values"].shape == (n_images, 3, 32, 32)
    assert torch.isfinite(tiny_model(**batch).loss)


def test_replace_image_tokenizer_keeps_the_backbone_and_restarts_the_latent_maps(text_tokenizer):
    from hart.tokenizer import HybridTokenizer
    from hart.tokenizer_config import HybridTokenizerConfig

    model = build_tiny(text_tokenizer, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(7)
    new = HybridTokenizer(model.config.image_tokenizer)
    assert model.replace_image_tokenizer(new) is model
    after = model.state_dict()
    for name, tensor in new.state_dict().items():
        assert torch.equal(after[f"image_tokenizer.{name}"], tensor)
    for name in before:
        if name.startswith(("backbone.", "bridge.scale_embed", "bridge.pos_embed", "bridge.cond_norm")):
            assert torch.equal(after[name], before[name]), name
    for name in ("bridge.word_embed.weight", "bridge.image_head.weight"):  # re-drawn, not kept
        assert not torch.equal(after[name], before[name]) and after[name].std() < 0.03
    assert torch.equal(after["bridge.image_head.bias"], torch.zeros_like(after["bridge.image_head.bias"]))
    head = [n for n in before if n.startswith("diffusion_head.")]
    assert any(not torch.equal(after[n], before[n]) for n in head)
    # still a working model: a loss on an interleaved conversation
    batch = model.processor(interleaved_conversation())
    assert torch.isfinite(model(**batch).loss)

    # keep_image_maps: a tokenizer trained on from the model's own; only the tokenizer changes
    kept = build_tiny(text_tokenizer, seed=0)
    kept.replace_image_tokenizer(new, keep_image_maps=True)
    for name, tensor in kept.state_dict().items():
        expected = new.state_dict()[name[len("image_tokenizer."):]] if name.startswith("image_tokenizer.") else before[name]
        assert torch.equal(tensor, expected), name

    other = HybridTokenizerConfig.from_dict({**model.config.image_tokenizer.to_dict(), "vocab_size": 77})
    with pytest.raises(ValueError, match=r"image tokenizer architecture; it differs in vocab_size \(77"):
        model.replace_image_tokenizer(HybridTokenizer(other))
    with pytest.raises(ValueError, match="tokenizer must be a HybridTokenizer"):
        model.replace_image_tokenizer("runs/tokenizer")


def test_a_config_of_an_older_version_loads_with_one_warning(tmp_path, tiny_model, caplog):
    """Fields of experiments that left the model (in the configs of models saved before) are
    dropped with one warning that names them."""
    import json
    import logging

    from transformers.utils import logging as hf_logging

    tiny_model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config.update(context_dropout_prob=0.1, code_corruption_prob=0.0, text_context_prob=0.0)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            loaded = HartVLMConfig.from_pretrained(tmp_path / "m")
    finally:
        hf_logging.disable_propagation()
    assert not hasattr(loaded, "code_corruption_prob") and not hasattr(loaded, "context_dropout_prob")
    messages = [r.getMessage() for r in caplog.records if "older version" in r.getMessage()]
    assert len(messages) == 1 and "code_corruption_prob" in messages[0]
