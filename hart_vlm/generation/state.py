"""`DecodeState`: the one KV cache of a batch and everything that says what its columns are.

Rows: the B conditional rows, then, with classifier-free guidance, their B unconditional twins
(row b + B). Every pass appends the same number of columns to every row, so rows stay in
lock-step; a row with nothing to say is fed masked padding. A pass computes only the rows that
read what it feeds (`RowsLayer`): a twin sees nothing but the picture it draws, so the prompt and
the text are computed for the conditional rows alone, and a twin's column there stays masked.
Per column and row:

    mask    (R, C)  1: a real position the row may read; 0: padding, not computed, taken back or hidden
    blocks  (R, C)  block id (layout.TEXT_BLOCK for causal text, one id per image scale block)
and per row `next_pos` (R,), the position id its next real position gets. Each conditional row's
answer so far is a `RowRecord` (`records`), and `done` (B,) marks the rows that have finished.

The text loop, the picture drawer and the line-retry policy change the cache only through the
methods here: `feed` (append a block), `take_back` (mask a row's columns from one on and reuse
their positions), `hide_context` (a twin sees only the picture it is about to draw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, DynamicLayer

from hart_vlm.layout import TEXT_BLOCK


class RowsCache(Cache):
    """The KV cache of generation: one `RowsLayer` per backbone layer, and the rows the current pass
    computes (`rows`: a slice, or an index tensor)."""

    def __init__(self, num_layers: int, num_rows: int):
        self.rows: slice | torch.Tensor = slice(None)
        super().__init__(layers=[RowsLayer(self, num_rows) for _ in range(num_layers)])


class RowsLayer(DynamicLayer):
    """One layer's keys and values for every row, in buffers that double when full. A pass writes the
    new columns of the rows it computes and attends over theirs alone (views when they are one range
    of rows); the other rows' new columns stay zero, masked for them. transformers' DynamicLayer
    would copy the whole cache on every pass, and cannot leave rows out."""

    def __init__(self, cache: RowsCache, num_rows: int):
        super().__init__()
        self.cache, self.num_rows = cache, num_rows
        self.buffers: list[torch.Tensor] | None = None  # [keys, values], (rows, heads, capacity, dim)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, q = self.get_seq_length(), key_states.shape[-2]
        if self.buffers is None or n + q > self.buffers[0].shape[-2]:
            capacity = max(2 * (n + q), 256)
            buffers = [new.new_zeros((self.num_rows, new.shape[1], capacity, new.shape[-1]))
                       for new in (key_states, value_states)]
            if n:
                buffers[0][..., :n, :], buffers[1][..., :n, :] = self.keys, self.values
            self.buffers = buffers
        rows, (keys, values) = self.cache.rows, self.buffers
        keys[rows, :, n:n + q], values[rows, :, n:n + q] = key_states, value_states
        self.keys, self.values = keys[..., :n + q, :], values[..., :n + q, :]
        if isinstance(rows, slice):
            return self.keys[rows], self.values[rows]
        return self.keys.index_select(0, rows), self.values.index_select(0, rows)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Rows `beam_idx` (new row i = old row beam_idx[i])."""
        if self.buffers is not None:
            n = self.get_seq_length()
            self.buffers = [b.index_select(0, beam_idx.to(b.device)) for b in self.buffers]
            self.keys, self.values = self.buffers[0][..., :n, :], self.buffers[1][..., :n, :]
        self.num_rows = beam_idx.shape[0]


def _as_slice(rows: torch.Tensor) -> slice | torch.Tensor:
    """Row indices -> a slice where they are one increasing range (views instead of copies)."""
    first = int(rows[0])
    if torch.equal(rows, torch.arange(first, first + rows.shape[0], device=rows.device)):
        return slice(first, first + rows.shape[0])
    return rows


@dataclass
class RowRecord:
    """What one conditional row has said so far."""

    history: list[int] = field(default_factory=list)  # every text id it wrote (the repetition penalty reads it)
    segment: list[int] = field(default_factory=list)  # its text ids since its last picture
    emitted: str = ""  # the decoded text of `segment` already streamed
    streamed: int = 0  # how many ids of `segment` a transformers-style streamer has been given
    parts: list = field(default_factory=list)  # its answer: text and pictures in order
    images: int = 0  # pictures drawn


