"""The convolutional encoder and decoder of HART's tokenizer.

Latent-diffusion "vq-f16" design (Rombach et al. 2022, as used by VAR and HART; HART_REFERENCE.md
§2). Module names equal the released checkpoint's keys (without `vae.`), so loading is a key copy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hart.tokenizer_config import HybridTokenizerConfig


def group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=num_groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm1 → SiLU → conv1 → norm2 → SiLU → dropout → conv2, plus a 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, num_groups: int = 32):
        super().__init__()
        self.norm1 = group_norm(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x_BCHW)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x_BCHW) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions; one 1x1 conv makes q, k, v (in that order)."""

    def __init__(self, channels: int, num_groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, num_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        qkv = self.qkv(self.norm(x_BCHW)).reshape(B, 3, C, H * W)  # (B, 3, C, HW)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, HW, C)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C), softmax(q k^T / sqrt(C)) v
        h = h.transpose(1, 2).reshape(B, C, H, W)
        return x_BCHW + self.proj_out(h)


class Downsample(nn.Module):
    """Halve H and W: zero-pad right and bottom by one, then a 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x_BCHW, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x_BCHW, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """(B, 3, H, W) image → (B, z, H/f, W/f) features, f = 2 ** (len(ch_mult) - 1)."""

    def __init__(self, config: HybridTokenizerConfig):
        super().__init__()
        ch, groups, dropout = config.ch, config.norm_num_groups, config.dropout
        num_levels = len(config.ch_mult)
        self.conv_in = nn.Conv2d(3, ch, kernel_size=3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(config.ch_mult):
            block_out = ch * mult
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()  # attention only at the deepest level
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, dropout, groups))
                block_in = block_out
                if level == num_levels - 1:
                    stage.attn.append(AttnBlock(block_in, groups))
            if level != num_levels - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout, groups)
        self.mid.attn_1 = AttnBlock(block_in, groups)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout, groups)
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, config.z_channels, kernel_size=3, padding=1)

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x_B3HW)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z, h, w)


class Decoder(nn.Module):
    """(B, z, h, w) latent → (B, 3, h*f, w*f) image (unclamped)."""

    def __init__(self, config: HybridTokenizerConfig):
        super().__init__()
        ch, groups, dropout = config.ch, config.norm_num_groups, config.dropout
        num_levels = len(config.ch_mult)
        block_in = ch * config.ch_mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, block_in, kernel_size=3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout, groups)
        self.mid.attn_1 = AttnBlock(block_in, groups)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout, groups)
        # `up[level]` matches the encoder's `down[level]`; the deepest level runs first.
        stages: list[nn.Module] = []
        for level in reversed(range(num_levels)):
            block_out = ch * config.ch_mult[level]
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, dropout, groups))
                block_in = block_out
                if level == num_levels - 1:
                    stage.attn.append(AttnBlock(block_in, groups))
            if level != 0:
                stage.upsample = Upsample(block_in)
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, 3, kernel_size=3, padding=1)

    def forward(self, z_BzHW: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z_BzHW))))
        for stage in reversed(self.up):
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, H, W)
