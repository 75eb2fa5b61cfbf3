"""The shared vocabulary: text ids, then the image specials' ids, then one id per codebook entry.

DESIGN.md §2. The text tokenizer owns ids ``[0, T)`` (its own specials and the image/role
specials of :mod:`hart_vlm.special_tokens` included, since they are added to it as special
tokens); image code ``c`` has id ``T + c``. :meth:`SharedVocabulary.codes_to_ids` and
:meth:`SharedVocabulary.ids_to_codes` are the one place where that mapping lives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SharedVocabulary:
    text_vocab_size: int  # T: every id the text tokenizer can produce, specials included
    image_vocab_size: int  # V: the HART codebook size
    image_start_id: int
    image_end_id: int
    image_placeholder_id: int  # fills the image positions of input_ids (their inputs are latents)
    end_of_turn_id: int
    pad_id: int

    def __post_init__(self) -> None:
        if self.text_vocab_size <= 0 or self.image_vocab_size <= 0:
            raise ValueError(
                f"text_vocab_size and image_vocab_size must be positive, got {self.text_vocab_size} "
                f"and {self.image_vocab_size}"
            )
        for name in ("image_start_id", "image_end_id", "image_placeholder_id", "end_of_turn_id", "pad_id"):
            value = getattr(self, name)
            if not 0 <= value < self.text_vocab_size:
                raise ValueError(f"{name}={value} must be a text id in [0, {self.text_vocab_size})")

    @property
    def image_offset(self) -> int:
        return self.text_vocab_size

    @property
    def size(self) -> int:
        return self.text_vocab_size + self.image_vocab_size

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook indices (any shape) -> vocabulary ids."""
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.image_vocab_size):
            raise ValueError(f"codes must lie in [0, {self.image_vocab_size}), got [{int(codes.min())}, {int(codes.max())}]")
        return codes + self.image_offset

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of image codes (any shape) -> codebook indices."""
        if ids.numel() and not bool(self.is_image_code(ids).all()):
            raise ValueError(f"ids must be image-code ids in [{self.image_offset}, {self.size})")
        return ids - self.image_offset

    def is_image_code(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.image_offset) & (ids < self.size)
