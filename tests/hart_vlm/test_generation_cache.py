"""DecodeState's cache: a pass may compute some rows only (the guidance twins skip the prompt and
the text); the rows it computes get the hidden states a pass over every row gives them."""

from __future__ import annotations

import torch

from hart_vlm.generation.state import DecodeState
from hart_vlm.layout import TEXT_BLOCK

from .conftest import build_tiny


def _text(model, R: int, q: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings of q random text ids for R rows, every position real, causal blocks."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 200, (R, q), generator=gen)
    return model.embed_ids(ids), torch.ones(R, q, dtype=torch.bool), torch.full((R, q), TEXT_BLOCK)


@torch.no_grad()
def test_rows_left_out_of_a_pass_change_nothing_for_the_rows_computed(text_tokenizer):
    """Two states fed the same positions: one computes every row of every pass, the other leaves
    rows out (as generation leaves out the twins); each row may read the same columns in both
    (those the second state computed for it). The rows computed agree, across the buffers' growth
    past their first capacity (256 columns), and rows left out get zeros."""
    model = build_tiny(text_tokenizer)
    B = 2
    full, partial = DecodeState(model, B, guided=True), DecodeState(model, B, guided=True)
    embeds, real, blocks = _text(model, B, 5, seed=0)
    h_full = full.prefill(embeds, real.long(), blocks)
    h_part = partial.prefill(embeds, real.long(), blocks)  # the conditional rows only
    torch.testing.assert_close(h_part[:B], h_full[:B])
    assert not h_part[B:].any()
    steps = [(torch.tensor([0, 1]), 200), (torch.tensor([0, 1, 3]), 40), (torch.tensor([2, 3]), 30)]
    for i, (rows, q) in enumerate(steps):
        embeds, real, blocks = _text(model, 2 * B, q, seed=i + 1)
        out_full = full.feed(embeds, real, blocks)
        out_part = partial.feed(embeds, real, blocks, compute=rows)
        full.mask = partial.mask.clone()  # a column is readable where the second state computed it
        torch.testing.assert_close(out_part[rows], out_full[rows], atol=1e-5, rtol=1e-4)
        left_out = torch.ones(2 * B, dtype=torch.bool)
        left_out[rows] = False
        assert not out_part[left_out].any()
    assert partial.cache.get_seq_length() == 5 + 200 + 40 + 30
    assert torch.equal(partial.next_pos, full.next_pos)  # rows left out still hold their positions


@torch.no_grad()
def test_reordered_rows_keep_their_keys(text_tokenizer):
    """reorder_cache (the scale-forcing benchmark copies one context to many rows) takes the
    rows' keys and values with them, and the next pass reads them."""
    model = build_tiny(text_tokenizer)
    one = DecodeState(model, 1, guided=False)
    embeds, real, blocks = _text(model, 1, 6, seed=3)
    one.prefill(embeds, real.long(), blocks)
    idx = torch.tensor([0, 0, 0])
    one.cache.reorder_cache(idx)
    one.mask, one.blocks, one.next_pos = one.mask[idx], one.blocks[idx], one.next_pos[idx]
    one.B = 3
    step, real, blocks = _text(model, 1, 2, seed=4)
    out = one.feed(step.repeat(3, 1, 1), real.repeat(3, 1), blocks.repeat(3, 1))
    torch.testing.assert_close(out[1], out[0])
    torch.testing.assert_close(out[2], out[0])
    alone = DecodeState(model, 1, guided=False)
    alone.prefill(embeds, torch.ones(1, 6, dtype=torch.long), torch.full((1, 6), TEXT_BLOCK))
    torch.testing.assert_close(alone.feed(step, real, blocks)[0], out[0], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_twins_hold_the_positions_they_are_not_computed_for(text_tokenizer):
    """feed_rows(..., twins=False) (text, a picture's tail): the twins' position ids advance with
    their rows, their new columns stay masked, and only the conditional rows come back."""
    model = build_tiny(text_tokenizer)
    state = DecodeState(model, 2, guided=True)
    embeds, real, blocks = _text(model, 2, 4, seed=5)
    state.prefill(embeds, real.long(), blocks)
    rows = torch.tensor([1])
    step = _text(model, 1, 3, seed=6)[0]
    out = state.feed_rows(rows, step, block="scale+text", twins=False)
    assert out.shape == (1, 3, model.config.text_config.hidden_size)
    assert state.next_pos.tolist() == [4, 7, 4, 7]
    assert state.mask[:, -3:].tolist() == [[0, 0, 0], [1, 1, 1], [0, 0, 0], [0, 0, 0]]
    both = state.feed_rows(rows, step, block="scale")  # a picture's scale: the twin computes too
    assert both.shape[0] == 2 and state.mask[3, -3:].tolist() == [1, 1, 1]
