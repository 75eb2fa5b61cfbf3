"""`ImageBridge`: the parts of HartVLM that connect the LLM's hidden space with HART's latent
space (HART_REFERENCE §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import ImageLayout


# ------------------------------------------------------------------------------------------------
class ImageBridge(nn.Module):
    """`word_embed` (z -> hidden, shared by scale inputs, code tokens and the context block), the
    scale and 2-D position embeddings of the image positions, the image-code output rows, and the
    norm of the diffusion head's condition (HART_REFERENCE §4)."""

    def __init__(self, hidden_size: int, z_channels: int, codebook_size: int, layout: ImageLayout):
        super().__init__()
        self.layout = layout
        self.word_embed = nn.Linear(z_channels, hidden_size)
        # One row per scale, plus one for the context block (index K).
        self.scale_embed = nn.Embedding(layout.num_scales + 1, hidden_size)
        side = layout.v_patch_nums[-1]
        # A learned grid at the finest scale; coarser scales see it area-resized, so a position
        # embedding means "where in the picture" whatever the scale.
        self.pos_embed = nn.Parameter(torch.empty(1, hidden_size, side, side))
        self.image_head = nn.Linear(hidden_size, codebook_size)
        self.cond_norm = nn.LayerNorm(hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # this order of random draws is what the recorded training runs started from: keep it
        self._init_word_embed()
        nn.init.normal_(self.scale_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)
        self._init_image_head()
        self.cond_norm.reset_parameters()

    def reset_latent_maps(self) -> None:
        """Re-initialises the two maps tied to the tokenizer's latent space and codebook:
        `word_embed` (z -> hidden) and `image_head` (hidden -> code logits)."""
        self._init_word_embed()
        self._init_image_head()

    def _init_word_embed(self) -> None:
        nn.init.normal_(self.word_embed.weight, std=0.02)
        nn.init.zeros_(self.word_embed.bias)

    def _init_image_head(self) -> None:
        nn.init.normal_(self.image_head.weight, std=0.02)
        nn.init.zeros_(self.image_head.bias)

    def position_embeddings(self) -> torch.Tensor:
        """(num_input_positions, D): scale + 2-D position embedding of every input position."""
        grids = []
        for k, pn in enumerate(self.layout.v_patch_nums):
            if k == 0:
                continue
            grids.append(self._grid(pn))
        if self.layout.context_block:
            grids.append(self._grid(self.layout.v_patch_nums[-1]))
        pos_LD = torch.cat(grids, dim=0)
        scale_index = self.layout.input_scale_index.to(pos_LD.device)
        return pos_LD + self.scale_embed(scale_index)

    def _grid(self, pn: int) -> torch.Tensor:
        grid = self.pos_embed if pn == self.pos_embed.shape[-1] else F.interpolate(self.pos_embed, size=(pn, pn), mode="area")
        return grid.flatten(2).transpose(1, 2)[0]  # (pn*pn, D)

    def head_condition(self, hidden_ND: torch.Tensor, code_vectors_NZ: torch.Tensor) -> torch.Tensor:
        """Condition of the residual head at a last-scale position: norm(h + word_embed(code))."""
        return self.cond_norm(hidden_ND + self.word_embed(code_vectors_NZ))
