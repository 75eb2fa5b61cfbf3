"""The model's own pictures as training context: one round of dataset aggregation (DAgger, Ross,
Gordon and Bagnell 2011) for interleaved guides.

At generation every step's picture is drawn after the model's own earlier pictures; in training it
is drawn after the renders. `draw_own_inputs` draws the first `cut` pictures of a training
conversation as generation draws them (next-scale prediction with guidance, each picture after the
true text and the model's own earlier pictures, which stay in the cache as generation leaves them)
and returns their teacher-forcing inputs. Stored in an `OwnPictures` file by
`training/draw_own_pictures.py`, they replace those pictures' inputs in the training pass
(`WithOwnPictures` and `ChatCollator` -> `HartVLM.forward(context_image_inputs=...)`): the replaced
pictures are context only and the later pictures learn the renders after them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from hart_vlm.training.tensor_files import load_tensors, save_tensors

FORMAT = "hart_vlm.own_pictures/1"


def _recording_generator(model, sampling, generator):
    """An InterleavedGenerator that keeps the codes of every scale and the residual it draws."""
    from hart_vlm.generation import InterleavedGenerator

    class RecordingGenerator(InterleavedGenerator):
        codes: list[torch.Tensor]
        residual: torch.Tensor | None

        def _sample_codes(self, h, k):
            codes = super()._sample_codes(h, k)
            self.codes.append(codes)
            return codes

        def _sample_residual(self, h_last, codes_nL):
            self.residual = super()._sample_residual(h_last, codes_nL)
            return self.residual

    return RecordingGenerator(model, sampling, generator)


@torch.no_grad()
def draw_own_pictures(model, messages: list[dict], cut: int, sampling,
                      generator: torch.Generator | None = None) -> list[tuple[list[torch.Tensor], torch.Tensor | None]]:
    """The first `cut` pictures of `messages`, drawn by `model` as generation draws them: the
    conversation's own text is fed as it is and every picture is sampled with `sampling` (a
    SamplingConfig) after the model's own earlier pictures. Returns, per picture, its codes (one
    (1, pn_k²) tensor per scale) and the residual head's latent (None when `sampling.use_residual`
    is off). The pictures must be the assistant's (no user image before them)."""
    from hart_vlm.generation import TEXT_BLOCK, _Feed

    if sampling.image_mode != "next_scale" or sampling.image_candidates != 1:
        raise ValueError("sampling must draw one candidate by next-scale prediction (image_mode 'next_scale', "
                         f"image_candidates 1), got {sampling.image_mode!r} and {sampling.image_candidates}")
    batch = model.processor(messages).to(model.device)
    ids, labels = batch["input_ids"], batch["labels"]
    vocab, layout = model.vocab, model.layout
    starts = (ids[0] == vocab.image_start_id).nonzero()[:, 0].tolist()
    if not 1 <= cut <= len(starts):
        raise ValueError(f"cut must be in [1, {len(starts)}] (the conversation's pictures), got {cut}")
    if any(int(labels[0, s]) == -100 for s in starts[:cut]):
        raise ValueError("the first `cut` pictures must all be the assistant's (a user's image is never drawn)")
    gen = _recording_generator(model, sampling, generator)
    gen.prefill(ids[:, : starts[0]], torch.ones_like(ids[:, : starts[0]]), None)
    rows = torch.zeros(1, dtype=torch.long, device=ids.device)
    pos, drawn = starts[0], []
    for s in starts[:cut]:
        if s > pos:  # the true text since the last picture
            text = ids[:, pos:s].repeat(gen.mask.shape[0], 1)
            gen._feed(_Feed(model.embed_ids(text), torch.ones_like(text, dtype=torch.bool), torch.full_like(text, TEXT_BLOCK)))
        if gen.cfg_on:
            gen.mask[1:] = 0  # the unconditional twin sees only this picture (as InterleavedGenerator.run)
        start = torch.full((gen.mask.shape[0], 1), vocab.image_start_id, device=ids.device)
        hidden = gen._feed(_Feed(model.embed_ids(start), torch.ones_like(start, dtype=torch.bool),
                                 torch.full_like(start, TEXT_BLOCK)))
        gen.codes, gen.residual = [], None
        gen._draw_images(rows, hidden[:, -1])
        drawn.append((gen.codes, gen.residual if sampling.use_residual else None))
        pos = s + layout.num_input_positions + 2  # <|image_start|>, the inputs, <|image_end|>
    return drawn


def draw_own_inputs(model, messages: list[dict], cut: int, sampling, generator: torch.Generator | None = None) -> torch.Tensor:
    """Teacher-forcing inputs (cut, num_input_positions, z) of the first `cut` pictures of
    `messages` as `draw_own_pictures` draws them."""
    tok, inputs = model.image_tokenizer, []
    for codes, residual in draw_own_pictures(model, messages, cut, sampling, generator):
        latent = tok.indices_to_f_hat(codes)
        if residual is not None:
            latent = latent + residual.to(latent.dtype)
        inputs.append(model._image_inputs(codes, latent)[0].float())
    return torch.stack(inputs)


# ------------------------------------------------------------------------------------------------
# The stored pictures and the training data that reads them
# ------------------------------------------------------------------------------------------------
@dataclass
class OwnPictures:
    """Drawn inputs by dataset index: inputs[i] is (cut_i, num_input_positions, z), the first
    cut_i pictures of example i; `info` records how they were drawn."""

    inputs: dict[int, torch.Tensor]
    info: dict

    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file, written atomically (a temporary file, then a rename)."""
        save_tensors(path, {str(i): t for i, t in self.inputs.items()}, FORMAT, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "OwnPictures":
        tensors, info = load_tensors(path, FORMAT, "own pictures", "training/draw_own_pictures.py")
        return cls({int(k): t for k, t in tensors.items()}, info)


@dataclass
class OwnContextExample:
    """A conversation and the drawn inputs of its first pictures (None: all are the renders)."""

    messages: list[dict]
    context_inputs: torch.Tensor | None


class WithOwnPictures(Dataset):
    """`dataset`'s conversations, each with the drawn inputs `own` holds for its index."""

    def __init__(self, dataset: Dataset, own: OwnPictures):
        bad = [i for i in own.inputs if not 0 <= i < len(dataset)]
        if bad:
            raise ValueError(f"own pictures name indices outside the dataset of {len(dataset)} examples, e.g. {bad[0]}")
        self.dataset, self.own = dataset, own
        if hasattr(dataset, "length"):
            self.length = dataset.length

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> OwnContextExample:
        return OwnContextExample(self.dataset[index], self.own.inputs.get(int(index)))


def choose_cuts(indices: list[int], num_pictures: list[int], prob: float, seed: int) -> dict[int, int]:
    """For each example (dataset index, pictures), with probability `prob`, a cut drawn uniformly
    from 1..pictures-1: the pictures before it are drawn by the model. A pure function of
    (seed, index); examples with fewer than two pictures get none."""
    cuts = {}
    for index, n in zip(indices, num_pictures):
        rng = np.random.default_rng([seed, 0x6F776E, index])  # 0x6F776E: "own"
        if n >= 2 and rng.random() < prob:
            cuts[index] = int(rng.integers(1, n))
    return cuts
