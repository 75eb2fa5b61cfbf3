"""The hybrid tokenizer and its optional PatchGAN discriminator as one trainable module.

GAN training usually alternates two optimizers. Here one backward pass of one summed objective
gives each network exactly the gradient of its own loss, so a single optimizer and a single
`accelerator.prepare`d model work unchanged under DDP, FSDP and DeepSpeed:

- the tokenizer's loss (reconstruction + VQ + adversarial_weight * generator hinge loss) reaches
  the discriminator only through a copy of its weights detached from the graph
  (`torch.func.functional_call`), so it moves the tokenizer alone;
- the discriminator's hinge loss sees the reconstructions detached, so it moves the
  discriminator alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from hart.discriminator import PatchDiscriminator, generator_hinge_loss
from hart.tokenizer import HybridTokenizer


class TokenizerObjective(nn.Module):
    def __init__(self, tokenizer: HybridTokenizer, discriminator: PatchDiscriminator | None = None):
        super().__init__()
        self.tokenizer = tokenizer
        self.discriminator = discriminator

    def forward(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        continuous_prob: float = 0.5,
        adversarial_weight: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Losses of one batch (B, 3, H, W) in [-1, 1]: "loss" (to minimise) and its parts.

        continuous_prob: the hybrid alternation of HART §3.1 (0 = discrete-only training).
        adversarial_weight: 0 before the GAN warm-up ends (the discriminator is then not trained
        either); > 0 adds both adversarial terms.
        """
        losses = self.tokenizer.training_losses(images, generator, continuous_prob=continuous_prob)
        out = {"loss": losses.total, "reconstruction": losses.reconstruction, "vq": losses.vq}
        if self.discriminator is not None and adversarial_weight > 0:
            frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
            logits_fake = functional_call(self.discriminator, frozen, (losses.reconstructions,))
            out["adversarial"] = generator_hinge_loss(logits_fake)
            out["discriminator"] = self.discriminator.loss(images, losses.reconstructions)
            out["loss"] = losses.total + adversarial_weight * out["adversarial"] + out["discriminator"]
        return out
