"""Batches: a deterministic, length-grouped stream of index batches, the collator that turns
conversations into model inputs and the losses of such a batch.

The batch sampler yields exactly `num_batches` batches, epoch after epoch, and epoch e's order is
a pure function of (seed, e). A prefix of the stream does not depend on its total length, so a run
of 2 steps resumed up to 4 steps sees the same batches as a run of 4. Under data parallelism,
accelerate deals batch i to process i mod num_processes (`BatchSamplerShard`); resuming skips the
batches already consumed with `accelerator.skip_first_batches`.
"""

from __future__ import annotations

from itertools import count
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import BatchFeature

from hart_vlm.processing_hart_vlm import HartVLMProcessor

# DESIGN.md §4: the loss and its three parts, logged separately
CHAT_LOSSES = ("loss", "text_loss", "image_loss", "diffusion_loss")


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of `batch_size` indices of a dataset of `num_examples`, `num_batches` in all.

    Each epoch is a fresh permutation (the last incomplete batch is dropped). With `length`, every
    window of `group_batches` consecutive batches is sorted by length before being cut into
    batches, which are then shuffled: a batch holds examples of similar length (less padding)
    while the order stays random. Lengths are computed lazily, window by window.
    """

    drop_last = True  # read by accelerate's BatchSamplerShard

    def __init__(self, num_examples: int, batch_size: int, num_batches: int, seed: int = 0,
                 length: Callable[[int], int] | None = None, group_batches: int = 16):
        if batch_size < 1 or num_batches < 0 or group_batches < 1:
            raise ValueError(
                f"batch_size and group_batches must be >= 1 and num_batches >= 0, got {batch_size}, {group_batches}, {num_batches}"
            )
        if num_examples < batch_size:
            raise ValueError(f"the dataset holds {num_examples} examples, fewer than one batch of {batch_size}")
        self.num_examples, self.batch_size, self.num_batches = num_examples, batch_size, num_batches
        self.seed, self.length, self.group_batches = seed, length, group_batches

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        produced = 0
        for epoch in count():
            for batch in self._epoch(epoch):
                if produced == self.num_batches:
                    return
                yield batch
                produced += 1
            if produced == self.num_batches:
                return

    def _epoch(self, epoch: int) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_examples)
        order = order[: len(order) // self.batch_size * self.batch_size].tolist()
        window = self.batch_size * (self.group_batches if self.length is not None else 1)
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            if self.length is not None:
                chunk.sort(key=self.length)  # stable: equal lengths keep their random order
            batches = [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            for b in rng.permutation(len(batches)):
                yield batches[b]


class ChatCollator:
    """Conversations -> BatchFeature(input_ids, attention_mask, labels[, pixel_values]) through the
    processor (right padding; images loaded and resized there)."""

    def __init__(self, processor: HartVLMProcessor, max_length: int | None = None):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, conversations: list) -> BatchFeature:
        return self.processor(conversations, max_length=self.max_length)


class ChatLosses:
    """The losses of a HartVLM (or a peft model around one) on a ChatCollator batch (loop.LossFn).

    Context dropout for classifier-free guidance (DESIGN.md §4) is drawn here, with the step's
    generator: each target image (its <|image_start|> labelled) sees nothing before it with
    probability `context_dropout`, so that the model also learns the unconditional branch. The
    diffusion noise draws from the same generator, after it."""

    def __init__(self, image_start_id: int, context_dropout: float = 0.0):
        if not 0.0 <= context_dropout < 1.0:
            raise ValueError(f"context_dropout must be in [0, 1), got {context_dropout}")
        self.image_start_id = image_start_id
        self.context_dropout = context_dropout

    def __call__(self, model: torch.nn.Module, batch: BatchFeature, generator: torch.Generator,
                 step: int) -> dict[str, torch.Tensor]:
        dropped = None
        if self.context_dropout > 0:
            starts = (batch["input_ids"] == self.image_start_id).nonzero()  # (N, 2)
            if starts.shape[0]:
                is_target = batch["labels"][starts[:, 0], starts[:, 1]] != -100
                chance = torch.rand(starts.shape[0], device=starts.device, generator=generator)
                dropped = (chance < self.context_dropout) & is_target
        output = model(**batch, dropped_context=dropped, generator=generator)
        losses = {name: getattr(output, name) for name in CHAT_LOSSES}
        # logged beside the losses: real (not padding) positions of the micro-batch, for tokens/s
        losses["positions"] = batch["attention_mask"].sum().float()
        return losses


def make_loader(dataset: Dataset, batch_size: int, num_batches: int, seed: int, num_workers: int = 0,
                collate_fn: Callable | None = None, length: Callable[[int], int] | None = None,
                group_batches: int = 16) -> DataLoader:
    """A DataLoader over `num_batches` batches of `GroupedBatchSampler` (all processes together;
    `accelerator.prepare` deals them out)."""
    sampler = GroupedBatchSampler(len(dataset), batch_size, num_batches, seed, length, group_batches)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn)
