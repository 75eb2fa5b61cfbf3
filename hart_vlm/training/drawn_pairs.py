"""Pictures the unified model drew, each paired with the render of the state its step describes:
training data that teaches the image decoder what the LLM actually writes.

The tokenizer's decoder is trained on latents the encoder made from images (HART §3.1), but at
generation it decodes the codes the LLM samples and the residual its head draws, which are wrong
in many places (evals/scale_forcing.py: 16 to 49% of the codes of each scale above 1x1 match a
render's). `training/draw_decoder_pairs.py` draws every picture of procedural training guides as
generation draws them (next-scale prediction with guidance, each after the guide's true text and
the model's own earlier pictures) and stores the drawn latents with the guide's renders;
`train_tokenizer.py` with `drawn_pairs: PATH` then trains the decoding side on them, mixed with
renders encoded as usual so that it still decodes a render's codes. This is the idea of training a
later stage on the outputs of the stage before it rather than on clean inputs (noise-conditioning
augmentation in Ho et al. 2021, "Cascaded Diffusion Models for High Fidelity Image Generation");
the codes, and so the LLM and its texts, stay exactly as they were. Measured on the default model
it raised PSNR but not part IoU: the decoder learns a blurred mean of what a drawn latent could
stand for (training/README.md, "The decoder trained on the pictures the LLM draws").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from hart_vlm.training.tensor_files import load_tensors, save_tensors

FORMAT = "hart_vlm.drawn_pairs/1"


@dataclass
class DrawnPairs:
    """N drawn pictures: f_hat and residual (N, z, h, w) as the model drew them (the residual of its
    head), images (N, 3, H, W) uint8, the renders they should show, and guides (N,) the index of
    the guide each came from; `info` records how they were drawn."""

    f_hat: torch.Tensor
    residual: torch.Tensor
    images: torch.Tensor
    guides: torch.Tensor
    info: dict

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if not (self.f_hat.shape[0] == self.residual.shape[0] == self.guides.shape[0] == n):
            raise ValueError(f"f_hat, residual, images and guides must have one row per picture, got "
                             f"{self.f_hat.shape[0]}, {self.residual.shape[0]}, {n} and {self.guides.shape[0]}")
        if self.f_hat.shape != self.residual.shape:
            raise ValueError(f"f_hat and residual must have the same shape, got {tuple(self.f_hat.shape)} "
                             f"and {tuple(self.residual.shape)}")
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) uint8, got {tuple(self.images.shape)} {self.images.dtype}")

    @classmethod
    def empty(cls, info: dict) -> "DrawnPairs":
        return cls(torch.zeros(0, 0, 0, 0), torch.zeros(0, 0, 0, 0), torch.zeros(0, 3, 0, 0, dtype=torch.uint8),
                   torch.zeros(0, dtype=torch.long), info)

    def __len__(self) -> int:
        return self.images.shape[0]

    def extend(self, guides: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]) -> "DrawnPairs":
        """A new DrawnPairs with more guides' pictures appended: (f_hat, residual, renders in
        [-1, 1], guide index) per guide."""
        if not guides:
            return self
        old = [(self.f_hat, self.residual, self.images, self.guides)] if len(self) else []
        new = [(f.half().cpu(), r.half().cpu(), ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu(),
                torch.full((x.shape[0],), g, dtype=torch.long)) for f, r, x, g in guides]
        f_hat, residual, images, rows = (torch.cat(parts) for parts in zip(*old, *new))
        return DrawnPairs(f_hat, residual, images, rows, self.info)

    def save(self, path: str | os.PathLike) -> None:
        """One safetensors file, written atomically (a temporary file, then a rename)."""
        tensors = {"f_hat": self.f_hat, "residual": self.residual, "images": self.images, "guides": self.guides}
        save_tensors(path, tensors, FORMAT, self.info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DrawnPairs":
        tensors, info = load_tensors(path, FORMAT, "drawn pairs", "training/draw_decoder_pairs.py")
        return cls(**{k: tensors[k] for k in ("f_hat", "residual", "images", "guides")}, info=info)


class DecoderItems(Dataset):
    """What a decoder batch holds, from either source: "images" (3, H, W) in [-1, 1] (the target),
    "drawn" (whether the latents below are the model's; if not, the batch encodes the image),
    "f_hat" and "residual" (z, h, w)."""

    def __init__(self, source: Dataset | DrawnPairs, latent_shape: tuple[int, int, int]):
        if isinstance(source, DrawnPairs) and tuple(source.f_hat.shape[1:]) != tuple(latent_shape):
            raise ValueError(f"the drawn pairs have latents of shape {tuple(source.f_hat.shape[1:])}, the tokenizer's "
                             f"are {tuple(latent_shape)}: they were drawn by a model with another image tokenizer")
        self.source, self.latent_shape = source, tuple(latent_shape)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        if isinstance(self.source, DrawnPairs):
            pairs = self.source
            return {"images": pairs.images[index].float() / 127.5 - 1.0, "drawn": True,
                    "f_hat": pairs.f_hat[index].float(), "residual": pairs.residual[index].float()}
        zeros = torch.zeros(self.latent_shape)
        return {"images": self.source[index], "drawn": False, "f_hat": zeros, "residual": zeros}


def decoder_losses(tokenizer, batch: dict, generator: torch.Generator | None = None,
                   continuous_prob: float = 0.5) -> dict[str, torch.Tensor]:
    """The decoding side's reconstruction loss on a DecoderItems batch. Rows whose latents are not
    drawn are encoded (no gradient); as in HART's hybrid alternation, one draw per batch decides
    whether the decoder sees f_hat + residual (p = continuous_prob) or f_hat alone, which for a
    drawn row is the picture with the residual head on or off."""
    images = batch["images"]
    drawn = torch.as_tensor(batch["drawn"], device=images.device).bool()
    f_hat, residual = batch["f_hat"].to(images.dtype), batch["residual"].to(images.dtype)
    if not bool(drawn.all()):
        enc = tokenizer.encode(images[~drawn])
        f_hat, residual = f_hat.clone(), residual.clone()
        f_hat[~drawn], residual[~drawn] = enc.f_hat.to(f_hat.dtype), enc.residual.to(residual.dtype)
    device = generator.device if generator is not None else images.device
    continuous = bool(torch.rand((), generator=generator, device=device) < continuous_prob)
    latent = f_hat + residual if continuous else f_hat
    out = tokenizer.decoder(tokenizer.post_quant_conv(latent.to(tokenizer.post_quant_conv.weight.dtype)))
    loss = (out.float() - images.float()).pow(2).mean()
    return {"loss": loss, "reconstruction": loss}
