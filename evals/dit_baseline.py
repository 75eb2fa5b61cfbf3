"""A text-conditioned DiT over HART's latent grid: the diffusion baseline of the speed benchmark.

The architecture is DiT's (Peebles & Xie, 2023, "Scalable Diffusion Models with Transformers",
§3.2): a transformer over the latent tokens with adaLN-Zero blocks, conditioned on the timestep
and, instead of DiT's class label, a pooled embedding of the prompt's text tokens (a bag of
token embeddings; the unconditional branch of classifier-free guidance uses a learned null
embedding, as DiT's dropped class). It runs over the same latent as HART's decoder (z channels,
pn_K x pn_K positions, patch size 1), so the same decoder turns its output into pixels, and it
is sampled with diffusers' DDIMScheduler (Song et al., 2021) on DiT's linear beta schedule.

`matched_config` sizes it so that its parameter count matches a given LLM backbone's: the same
width and heads, and the depth that brings the totals closest. Its weights are random: the
benchmark measures speed only, which does not depend on the values of dense weights.

Layout: helpers -> blocks -> config -> model -> builder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import nn

from hart.diffusion_head import FinalLayer, TimestepEmbedder, modulate

# ----------------------------------------------------------------------------------------------
# 1. helpers
# ----------------------------------------------------------------------------------------------


def sincos_position_embedding(side: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding of a side x side grid, (side * side, dim), row-major:
    half of the channels encode the row, half the column (DiT §3.2, after MAE)."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for a 2-D sin-cos embedding, got {dim}")
    quarter = dim // 4
    omega_Q = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (dim/4,)
    coords = torch.arange(side, dtype=torch.float64)
    rows_SS, cols_SS = torch.meshgrid(coords, coords, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles_LQ = pos.reshape(-1, 1) * omega_Q[None]  # (L, dim/4)
        return torch.cat([angles_LQ.sin(), angles_LQ.cos()], dim=1)  # (L, dim/2)

    return torch.cat([encode(rows_SS), encode(cols_SS)], dim=1).float()  # (L, dim)


# ----------------------------------------------------------------------------------------------
# 2. blocks
# ----------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention over all latent tokens (no mask)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x_BLD: torch.Tensor) -> torch.Tensor:
        B, L, D = x_BLD.shape
        qkv = self.qkv(x_BLD).reshape(B, L, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, D/H)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, D/H)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


class DiTBlock(nn.Module):
    """adaLN-Zero block (DiT §3.2): shift, scale and gate of both sub-layers regressed from c."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        hidden_mlp = round(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden_mlp), nn.GELU(approximate="tanh"), nn.Linear(hidden_mlp, hidden_size)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x_BLD: torch.Tensor, c_BD: torch.Tensor) -> torch.Tensor:
        mod = self.adaLN_modulation(c_BD)[:, None]  # (B, 1, 6D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod.chunk(6, dim=-1)  # 6 x (B, 1, D)
        x_BLD = x_BLD + gate_a * self.attn(modulate(self.norm1(x_BLD), shift_a, scale_a))
        return x_BLD + gate_m * self.mlp(modulate(self.norm2(x_BLD), shift_m, scale_m))  # (B, L, D)


# ----------------------------------------------------------------------------------------------
# 3. config
# ----------------------------------------------------------------------------------------------


