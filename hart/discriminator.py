"""PatchGAN discriminator for tokenizer training (pix2pix, Isola et al. 2017; as in VQGAN and HART).

`main` is one Sequential, so the parameter keys are `main.{N}.*` like the released checkpoint's
`disc.main.*` (ndf 64, 3 layers): conv, LeakyReLU, then (conv, BatchNorm, LeakyReLU) blocks, and a
final conv to one logit per patch. Losses are the hinge losses of Geometric GAN / VQGAN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) images → (B, 1, h, w) real/fake logits, one per overlapping patch."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels), ("num_layers", num_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        mult = 1
        for n in range(1, num_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < num_layers else 1  # the last block keeps the resolution
            layers += [
                nn.Conv2d(base_channels * prev, base_channels * mult, kernel_size=4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(base_channels * mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(base_channels * mult, 1, kernel_size=4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.min_image_size = 3 * 2**num_layers  # num_layers halvings, then two k4/p1 convs take 1 each
        for module in self.modules():  # DCGAN initialisation (Radford et al. 2016)
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        if images_B3HW.dim() != 4 or min(images_B3HW.shape[-2:]) < self.min_image_size:
            raise ValueError(
                f"images must be (B, C, H, W) with H, W >= {self.min_image_size}, got {tuple(images_B3HW.shape)}"
            )
        return self.main(images_B3HW)  # (B, 1, h, w)

    def loss(self, real_B3HW: torch.Tensor, fake_B3HW: torch.Tensor) -> torch.Tensor:
        """Hinge loss of the discriminator; `fake` is detached here, so pass reconstructions as they are."""
        return discriminator_hinge_loss(self(real_B3HW), self(fake_B3HW.detach()))


def discriminator_hinge_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_hinge_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()
