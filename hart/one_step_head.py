"""A one-step residual head: noise -> residual token in one evaluation, distilled from the diffusion head.

HART's residual head (hart.diffusion_head) samples each residual token with an 8-step ancestral
chain. The student here has the same network (MAR's MLP with adaLN) and runs it once, at the last
timestep, reading the noise as x_T and returning the clean residual x_0 it predicts. It starts as a
copy of the teacher (which, at one step, returns roughly the posterior mean whatever the noise) and
learns the teacher's deterministic sampler: the DDIM (eta = 0) chain of 50 steps, a discretised
probability-flow ODE (Song et al. 2021), maps each noise x_T to one residual, and the student regresses
that pair with mean squared error. This is knowledge distillation of an iterative sampler (Luhman &
Luhman 2021, arXiv 2101.02388) and the regression loss of Distribution Matching Distillation (Yin et al.
2024, arXiv 2311.18828, §3.3, LPIPS on images there; the residual is a 32-channel latent). DMD's
distribution matching term was tried and did not ship (docs/experiments/one_step_head.md): it raised the
error of the means and left the spread where the regression puts it.

`training/distill_head.py` runs it; `HartVLM` uses the student when `diffusion_steps=1` and the
head is unguided (`SamplingConfig.diffusion_cfg == 0`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hart.diffusion_head import ResidualDiffusionHead, ResidualDiffusionHeadConfig, _check_matrix


class OneStepResidualHead(nn.Module):
    """One network evaluation from Gaussian noise to a residual token, given the head's condition."""

    def __init__(self, config: ResidualDiffusionHeadConfig):
        super().__init__()
        self.net = ResidualDiffusionHead(config)  # the teacher's architecture (it checks the config), at t = T - 1 only
        self.config = config

    @classmethod
    def from_teacher(cls, teacher: ResidualDiffusionHead) -> OneStepResidualHead:
        """A student that starts as a copy of `teacher` (DMD initialises the generator from the teacher)."""
        student = cls(teacher.config)
        student.net.load_state_dict(teacher.state_dict())
        return student.to(next(teacher.parameters()).device)

    def generate(self, noise_ND: torch.Tensor, cond_NC: torch.Tensor) -> torch.Tensor:
        """x_0 in the head's scaled units (residual * target_scale) from noise x_T; differentiable."""
        net = self.net
        t = net.config.num_train_timesteps - 1
        t_N = torch.full((noise_ND.shape[0],), t, device=noise_ND.device, dtype=torch.long)
        pred_ND = net.predict(noise_ND, t_N, cond_NC)[:, : net.config.target_dim]
        alpha_bar = net.schedule.alphas_cumprod[t].to(device=noise_ND.device, dtype=pred_ND.dtype)
        return net.schedule.x0_from_prediction(noise_ND.to(pred_ND.dtype), pred_ND, alpha_bar)

    @torch.no_grad()
    def sample(self, cond_NC: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """One residual token per condition row, (N, cond_dim) -> (N, target_dim), in the caller's
        units. `temperature` scales the input noise (1.0: the distilled distribution; 0: one fixed
        point per condition). Randomness comes only from `generator` (a fresh OS-seeded one if None)."""
        c = self.config
        _check_matrix("cond_NC", cond_NC, c.cond_dim, "cond_dim")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature < math.inf:
            raise ValueError(f"temperature must be a finite float >= 0, got {temperature!r}")
        if generator is None:
            generator = torch.Generator(device=cond_NC.device)
            generator.seed()
        noise_ND = torch.randn((cond_NC.shape[0], c.target_dim), generator=generator, device=cond_NC.device,
                               dtype=cond_NC.dtype) * temperature
        return self.generate(noise_ND, cond_NC) / c.target_scale


# ----------------------------------------------------------------------------------------------
# distillation: the regression pairs
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def ode_targets(teacher: ResidualDiffusionHead, noise_ND: torch.Tensor, cond_NC: torch.Tensor,
                num_steps: int = 50) -> torch.Tensor:
    """The teacher's deterministic sample from noise x_T (DDIM, eta = 0), in scaled units: the
    regression pairs of DMD §3.3."""
    scheduler = teacher.schedule.sampler(num_steps, "ddim")
    c_emb = teacher.cond_embed(cond_NC.to(teacher.cond_embed.weight.dtype))
    x_ND = noise_ND.clone()
    for t in scheduler.timesteps.tolist():
        t_emb = teacher.time_embed(torch.tensor([t], device=x_ND.device))
        pred = teacher.denoise(x_ND, c_emb + t_emb)[:, : teacher.config.target_dim]
        x_ND = scheduler.step(pred, t, x_ND, eta=0.0).prev_sample
    return x_ND