@dataclass
class DiTConfig:
    latent_channels: int  # z: the HART tokenizer's z_channels
    latent_size: int  # pn_K: side of the latent grid (one token per position, patch size 1)
    text_vocab_size: int  # rows of the prompt's token-embedding table
    hidden_size: int = 256
    depth: int = 4
    num_heads: int = 8
    mlp_ratio: float = 4.0
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4  # DiT's linear beta schedule
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        for name in ("latent_channels", "latent_size", "text_vocab_size", "hidden_size", "depth", "num_heads",
                     "num_train_timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.hidden_size % 4:
            raise ValueError(f"hidden_size must be a multiple of 4 (2-D sin-cos positions), got {self.hidden_size}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start} and {self.beta_end}")


# ----------------------------------------------------------------------------------------------
# 4. model
# ----------------------------------------------------------------------------------------------


class TextConditionedDiT(nn.Module):
    """DiT over a (z, pn, pn) latent: `forward(x, t, cond) -> epsilon`, `sample(...) -> latent`."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        if not isinstance(config, DiTConfig):
            raise TypeError(f"config must be a DiTConfig, got {type(config).__name__}")
        self.config = config
        D = config.hidden_size
        # 1. inputs: one token per latent position, fixed 2-D positions
        self.x_embedder = nn.Linear(config.latent_channels, D)
        self.register_buffer("pos_embed", sincos_position_embedding(config.latent_size, D), persistent=False)
        # 2. conditioning: timestep + pooled prompt (or the learned null prompt)
        self.t_embedder = TimestepEmbedder(D)
        self.text_embed = nn.Embedding(config.text_vocab_size, D)
        self.text_proj = nn.Linear(D, D)
        self.null_text = nn.Parameter(torch.zeros(D))
        # 3. transformer
        self.blocks = nn.ModuleList([DiTBlock(D, config.num_heads, config.mlp_ratio) for _ in range(config.depth)])
        self.final_layer = FinalLayer(D, config.latent_channels)  # the residual head's: LN -> modulate -> Linear
        self._init_weights()

    def _init_weights(self) -> None:
        # DiT: xavier linears, normal(0.02) embeddings, zero adaLN and output (adaLN-Zero)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.text_embed.weight, std=0.02)
        nn.init.normal_(self.null_text, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def embed_text(self, input_ids_BL: torch.Tensor, attention_mask_BL: torch.Tensor) -> torch.Tensor:
        """Mean of the prompt's token embeddings over its real positions -> (B, D)."""
        if input_ids_BL.dim() != 2 or attention_mask_BL.shape != input_ids_BL.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (B, L), got {tuple(input_ids_BL.shape)} and "
                f"{tuple(attention_mask_BL.shape)}"
            )
        weights_BL1 = attention_mask_BL.to(self.text_embed.weight.dtype)[..., None]
        summed_BD = (self.text_embed(input_ids_BL) * weights_BL1).sum(1)
        return self.text_proj(summed_BD / weights_BL1.sum(1).clamp_min(1.0))  # (B, D)

    def forward(self, x_BZHW: torch.Tensor, t_B: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        """Noise prediction epsilon for latents x_t (B, z, pn, pn) at timesteps t, given cond (B, D)."""
        B, Z, H, W = x_BZHW.shape
        x_BLD = self.x_embedder(x_BZHW.flatten(2).transpose(1, 2)) + self.pos_embed  # (B, L, D)
        c_BD = self.t_embedder(t_B) + cond_BD  # (B, D)
        for block in self.blocks:
            x_BLD = block(x_BLD, c_BD)
        eps_BLZ = self.final_layer(x_BLD, c_BD[:, None])  # (B, L, z); c broadcast over positions
        return eps_BLZ.transpose(1, 2).reshape(B, Z, H, W)

    def make_scheduler(self, num_steps: int) -> DDIMScheduler:
        """A fresh DDIM scheduler (DiT's linear betas, epsilon prediction) set to `num_steps` steps."""
        c = self.config
        scheduler = DDIMScheduler(
            num_train_timesteps=c.num_train_timesteps, beta_start=c.beta_start, beta_end=c.beta_end,
            beta_schedule="linear", prediction_type="epsilon", clip_sample=False,
        )
        scheduler.set_timesteps(num_steps)
        return scheduler

    @torch.no_grad()
    def sample(self, cond_BD: torch.Tensor, num_steps: int = 30, cfg: float = 4.5,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """DDIM (eta = 0) from pure noise -> latents (B, z, pn, pn).

        cfg > 0 doubles the batch with the null prompt and guides the noise prediction as HART
        does for its logits: (1 + cfg) * eps(cond) - cfg * eps(null). The initial noise comes from
        `generator` (a fresh OS-seeded one when None)."""
        max_steps = self.config.num_train_timesteps
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= max_steps:
            raise ValueError(f"num_steps must be an int in [1, {self.config.num_train_timesteps}], got {num_steps!r}")
        if not (isinstance(cfg, (int, float)) and math.isfinite(cfg) and cfg >= 0):
            raise ValueError(f"cfg must be a finite float >= 0, got {cfg!r}")
        if cond_BD.dim() != 2 or cond_BD.shape[1] != self.config.hidden_size:
            raise ValueError(f"cond_BD must be (B, {self.config.hidden_size}), got {tuple(cond_BD.shape)}")
        c, B = self.config, cond_BD.shape[0]
        guided = cfg > 0
        if guided:
            cond_BD = torch.cat([cond_BD, self.null_text.to(cond_BD.dtype).expand(B, -1)])  # (2B, D)
        if generator is None:  # never the global RNG: a fresh generator seeded by the OS
            generator = torch.Generator(device=cond_BD.device)
            generator.seed()
        scheduler = self.make_scheduler(num_steps)
        shape = (B, c.latent_channels, c.latent_size, c.latent_size)
        x = torch.randn(shape, generator=generator, device=cond_BD.device, dtype=cond_BD.dtype)
        for t in scheduler.timesteps:
            x_in = torch.cat([x, x]) if guided else x
            t_in = torch.full((x_in.shape[0],), int(t), device=x.device)
            eps = self(x_in, t_in, cond_BD)
            if guided:
                eps_cond, eps_null = eps.chunk(2)
                eps = (1 + cfg) * eps_cond - cfg * eps_null
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return x


# ----------------------------------------------------------------------------------------------
# 5. builder
# ----------------------------------------------------------------------------------------------


def parameter_count(config: DiTConfig) -> int:
    """Parameters of a TextConditionedDiT of this config (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = TextConditionedDiT(config)
    return sum(p.numel() for p in model.parameters())


def matched_config(target_parameters: int, **fields) -> DiTConfig:
    """The DiTConfig (with `fields`: latent_channels, latent_size, text_vocab_size, hidden_size,
    num_heads, ...) whose parameter count is closest to `target_parameters`: first the depth that
    comes closest, then the MLP width that absorbs the rest (kept at least hidden_size wide)."""
    for name in ("depth", "mlp_ratio"):
        if name in fields:
            raise ValueError(f"matched_config chooses {name} itself; do not pass it")
    if target_parameters < 1:
        raise ValueError(f"target_parameters must be >= 1, got {target_parameters}")
    one = parameter_count(DiTConfig(depth=1, **fields))
    per_block = parameter_count(DiTConfig(depth=2, **fields)) - one
    depth = max(1, round((target_parameters - (one - per_block)) / per_block))
    config = DiTConfig(depth=depth, **fields)
    # each MLP unit adds 2 * hidden_size weights and one bias in every block
    D = config.hidden_size
    mlp_hidden = round(D * config.mlp_ratio) + (target_parameters - parameter_count(config)) / (depth * (2 * D + 1))
    return DiTConfig(depth=depth, mlp_ratio=max(round(mlp_hidden), D) / D, **fields)
