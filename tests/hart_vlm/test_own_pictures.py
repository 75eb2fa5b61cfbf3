"""The model's own pictures as training context (hart_vlm/training/own_pictures.py): drawn as
generation draws them, read by the forward instead of the renders, stored, batched."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from hart_vlm.sampling import SamplingConfig
from hart_vlm.training.batching import ChatCollator
from hart_vlm.training.own_pictures import OwnPictures, WithOwnPictures, choose_cuts, draw_own_inputs

from .conftest import build_tiny, interleaved_conversation

GREEDY = SamplingConfig(cfg=0.0, use_residual=False, image_top_k=(1, 1))


def answer_pictures(seed: int) -> list[dict]:
    """interleaved_conversation without the user's image: two answer pictures."""
    conversation = interleaved_conversation(seed)
    conversation[0] = {"role": "user", "content": conversation[0]["content"][:1]}
    return conversation


def split_scales(model, flat: torch.Tensor) -> list[torch.Tensor]:
    return list(flat.split([pn * pn for pn in model.layout.v_patch_nums], dim=-1))


def test_drawn_pictures_are_the_forwards_greedy_codes_after_themselves(text_tokenizer):
    """Greedy drawing, picture after picture with the true text between: each picture's codes are
    the argmax of the training forward that reads the drawn pictures (context_image_inputs), so the
    cache that drawing leaves is the context the forward builds from them."""
    model = build_tiny(text_tokenizer, context_dropout_prob=0.0)
    conversation = answer_pictures(0)
    drawn = draw_own_inputs(model, conversation, 2, GREEDY)
    assert drawn.shape == (2, model.layout.num_input_positions, model.config.image_tokenizer.z_channels)
    batch = model.processor(conversation)
    with torch.no_grad():
        out = model(**batch, context_image_mask=torch.tensor([True, True]), context_image_inputs=drawn)
        true = model(**batch)
    starts = (batch["input_ids"][0] == model.vocab.image_start_id).nonzero()[:, 0].tolist()
    T, tok = model.vocab.text_vocab_size, model.image_tokenizer
    for j, p in enumerate(starts):
        codes = split_scales(model, out.logits[0, p : p + model.layout.num_codes, T:].argmax(-1)[None])
        rebuilt = model._image_inputs(codes, tok.indices_to_f_hat(codes))[0]
        torch.testing.assert_close(rebuilt, drawn[j], rtol=1e-4, atol=1e-4)
    # both pictures are context only; the text after the first reads the drawn picture
    assert float(out.image_loss) == 0.0 and float(true.image_loss) > 0.0
    assert float(out.text_loss) != pytest.approx(float(true.text_loss), abs=1e-5)


def test_drawing_goes_on_from_the_same_pictures_and_checks_its_input(text_tokenizer):
    model = build_tiny(text_tokenizer)
    conversation = answer_pictures(1)
    sampling = SamplingConfig(cfg=4.5)  # guidance and the residual head, as training/draw_own_pictures.py draws
    one = draw_own_inputs(model, conversation, 1, sampling, torch.Generator().manual_seed(5))
    two = draw_own_inputs(model, conversation, 2, sampling, torch.Generator().manual_seed(5))
    torch.testing.assert_close(two[:1], one, rtol=0, atol=0)
    again = draw_own_inputs(model, conversation, 1, sampling, torch.Generator().manual_seed(6))
    assert not torch.equal(again, one)
    with pytest.raises(ValueError, match=r"cut must be in \[1, 2\]"):
        draw_own_inputs(model, conversation, 3, sampling)
    with pytest.raises(ValueError, match="must all be the assistant's"):
        draw_own_inputs(model, interleaved_conversation(0), 1, sampling)  # the user's image comes first
    with pytest.raises(ValueError, match="one candidate by next-scale prediction"):
        draw_own_inputs(model, conversation, 1, SamplingConfig(image_candidates=2))


