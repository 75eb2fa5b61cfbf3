"""`DecodeState`: the one KV cache of a batch and everything that says what its columns are.

Rows: the B conditional rows, then, with classifier-free guidance, their B unconditional twins
(row b + B). Every pass appends the same number of columns to every row, so rows stay in
lock-step; a row with nothing to say is fed masked padding. Per column and row:

    mask    (R, C)  1: a real position the row may read; 0: padding, taken back or hidden
    blocks  (R, C)  block id (layout.TEXT_BLOCK for causal text, one id per image scale block)
and per row `next_pos` (R,), the position id its next real position gets. Each conditional row's
answer so far is a `RowRecord` (`records`), and `done` (B,) marks the rows that have finished.

The text loop, the picture drawer and the line-retry policy change the cache only through the
methods here: `feed` (append a block), `take_back` (mask a row's columns from one on and reuse
their positions), `hide_context` / `mirror_twins` (what a twin sees while a picture is drawn).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from hart_vlm.layout import TEXT_BLOCK


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
        self.cache: DynamicCache | None = None
        self.mask = self.blocks = self.next_pos = None
        self._last_block = 0
        self.records = [RowRecord() for _ in range(batch_size)]
        self.done: torch.Tensor | None = None  # (B,) bool

    @property
    def num_rows(self) -> int:
        return 2 * self.B if self.guided else self.B

    def prefill(self, embeds_BLD: torch.Tensor, attention_mask_BL: torch.Tensor, blocks_BL: torch.Tensor) -> torch.Tensor:
        """Starts the cache with the (left-padded) prompts, copied to the twins; returns the hidden
        states at the last position (R, 1, D)."""
        self._last_block = int(blocks_BL.max()) + 1 if blocks_BL.numel() else 0
        if self.guided:
            embeds_BLD, blocks_BL, attention_mask_BL = (embeds_BLD.repeat(2, 1, 1), blocks_BL.repeat(2, 1),
                                                        attention_mask_BL.repeat(2, 1))
        R = self.num_rows
        self.cache = DynamicCache(config=self.model.backbone.config)
        self.mask = attention_mask_BL.new_zeros((R, 0))
        self.blocks = blocks_BL.new_zeros((R, 0))
        self.next_pos = torch.zeros(R, dtype=torch.long, device=embeds_BLD.device)
        self.done = torch.zeros(self.B, dtype=torch.bool, device=embeds_BLD.device)
        return self.feed(embeds_BLD, attention_mask_BL.bool(), blocks_BL)[:, -1:]

    def feed(self, embeds_RqD: torch.Tensor, real_Rq: torch.Tensor, block_Rq: torch.Tensor) -> torch.Tensor:
        """Appends q positions to every row (real_Rq False: padding) -> their hidden states (R, q, D)."""
        real = real_Rq.long()
        position_ids = self.next_pos[:, None] + (real.cumsum(-1) - 1).clamp(min=0)
        self.mask = torch.cat([self.mask, real], dim=1)
        self.blocks = torch.cat([self.blocks, block_Rq], dim=1)
        hidden, self.cache = self.model.run_backbone(embeds_RqD, self.mask, self.blocks, position_ids,
                                                     cache=self.cache, use_cache=True)
        self.next_pos = self.next_pos + real.sum(-1)
        return hidden

    def rows_for(self, rows: torch.Tensor) -> torch.Tensor:
        """Conditional rows -> the rows that compute for them (and, with guidance, their twins)."""
        return torch.cat([rows, rows + self.B]) if self.guided else rows

    def feed_rows(self, rows: torch.Tensor, embeds_nqD: torch.Tensor, block: str = "text") -> torch.Tensor:
        """Feeds `embeds` (n, q, D) to the conditional `rows` and the same to their twins; every
        other row gets padding. `block`: "text" (causal), "scale" (one new block) or "scale+text"
        (a new block, then one causal position: the context block and <|image_end|>). Returns
        the hidden states of the computing rows (n or 2n, q, D)."""
        compute = self.rows_for(rows)
        R, q = self.num_rows, embeds_nqD.shape[1]
        if self.guided:
            embeds_nqD = embeds_nqD.repeat(2, 1, 1)
        full = embeds_nqD.new_zeros((R, q, embeds_nqD.shape[-1]))
        full[compute] = embeds_nqD
        real = torch.zeros((R, q), dtype=torch.bool, device=full.device)
        real[compute] = True
        block_ids = torch.full((R, q), TEXT_BLOCK, dtype=torch.long, device=full.device)
        scale_positions = {"text": 0, "scale": q, "scale+text": q - 1}[block]
        if scale_positions:
            self._last_block += 1
            block_ids[compute, :scale_positions] = self._last_block
        return self.feed(full, real, block_ids)[compute]

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

    def mirror_twins(self, rows: torch.Tensor) -> None:
        """The twins of `rows` see again what their conditional rows see."""
        if self.guided:
            self.mask[rows + self.B] = self.mask[rows]
