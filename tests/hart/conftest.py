"""Shared fixtures of the HART module tests."""

from __future__ import annotations

import pytest
import torch

from hart.diffusion_head import ResidualDiffusionHead, ResidualDiffusionHeadConfig

TARGET_DIM, COND_DIM, NOISE_STD = 4, 8, 0.3


def tiny_head(**overrides) -> ResidualDiffusionHead:
    torch.manual_seed(0)
    config = ResidualDiffusionHeadConfig.from_preset("tiny", target_dim=TARGET_DIM, cond_dim=COND_DIM, **overrides)
    return ResidualDiffusionHead(config)


@pytest.fixture(scope="session")
def trained():
    """A tiny head (width 64) trained on target = W c + 0.3 noise: 2 s on one CPU core."""
    head = tiny_head(width=64)
    W = torch.randn(TARGET_DIM, COND_DIM, generator=torch.Generator().manual_seed(100)) / COND_DIM**0.5
    steps, batch, lr = 300, 128, 6e-3
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        c = torch.randn(batch, COND_DIM, generator=gen)
        y = c @ W.T + NOISE_STD * torch.randn(batch, TARGET_DIM, generator=gen)
        loss = head(y, c, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    head.eval()
    conds = torch.randn(4, COND_DIM, generator=torch.Generator().manual_seed(7))
    return head, W, conds


