"""Noise schedule of the residual diffusion head: diffusers' schedulers plus the learned variance.

diffusers provides the schedule and the samplers: ``DDPMScheduler`` adds the training noise
(``add_noise``, ``get_velocity``) and runs the ancestral sampler, ``DDIMScheduler`` the
deterministic one. What diffusers has no object for is written here: the variance of each
ancestral step, which the head predicts, and the loss that trains it.

Symbols (DDPM, Ho et al. 2020): alpha_bar_t = prod(1 - beta); a step t -> s of a (respaced) chain
has beta = 1 - alpha_bar_t / alpha_bar_s and the posterior q(x_s | x_t, x0) = N(c0 x0 + ct x_t,
beta_tilde) with c0 = sqrt(alpha_bar_s) beta / (1 - alpha_bar_t) and beta_tilde = (1 - alpha_bar_s)
/ (1 - alpha_bar_t) beta (eq. 6-7).

Variance types, r = the network's variance output:
- "x0_error": r = log(E[(x0 - x0_hat)^2 | x_t, c] / (1 - alpha_bar_t)) per channel (for
  v-prediction, the log mean squared v residual). Any step t -> s then uses the moment-matched
  Gaussian, variance beta_tilde + c0^2 E[(x0 - x0_hat)^2] (Bao et al. 2022, "Estimating the
  Optimal Covariance with Imperfect Mean", SN-DDPM), so one trained head serves 1 to 1000 steps.
- "learned_range": HART's iDDPM choice (Nichol & Dhariwal 2021, eq. 15), variance exp(v log beta
  + (1 - v) log beta_tilde) with v = (r + 1) / 2, trained by the bound L_vlb on the 1000-step
  chain and reused on the respaced one.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler


class DiffusionSchedule:
    """Training noise, regression targets, variance loss and samplers for one head config."""

    def __init__(self, num_train_timesteps: int, beta_schedule: str, prediction_type: str, variance_type: str):
        self.num_train_timesteps = num_train_timesteps
        self.prediction_type = prediction_type
        self.variance_type = variance_type
        self._scheduler_kwargs = dict(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            clip_sample=False,
        )
        self.noise_scheduler = DDPMScheduler(**self._scheduler_kwargs)
        # the samplers reuse these betas: building the cosine schedule again costs ~2 ms per call
        self._scheduler_kwargs["trained_betas"] = self.noise_scheduler.betas.numpy()
        # per-timestep tables for the variance loss of the 1000-step chain (t -> t - 1), float64
        # on CPU, indexed and moved to the batch's device in variance_loss
        alpha_bar = self.noise_scheduler.alphas_cumprod.double()
        self.alphas_cumprod = alpha_bar
        alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        beta = 1 - alpha_bar / alpha_bar_prev
        beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
        beta_tilde[0] = beta_tilde[1]  # t = 0 has no noise; keep the log finite (iDDPM does the same)
        self._tables = {
            "alpha_bar": alpha_bar,
            "log_beta": beta.log(),
            "log_beta_tilde": beta_tilde.log(),
            "c0": alpha_bar_prev.sqrt() * beta / (1 - alpha_bar),
        }

    # -- training ------------------------------------------------------------------------------

    def add_noise(self, x0_MD: torch.Tensor, noise_MD: torch.Tensor, t_M: torch.Tensor) -> torch.Tensor:
        return self.noise_scheduler.add_noise(x0_MD, noise_MD, t_M)

    def regression_target(self, x0_MD: torch.Tensor, noise_MD: torch.Tensor, t_M: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "v_prediction":
            return self.noise_scheduler.get_velocity(x0_MD, noise_MD, t_M)
        return noise_MD if self.prediction_type == "epsilon" else x0_MD

    def x0_from_prediction(self, xt_MD: torch.Tensor, pred_MD: torch.Tensor, alpha_bar_M1: torch.Tensor):
        if self.prediction_type == "v_prediction":
            return alpha_bar_M1.sqrt() * xt_MD - (1 - alpha_bar_M1).sqrt() * pred_MD
        if self.prediction_type == "epsilon":
            return (xt_MD - (1 - alpha_bar_M1).sqrt() * pred_MD) / alpha_bar_M1.sqrt()
        return pred_MD

    def variance_loss(self, x0_MD, xt_MD, t_M, pred_MD, variance_raw_MD) -> torch.Tensor:
        """Per-token loss (M,) of the variance output; pred_MD must be detached (frozen mean).

        "x0_error": Gaussian negative log-likelihood of u = (x0 - x0_hat) / sqrt(1 - alpha_bar_t)
        under log-variance r, minimised by r = log E[u^2]; it can be negative.
        "learned_range": L_vlb, KL(q(x_{t-1} | x_t, x0) || N(mu_theta, sigma^2)) in nats per
        channel (iDDPM eq. 16); t = 0 is left out since the sampler adds no noise at the last step.
        """
        tab = {k: v.to(xt_MD.device)[t_M].to(xt_MD.dtype)[:, None] for k, v in self._tables.items()}  # (M, 1)
        x0_hat_MD = self.x0_from_prediction(xt_MD, pred_MD, tab["alpha_bar"])
        if self.variance_type == "x0_error":
            u2_MD = (x0_MD - x0_hat_MD).pow(2) / (1 - tab["alpha_bar"])
            return 0.5 * (variance_raw_MD + u2_MD * (-variance_raw_MD).exp()).mean(dim=-1)
        frac_MD = (variance_raw_MD + 1) / 2
        log_var_MD = frac_MD * tab["log_beta"] + (1 - frac_MD) * tab["log_beta_tilde"]
        mean_gap_MD = tab["c0"] * (x0_MD - x0_hat_MD)  # mu_q - mu_theta
        kl_MD = 0.5 * (
            -1.0
            + log_var_MD
            - tab["log_beta_tilde"]
            + (tab["log_beta_tilde"] - log_var_MD).exp()
            + mean_gap_MD.pow(2) * (-log_var_MD).exp()
        )
        return kl_MD.mean(dim=-1) * (t_M > 0).to(kl_MD.dtype)

    # -- sampling ------------------------------------------------------------------------------

    def sampler(self, num_steps: int, kind: str) -> DDPMScheduler | DDIMScheduler:
        """A diffusers scheduler with its timesteps set for num_steps (1 .. num_train_timesteps).

        "ddpm": HART's iDDPM respacing, diffusers' "linspace" (8 steps = 999, 856, ..., 143, 0);
        variance_type="learned" makes ``step`` take the variance as the second half of its input.
        "ddim": "trailing" spacing, which starts at T-1 for every step count; DDIMScheduler steps
        from t to t - T // num_steps, exactly the next timestep when num_steps divides T.
        """
        if kind == "ddim":
            scheduler = DDIMScheduler(**self._scheduler_kwargs, timestep_spacing="trailing", set_alpha_to_one=True)
            scheduler.set_timesteps(num_steps)
            return scheduler
        scheduler = DDPMScheduler(**self._scheduler_kwargs, variance_type="learned", timestep_spacing="linspace")
        if num_steps == 1:
            scheduler.set_timesteps(timesteps=[self.num_train_timesteps - 1])  # linspace would give t = 0
        else:
            scheduler.set_timesteps(num_steps)
        return scheduler

    def step_constants(self, timesteps: list[int]) -> list[tuple[float, float]]:
        """Two numbers per step t -> s of the respaced chain (alpha_bar = 1 after the last step),
        from which step_variance builds the variance: "x0_error": (beta_tilde, c0^2 (1 -
        alpha_bar_t)); "learned_range": (log beta_tilde, log beta), -inf at the last step."""
        alpha_bar = self.alphas_cumprod
        constants = []
        for t, s in zip(timesteps, timesteps[1:] + [None]):
            alpha_bar_t = alpha_bar[t]
            alpha_bar_s = alpha_bar[s] if s is not None else alpha_bar.new_ones(())
            beta = 1 - alpha_bar_t / alpha_bar_s
            beta_tilde = (1 - alpha_bar_s) / (1 - alpha_bar_t) * beta
            if self.variance_type == "x0_error":
                c0 = alpha_bar_s.sqrt() * beta / (1 - alpha_bar_t)
                constants.append((float(beta_tilde), float(c0**2 * (1 - alpha_bar_t))))
            else:
                constants.append((float(beta_tilde.log()), float(beta.log())))
        return constants

    def step_variance(self, constants: tuple[float, float], variance_raw_ND: torch.Tensor) -> torch.Tensor:
        """Variance (N, D) of one ancestral step from the network's variance output."""
        a, b = constants
        if self.variance_type == "x0_error":  # beta_tilde + c0^2 (1 - alpha_bar_t) exp(r)
            return a + b * variance_raw_ND.exp()
        if a == float("-inf"):  # learned_range at the last step: beta_tilde = 0, no noise
            return torch.zeros_like(variance_raw_ND)
        frac_ND = (variance_raw_ND + 1) / 2
        return (frac_ND * b + (1 - frac_ND) * a).exp()