def test_context_images_are_read_from_their_inputs_and_not_learned(text_tokenizer):
    """A marked picture given its own true inputs changes nothing but that it is no target; given
    other inputs, the text after it changes."""
    model = build_tiny(text_tokenizer, context_dropout_prob=0.0)
    batch = model.processor([answer_pictures(2)])
    _, true_inputs = model.encode_images(batch["pixel_values"])
    first = torch.tensor([True, False])

    def run(mask, inputs, labels=None):
        with torch.no_grad():
            return model(**{**batch, **({} if labels is None else {"labels": labels})},
                         context_image_mask=mask, context_image_inputs=inputs)

    marked = run(first, true_inputs[:1])
    labels = batch["labels"].clone()
    start = int((batch["input_ids"][0] == model.vocab.image_start_id).nonzero()[0, 0])
    labels[0, start] = -100  # the first picture read only, as the processor marks a user's image
    with torch.no_grad():
        unlabelled = model(**{**batch, "labels": labels})
        plain = model(**batch)
    assert float(marked.image_loss) == pytest.approx(float(unlabelled.image_loss), abs=1e-6)
    assert float(marked.text_loss) == pytest.approx(float(plain.text_loss), abs=1e-6)
    other = run(first, torch.randn_like(true_inputs[:1]))
    assert float(other.text_loss) != pytest.approx(float(plain.text_loss), abs=1e-5)
    with pytest.raises(ValueError, match="together"):
        model(**batch, context_image_mask=first)
    with pytest.raises(ValueError, match=r"context_image_mask must be a bool tensor of shape \(2,\)"):
        run(torch.tensor([True]), true_inputs[:1])
    with pytest.raises(ValueError, match="context_image_inputs must have shape"):
        run(first, true_inputs)


def test_stored_pictures_reach_the_batch_in_image_order(tmp_path, text_tokenizer):
    model = build_tiny(text_tokenizer)
    P, z = model.layout.num_input_positions, model.config.image_tokenizer.z_channels
    drawn = torch.randn(1, P, z)
    path = tmp_path / "own.safetensors"
    OwnPictures({1: drawn.half()}, {"model": "tiny"}).save(path)
    own = OwnPictures.load(path)
    assert own.info == {"model": "tiny"} and list(own.inputs) == [1]
    dataset = WithOwnPictures([answer_pictures(0), answer_pictures(1)], own)
    batch = ChatCollator(model.processor)([dataset[0], dataset[1]])
    assert batch["context_image_mask"].tolist() == [False, False, True, False]
    torch.testing.assert_close(batch["context_image_inputs"], drawn.half())
    assert "context_image_mask" not in ChatCollator(model.processor)([dataset[0]])
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)
    with pytest.raises(ValueError, match="outside the dataset of 2 examples"):
        WithOwnPictures([answer_pictures(0), answer_pictures(1)], OwnPictures({2: drawn}, {}))
    save_file({"1": drawn}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})  # e.g. model weights
    with pytest.raises(ValueError, match="is not an own pictures file"):
        OwnPictures.load(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="own pictures file not found"):
        OwnPictures.load(tmp_path / "missing.safetensors")


def test_cuts_are_a_pure_function_of_seed_and_index():
    indices, pictures = list(range(400)), [1 + i % 6 for i in range(400)]
    cuts = choose_cuts(indices, pictures, 0.5, seed=3)
    assert cuts == choose_cuts(indices, pictures, 0.5, seed=3) != choose_cuts(indices, pictures, 0.5, seed=4)
    assert all(1 <= cuts[i] < pictures[i] for i in cuts)
    assert 0.4 < len(cuts) / sum(n >= 2 for n in pictures) < 0.6
    assert choose_cuts(indices, pictures, 0.0, seed=3) == {}
    assert set(choose_cuts(indices, pictures, 1.0, seed=3)) == {i for i in indices if pictures[i] >= 2}
