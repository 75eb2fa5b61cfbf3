"""`PictureDrawer`: one picture per row by next-scale prediction (HART §3), on the shared cache.

Fed `<|image_start|>`, the drawer runs one forward pass per scale: it samples the scale's codes
with classifier-free guidance growing with the scale (HART_REFERENCE §5), updates the
tokenizer's f_hat and feeds the next scale's inputs as one block. On the last scale the residual
diffusion head adds the continuous residual, the hybrid decoder paints the picture, and the
context block (the full latent) and `<|image_end|>` are fed so that the text after it sees it.
While a picture is drawn, each row's unconditional twin sees only the picture itself (the view
that context dropout gives in training).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hart.images import tensor_to_pil
from hart_vlm.outputs import ImagePreview
from hart_vlm.sampling import SamplingConfig, sample_from_logits

from .state import DecodeState


@dataclass
class DrawnCodes:
    """A code pyramid before the residual head."""

    codes: torch.Tensor  # (n, pn_K²) the last scale's codes
    f_hat: torch.Tensor  # (n, z, pn_K, pn_K) the sum of every scale's codes
    hidden: torch.Tensor  # (n or 2n, pn_K², D) hidden states on the last scale's positions


def finish(drawing) -> tuple[list, torch.Tensor]:
    """Runs a `PictureDrawer.draw` generator to its end, dropping its previews: (images, h_end)."""
    while True:
        try:
            next(drawing)
        except StopIteration as done:
            return done.value


class PictureDrawer:
    def __init__(self, model, sampling: SamplingConfig, state: DecodeState, generator: torch.Generator | None):
        self.model, self.s, self.state, self.generator = model, sampling, state, generator
        self.layout, self.tok = model.layout, model.image_tokenizer

    def draw(self, rows: torch.Tensor, h_start: torch.Tensor) -> Iterator[ImagePreview]:
        """One picture for each conditional row in `rows` (n,), from the hidden states at their
        `<|image_start|>` (n or 2n, D). A generator: it yields each coarse preview as soon as its
        scale is drawn and returns (PIL images, hidden states at `<|image_end|>` (n, D))
        (`images, h_end = yield from drawer.draw(...)`)."""
        drawn = yield from self.draw_codes(rows, h_start)
        latent = drawn.f_hat
        if self.s.use_residual:
            latent = drawn.f_hat + self.sample_residual(drawn.hidden, drawn.codes)
        images = [tensor_to_pil(image) for image in self.tok.decode_latent(latent)]
        h_end = self.feed_tail(rows, latent)
        return images, h_end

    def draw_codes(self, rows: torch.Tensor, h_start: torch.Tensor) -> Iterator[ImagePreview]:
        """The code pyramid, scale by scale (one pass each), yielding the previews `preview_every`
        asks for on the way; returns the `DrawnCodes`."""
        model, layout = self.model, self.layout
        n, K = rows.shape[0], layout.num_scales
        f_hat = self.tok.init_f_hat(n, device=h_start.device, dtype=h_start.dtype)
        h = h_start[:, None]  # (n or 2n, 1, D)
        for k in range(K):
            codes = self.sample_codes(h, k)  # (n, pn_k²)
            f_hat, next_in = self.tok.next_scale_step(f_hat, k, codes)
            if self.s.preview_every and (k + 1) % self.s.preview_every == 0 and k < K - 1:
                decoded = self.tok.decode_latent(f_hat)
                for i, b in enumerate(rows.tolist()):
                    yield ImagePreview(tensor_to_pil(decoded[i]), scale_index=k, num_scales=K, row=b)
            if k == K - 1:
                break
            embeds = model.embed_image_inputs(next_in.to(h.dtype), positions=layout.input_block(k + 1))
            h = self.state.feed_rows(rows, embeds, block="scale")
        return DrawnCodes(codes, f_hat, h)

    def sample_codes(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Scale k's codes from the hidden states of its positions (n or 2n, pn², D)."""
        s = self.s
        logits = self.model.image_logits(h).float()  # (n or 2n, pn², V)
        logits = self.guided(logits, s.scale_guidance(k, self.layout.num_scales))
        return sample_from_logits(logits, s.image_temperature, s.scale_top_k(k), s.image_top_p, self.generator)

    def guided(self, logits: torch.Tensor, guidance: float) -> torch.Tensor:
        """(n or 2n, ...) -> (n, ...): (1 + t) cond - t uncond (HART_REFERENCE §5)."""
        if not self.state.guided:
            return logits
        cond, uncond = logits.chunk(2)
        return cond if guidance == 0 else (1 + guidance) * cond - guidance * uncond

    def sample_residual(self, h_last: torch.Tensor, codes_nL: torch.Tensor) -> torch.Tensor:
        """Residual head on every last-scale position -> (n, z, pn_K, pn_K)."""
        s = self.s
        n = codes_nL.shape[0]
        pn = self.layout.v_patch_nums[-1]
        guided = self.state.guided
        codes = codes_nL.repeat(2, 1) if guided else codes_nL
        # (n L or 2 n L, D) in float32, the heads' dtype in every model (their noise schedules need it)
        cond = self.model.head_condition(h_last.flatten(0, 1), codes.flatten()).float()
        uncond = None
        if guided:
            cond, uncond = cond.chunk(2)
        head_cfg = s.head_cfg if guided else 0.0
        one_step = self.model.one_step_head
        if s.diffusion_steps == 1 and head_cfg == 0 and one_step is not None:  # distilled to one step
            residual = one_step.sample(cond, temperature=s.diffusion_temperature, generator=self.generator)
        else:
            residual = self.model.diffusion_head.sample(
                cond, num_steps=s.diffusion_steps, cfg=head_cfg, temperature=s.diffusion_temperature,
                generator=self.generator, uncond_NC=uncond if head_cfg > 0 else None,
            )  # (n * L, z)
        return residual.reshape(n, pn, pn, -1).permute(0, 3, 1, 2).to(h_last.dtype)

    def feed_tail(self, rows: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The context block (the finished latent, if the layout has one) and `<|image_end|>`."""
        model, layout = self.model, self.layout
        n = rows.shape[0]
        end_ids = torch.full((n, 1), model.vocab.image_end_id, device=latent.device)
        tail = model.embed_ids(end_ids)
        if layout.context_block:
            context = model.embed_image_inputs(latent.flatten(2).transpose(1, 2).to(tail.dtype),
                                               positions=layout.input_block(layout.num_scales))
            tail = torch.cat([context, tail], dim=1)
        return self.state.feed_rows(rows, tail, block="scale+text", twins=False)[:, -1]
