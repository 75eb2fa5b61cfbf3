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
from hart_vlm.special_tokens import IMAGE_START

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
    processor (right padding; images loaded and resized there).

    Items may also be `OwnContextExample`s (own_pictures.WithOwnPictures): their drawn pictures
    become `context_image_mask` (one flag per image of the batch, in order) and
    `context_image_inputs`, which HartVLM.forward reads instead of those pictures' pixels."""

    def __init__(self, processor: HartVLMProcessor, max_length: int | None = None):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, items: list) -> BatchFeature:
        from hart_vlm.training.own_pictures import OwnContextExample

        own = [item.context_inputs if isinstance(item, OwnContextExample) else None for item in items]
        conversations = [item.messages if isinstance(item, OwnContextExample) else item for item in items]
        batch = self.processor(conversations, max_length=self.max_length)
        if all(inputs is None for inputs in own):
            return batch
        image_start = self.processor.tokenizer.convert_tokens_to_ids(IMAGE_START)
        counts = (batch["input_ids"] == image_start).sum(1).tolist()
        mask, given = [], []
        for n, inputs in zip(counts, own):
            cut = 0 if inputs is None else inputs.shape[0]
            if cut > n:
                raise ValueError(f"an example has {cut} drawn pictures but only {n} images")
            mask += [True] * cut + [False] * (n - cut)
            if cut:
                given.append(inputs)
        batch["context_image_mask"] = torch.tensor(mask, dtype=torch.bool)
        batch["context_image_inputs"] = torch.cat(given)
        return batch


def chat_losses(model: torch.nn.Module, batch: BatchFeature, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
    """The losses of a HartVLM (or a peft model around one) on a ChatCollator batch, the same at
    every step; context dropout and the diffusion noise draw from `generator` (loop.LossFn)."""
    output = model(**batch, generator=generator)
    return {name: getattr(output, name) for name in CHAT_LOSSES}


def make_loader(dataset: Dataset, batch_size: int, num_batches: int, seed: int, num_workers: int = 0,
                collate_fn: Callable | None = None, length: Callable[[int], int] | None = None,
                group_batches: int = 16) -> DataLoader:
    """A DataLoader over `num_batches` batches of `GroupedBatchSampler` (all processes together;
    `accelerator.prepare` deals them out)."""
    sampler = GroupedBatchSampler(len(dataset), batch_size, num_batches, seed, length, group_batches)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn)