class DecodeState:
    def __init__(self, model, batch_size: int, guided: bool):
        self.model = model
        self.B = batch_size
        self.guided = guided  # rows B..2B-1 are the unconditional twins
        self.cache: RowsCache | None = None
        self.mask = self.blocks = self.next_pos = None
        self._last_block = 0
        self.records = [RowRecord() for _ in range(batch_size)]
        self.done: torch.Tensor | None = None  # (B,) bool

    @property
    def num_rows(self) -> int:
        return 2 * self.B if self.guided else self.B

    def prefill(self, embeds_BLD: torch.Tensor, attention_mask_BL: torch.Tensor, blocks_BL: torch.Tensor) -> torch.Tensor:
        """Starts the cache with the (left-padded) prompts, computed for the conditional rows (the
        twins hold the positions, masked); returns the hidden states at the last position (R, 1, D)."""
        self._last_block = int(blocks_BL.max()) + 1 if blocks_BL.numel() else 0
        if self.guided:
            embeds_BLD, blocks_BL, attention_mask_BL = (embeds_BLD.repeat(2, 1, 1), blocks_BL.repeat(2, 1),
                                                        attention_mask_BL.repeat(2, 1))
        R = self.num_rows
        self.cache = RowsCache(self.model.backbone.config.get_text_config(decoder=True).num_hidden_layers, R)
        self.mask = attention_mask_BL.new_zeros((R, 0))
        self.blocks = blocks_BL.new_zeros((R, 0))
        self.next_pos = torch.zeros(R, dtype=torch.long, device=embeds_BLD.device)
        self.done = torch.zeros(self.B, dtype=torch.bool, device=embeds_BLD.device)
        conditional = torch.arange(self.B, device=embeds_BLD.device)
        return self.feed(embeds_BLD, attention_mask_BL.bool(), blocks_BL, compute=conditional)[:, -1:]

    def feed(self, embeds_RqD: torch.Tensor, real_Rq: torch.Tensor, block_Rq: torch.Tensor,
             compute: torch.Tensor | None = None) -> torch.Tensor:
        """Appends q positions to every row (real_Rq False: padding), computed for the rows `compute`
        (increasing row indices; None: every row) -> the hidden states (R, q, D), zero for the rows
        not computed. A row not computed holds its positions' ids but cannot read their columns."""
        real = real_Rq.long()
        position_ids = self.next_pos[:, None] + (real.cumsum(-1) - 1).clamp(min=0)
        self.next_pos = self.next_pos + real.sum(-1)
        rows = slice(None) if compute is None else _as_slice(compute)
        if compute is not None:
            computed = torch.zeros_like(real)
            computed[rows] = 1
            real = real * computed
        self.mask = torch.cat([self.mask, real], dim=1)
        self.blocks = torch.cat([self.blocks, block_Rq], dim=1)
        self.cache.rows = rows
        try:
            out, self.cache = self.model.run_backbone(embeds_RqD[rows], self.mask[rows], self.blocks[rows],
                                                      position_ids[rows], cache=self.cache, use_cache=True)
        finally:
            self.cache.rows = slice(None)
        if out.shape[0] == embeds_RqD.shape[0]:  # every row computed
            return out
        hidden = out.new_zeros(embeds_RqD.shape[:2] + out.shape[-1:])
        hidden[rows] = out
        return hidden

    def rows_for(self, rows: torch.Tensor) -> torch.Tensor:
        """Conditional rows -> the rows that compute for them (and, with guidance, their twins)."""
        return torch.cat([rows, rows + self.B]) if self.guided else rows

    def feed_rows(self, rows: torch.Tensor, embeds_nqD: torch.Tensor, block: str = "text",
                  twins: bool = True) -> torch.Tensor:
        """Feeds `embeds` (n, q, D) to the conditional `rows` and the same to their twins; every
        other row gets padding. `block`: "text" (causal), "scale" (one new block) or "scale+text"
        (a new block, then one causal position: the context block and <|image_end|>). twins=False:
        the twins hold these positions but are not computed (what no twin will read: text, a
        picture's tail). Returns the hidden states of the computed rows (n or 2n, q, D)."""
        fed = self.rows_for(rows)
        compute = fed if twins else rows
        R, q = self.num_rows, embeds_nqD.shape[1]
        if self.guided:
            embeds_nqD = embeds_nqD.repeat(2, 1, 1)
        full = embeds_nqD.new_zeros((R, q, embeds_nqD.shape[-1]))
        full[fed] = embeds_nqD
        real = torch.zeros((R, q), dtype=torch.bool, device=full.device)
        real[fed] = True
        block_ids = torch.full((R, q), TEXT_BLOCK, dtype=torch.long, device=full.device)
        scale_positions = {"text": 0, "scale": q, "scale+text": q - 1}[block]
        if scale_positions:
            self._last_block += 1
            block_ids[compute, :scale_positions] = self._last_block
        return self.feed(full, real, block_ids, compute=compute)[compute]

    def take_back(self, row: int, column: int, position: torch.Tensor) -> None:
        """Row `row` (and its twin) forgets its columns from `column` on; its next position id is
        `position` again (one per computing row, as `positions_of` gave it)."""
        rows = self.rows_for(torch.tensor([row], device=self.next_pos.device))
        self.mask[rows, column:] = 0
        self.next_pos[rows] = position

    def positions_of(self, row: int) -> torch.Tensor:
        """The next position ids of row `row` and its twin (to take back to later)."""
        return self.next_pos[self.rows_for(torch.tensor([row], device=self.next_pos.device))].clone()

    @property
    def num_columns(self) -> int:
        return self.mask.shape[1]

    def hide_context(self, rows: torch.Tensor) -> None:
        """The twins of `rows` see nothing before what is fed next (an image being drawn)."""
        if self.guided and rows.numel():
            self.mask[rows + self.B] = 0

