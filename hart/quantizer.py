"""HART's multi-scale residual quantizer: one shared codebook, partially shared phi convs.

VAR (Tian et al. 2024, §3.2 / Alg. 1) quantizes the latent f at K scales from coarse to fine;
each scale quantizes the area-downsampled remainder, and its code vectors, bicubic-upsampled
to the latent grid and refined by a conv "phi", are added to the running estimate f_hat.
HART (§3.1) keeps the last scale's codes free of phi and calls what remains after the last
scale the continuous residual, so that f_hat + residual == f exactly.

Tensor layout: latents are (B, z, h, w); the codes of scale k are (B, pn_k**2), the pn_k x pn_k
grid flattened row-major.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hart.tokenizer_config import HybridTokenizerConfig


def phi_index(scale_index: int, num_scales: int, num_phis: int) -> int:
    """Which of `num_phis` phi convs serves scale `scale_index` of `num_scales` (VAR/HART rule).

    Each phi owns a tick in (0, 1); scale k takes the phi whose tick is nearest to k / (K - 1),
    the first on ties. The released code places the ticks at linspace(1/(3n), 1 - 1/(3n), n) when
    n == 4 (the released tokenizer's case) and at linspace(1/(2n), 1 - 1/(2n), n) otherwise; the
    ticks and the distance are computed in float64 exactly as numpy does, because some scales
    (k = 2 and 7 of 10) sit on a tie up to rounding.
    """
    if num_phis < 1:
        raise ValueError(f"num_phis must be >= 1, got {num_phis}")
    if num_scales < 2 or not 0 <= scale_index < num_scales:
        raise ValueError(f"need 0 <= scale_index < num_scales and num_scales >= 2, got {scale_index}, {num_scales}")
    margin = 1 / 3 / num_phis if num_phis == 4 else 1 / 2 / num_phis
    ticks = np.linspace(margin, 1 - margin, num_phis)
    return int(np.argmin(np.abs(ticks - scale_index / (num_scales - 1))))


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) h + r conv3x3(h): the conv that repairs the blur of bicubic upsampling."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, kernel_size=3, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h_BzHW: torch.Tensor) -> torch.Tensor:
        return h_BzHW * (1.0 - self.ratio) + super().forward(h_BzHW) * self.ratio


class PhiBank(nn.Module):
    """The phi convs, named like the release: `qresi` (one shared) or `qresi_ls.{i}`."""

    def __init__(self, config: HybridTokenizerConfig):
        super().__init__()
        z, ratio = config.z_channels, config.quant_resi
        if config.share_quant_resi == 1:
            self.qresi = Phi(z, ratio)  # fully shared: one phi for every scale
            self.num_phis = 1
        else:
            self.num_phis = config.share_quant_resi or config.default_qresi_counts or config.num_scales
            self.qresi_ls = nn.ModuleList([Phi(z, ratio) for _ in range(self.num_phis)])

    def __getitem__(self, index: int) -> Phi:
        return self.qresi if hasattr(self, "qresi") else self.qresi_ls[index]


@dataclass
class QuantizerOutput:
    indices: list[torch.Tensor]  # K x (B, pn_k**2) long
    f_hat: torch.Tensor  # (B, z, h, w) discrete part; carries gradient to codebook and phi
    residual: torch.Tensor  # (B, z, h, w) f - f_hat, detached
    vq_loss: torch.Tensor  # () mean over scales of beta ||sg(f_hat_k) - f||^2 + ||f_hat_k - sg(f)||^2


class MultiScaleResidualQuantizer(nn.Module):
    def __init__(self, config: HybridTokenizerConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.z_channels)  # the shared codebook
        # Near-zero codes at first (VQGAN's uniform(-1/V, 1/V)): nn.Embedding's N(0, 1) codes overshoot
        # small latents, so the error grew with every scale; the codebook loss grows them as needed.
        nn.init.uniform_(self.embedding.weight, -1.0 / config.vocab_size, 1.0 / config.vocab_size)
        uses_phi = not config.disable_quant_resi and abs(config.quant_resi) > 1e-6
        if uses_phi:
            self.quant_resi = PhiBank(config)
        # Which phi each scale uses; None = identity. HART's hybrid tokenizer gives the last scale no
        # phi (its code vectors are added as they are); VAR's tokenizer ("var") applies it there too.
        K = config.num_scales
        self.phi_indices: tuple[int | None, ...] = tuple(
            phi_index(k, K, self.quant_resi.num_phis)
            if uses_phi and (k < K - 1 or config.quantizer_type == "var")
            else None
            for k in range(K)
        )

    # ----------------------------------------------------------------- building blocks
    def code_distances(self, z_NC: torch.Tensor) -> torch.Tensor:
        """(N, V): how far each row is from each codebook vector, lower is nearer (squared
        Euclidean distance, or minus the cosine with using_znorm)."""
        codebook_VC = self.embedding.weight.detach()
        z_NC = z_NC.detach()
        if self.config.using_znorm:
            return -(F.normalize(z_NC, dim=-1) @ F.normalize(codebook_VC, dim=-1).T)
        # ||z||^2 + ||e||^2 - 2 z.e, in this order (HART's arithmetic, so near-ties resolve alike)
        norms_NV = z_NC.square().sum(dim=1, keepdim=True) + codebook_VC.square().sum(dim=1)
        return torch.addmm(norms_NV, z_NC, codebook_VC.T, beta=1, alpha=-2)

    def nearest_codes(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector for each row: Euclidean, or cosine with using_znorm."""
        return self.code_distances(z_NC).argmin(dim=1)

    def code_vectors(self, codes: torch.Tensor, side: int) -> torch.Tensor:
        """(B, side**2) codes, or (B, side**2, z) code vectors (e.g. a soft mixture) → (B, z, side, side)."""
        vectors_BLz = self.embedding(codes) if codes.dim() == 2 else codes.to(self.embedding.weight.dtype)
        B = vectors_BLz.shape[0]
        return vectors_BLz.transpose(1, 2).reshape(B, self.config.z_channels, side, side)

    def contribution(self, h_Bzpp: torch.Tensor, scale_index: int) -> torch.Tensor:
        """What scale k adds to f_hat: phi_k(bicubic-upsample(code vectors)) on the latent grid."""
        side = self.config.latent_size
        if h_Bzpp.shape[-1] != side:
            h_Bzpp = F.interpolate(h_Bzpp, size=(side, side), mode="bicubic")
        which = self.phi_indices[scale_index]
        return h_Bzpp if which is None else self.quant_resi[which](h_Bzpp)  # (B, z, side, side)

    # ----------------------------------------------------------------- tokenization
    def forward(self, f_BzHW: torch.Tensor) -> QuantizerOutput:
        """HART's hybrid token extraction (HART §3.1; VAR Alg. 1)."""
        f_BzHW = f_BzHW.to(self.embedding.weight.dtype)
        B, z, H, W = f_BzHW.shape
        f_no_grad = f_BzHW.detach()
        f_rest = f_no_grad.clone()
        f_hat = torch.zeros_like(f_no_grad)
        indices: list[torch.Tensor] = []
        vq_loss = f_BzHW.new_zeros(())
        for k, pn in enumerate(self.config.v_patch_nums):
            rest_Bzpp = f_rest if pn == H else F.interpolate(f_rest, size=(pn, pn), mode="area")
            idx_N = self.nearest_codes(rest_Bzpp.permute(0, 2, 3, 1).reshape(-1, z))  # (B*pn*pn,)
            idx_Bl = idx_N.view(B, pn * pn)
            h = self.contribution(self.code_vectors(idx_Bl, pn), k)  # (B, z, H, W)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            indices.append(idx_Bl)
            # VAR's VQ loss after every scale: commitment (to the encoder) + codebook/phi term.
            vq_loss = vq_loss + self.config.beta * F.mse_loss(f_hat.detach(), f_BzHW) + F.mse_loss(f_hat, f_no_grad)
        return QuantizerOutput(indices, f_hat, f_rest, vq_loss / len(self.config.v_patch_nums))

    def indices_to_f_hat(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Sum of every scale's contribution: the discrete latent (B, z, h, w)."""
        f_hat = None
        for k, (codes, pn) in enumerate(zip(indices, self.config.v_patch_nums)):
            h = self.contribution(self.code_vectors(codes, pn), k)
            f_hat = h if f_hat is None else f_hat + h
        return f_hat

    # ----------------------------------------------------------------- next-scale prediction
    def next_scale_step(
        self, f_hat_BzHW: torch.Tensor, scale_index: int, codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Add scale k's codes to f_hat; return it and the next scale's input (B, pn_{k+1}**2, z)."""
        pns = self.config.v_patch_nums
        f_hat_BzHW = f_hat_BzHW + self.contribution(self.code_vectors(codes, pns[scale_index]), scale_index)
        if scale_index == len(pns) - 1:
            return f_hat_BzHW, None
        pn_next = pns[scale_index + 1]
        next_Bzpp = (
            f_hat_BzHW if pn_next == f_hat_BzHW.shape[-1] else F.interpolate(f_hat_BzHW, size=(pn_next, pn_next), mode="area")
        )
        return f_hat_BzHW, next_Bzpp.flatten(2).transpose(1, 2)  # (B, pn_next**2, z)

    def scale_inputs(self, indices: list[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher-forcing inputs of scales 2..K: area-resize(f_hat after scale k, pn_{k+1})."""
        B, side = indices[0].shape[0], self.config.latent_size
        f_hat = self.embedding.weight.new_zeros(B, self.config.z_channels, side, side)
        inputs = []
        for k in range(len(indices) - 1):
            f_hat, next_input = self.next_scale_step(f_hat, k, indices[k])
            inputs.append(next_input)
        return inputs
