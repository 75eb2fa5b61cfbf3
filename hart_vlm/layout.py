"""Where an image's positions sit in the sequence, and which block each position belongs to.

DESIGN.md §3. One image occupies

    <|image_start|> [scale 2 inputs] ... [scale K inputs] [context block, optional] <|image_end|>

The hidden state at ``<|image_start|>`` predicts the scale-1 code (``pn_1`` must be 1); the
positions of scale k+1 take ``word_embed(area-resize(f_hat after scale k))`` as input and predict
the codes of scale k+1; the last scale's hidden states also condition the residual diffusion
head. Attention follows one rule: position i sees j iff ``block[j] <= block[i]``; each text token
is its own block and each scale (and the context block) is one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

TEXT_BLOCK = -1  # block id of causal (text) positions, as transformers' blockwise overlay expects


@dataclass(frozen=True)
class ImageLayout:
    v_patch_nums: tuple[int, ...]
    context_block: bool = True

    def __post_init__(self) -> None:
        if len(self.v_patch_nums) < 2 or self.v_patch_nums[0] != 1:
            raise ValueError(
                f"v_patch_nums must hold at least two scales and start at 1 (the scale-1 code is predicted "
                f"from <|image_start|>), got {self.v_patch_nums}"
            )

    @property
    def num_scales(self) -> int:
        return len(self.v_patch_nums)

    @cached_property
    def scale_lengths(self) -> tuple[int, ...]:
        return tuple(pn * pn for pn in self.v_patch_nums)

    @property
    def num_codes(self) -> int:
        """Codes per image, all scales: sum of pn_k**2."""
        return sum(self.scale_lengths)

    @property
    def last_scale_length(self) -> int:
        return self.scale_lengths[-1]

    @property
    def num_input_positions(self) -> int:
        """Positions between <|image_start|> and <|image_end|>: scales 2..K (+ context block)."""
        return sum(self.scale_lengths[1:]) + (self.last_scale_length if self.context_block else 0)

    @property
    def num_positions(self) -> int:
        """All positions of one image, <|image_start|> and <|image_end|> included."""
        return self.num_input_positions + 2

    @cached_property
    def input_scale_index(self) -> torch.Tensor:
        """(num_input_positions,) the scale each input position belongs to (K for the context block)."""
        parts = [torch.full((n,), k, dtype=torch.long) for k, n in enumerate(self.scale_lengths) if k > 0]
        if self.context_block:
            parts.append(torch.full((self.last_scale_length,), self.num_scales, dtype=torch.long))
        return torch.cat(parts)

    def input_block(self, scale_index: int) -> slice:
        """Slice of the input positions (relative to <|image_start|> + 1) fed at scale ``scale_index``
        (1..K-1 for scales 2..K, K for the context block)."""
        if not 1 <= scale_index <= self.num_scales - (0 if self.context_block else 1):
            raise ValueError(f"scale_index must be in [1, {self.num_scales}] here, got {scale_index}")
        start = sum(self.scale_lengths[1:scale_index])
        length = self.last_scale_length if scale_index == self.num_scales else self.scale_lengths[scale_index]
        return slice(start, start + length)

    def block_ids(self, input_ids: torch.Tensor, image_start_id: int) -> torch.Tensor:
        """(B, L) block ids: TEXT_BLOCK for causal positions, a distinct id >= 0 for every scale block
        and context block of every image. Each <|image_start|> must be followed by its full layout."""
        B, L = input_ids.shape
        block_BL = torch.full((B, L), TEXT_BLOCK, dtype=torch.long, device=input_ids.device)
        starts = (input_ids == image_start_id).nonzero().tolist()
        rel_block = self.input_scale_index.to(input_ids.device)  # (num_input_positions,)
        for n, (b, p) in enumerate(starts):
            end = p + 1 + self.num_input_positions
            if end >= L:
                raise ValueError(
                    f"the image starting at position {p} of sample {b} needs {self.num_positions} positions "
                    f"but the sequence ends at {L}"
                )
            block_BL[b, p + 1 : end] = rel_block + n * (self.num_scales + 1)
        return block_BL
