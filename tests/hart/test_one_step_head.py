"""The one-step residual head (hart/one_step_head.py): it starts as the teacher at one step, regression
to the teacher's ODE pairs gives it the teacher's distribution on a known problem, its sampling is seeded."""

from __future__ import annotations

import pytest
import torch

from hart.one_step_head import OneStepResidualHead, ode_targets

from .conftest import COND_DIM, NOISE_STD, TARGET_DIM


@pytest.fixture(scope="module")
def teacher(trained):
    """The tiny head trained on target = W c + 0.3 noise (conftest): its samples' spread is known (0.3)."""
    head, W, _ = trained
    return head, W


def spread(sample_fn, conds, per_cond=500):
    x = sample_fn(conds.repeat_interleave(per_cond, 0)).view(len(conds), per_cond, -1)
    return x.mean(1), x.std(1).mean()


def test_student_starts_as_the_teacher_run_for_one_step(teacher):
    head, _ = teacher
    student = OneStepResidualHead.from_teacher(head)
    cond = torch.randn(16, COND_DIM, generator=torch.Generator().manual_seed(3))
    # the teacher's one step without injected noise, from the same x_T
    one_step = head.sample(cond, num_steps=1, temperature=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(student.sample(cond, generator=torch.Generator().manual_seed(0)), one_step, atol=1e-5)
    # so, undistilled, it almost ignores its noise: it returns about the posterior mean
    a, b = (student.sample(cond, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    assert (a - b).std() < 0.5 * NOISE_STD


def test_sampling_is_seeded_and_checks_its_arguments(teacher):
    student = OneStepResidualHead.from_teacher(teacher[0])
    cond = torch.randn(5, COND_DIM)
    a, b = (student.sample(cond, generator=torch.Generator().manual_seed(7)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (5, TARGET_DIM)
    with pytest.raises(ValueError, match="cond_NC must have shape"):
        student.sample(torch.randn(5, COND_DIM + 1))
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            student.sample(cond, temperature=bad)
    with pytest.raises(TypeError, match="ResidualDiffusionHeadConfig"):
        OneStepResidualHead({"width": 4})


def test_ode_targets_are_the_teachers_deterministic_samples(teacher):
    head, W = teacher
    cond = torch.randn(2000, COND_DIM, generator=torch.Generator().manual_seed(4))
    noise = torch.randn(2000, TARGET_DIM, generator=torch.Generator().manual_seed(5))
    x = ode_targets(head, noise, cond, num_steps=20) / head.config.target_scale
    assert torch.equal(x, ode_targets(head, noise, cond, num_steps=20) / head.config.target_scale)
    residual = x - cond @ W.T  # the ODE keeps the teacher's distribution: mean W c, spread 0.3
    assert residual.mean().abs() < 0.05 and abs(residual.std() - NOISE_STD) < 0.06


def test_regression_to_the_ode_pairs_recovers_the_teachers_spread(teacher):
    """200 steps of regression to the teacher's ODE pairs turn the one-step student's spread from
    about 0 into the true 0.3, keeping its means."""
    head, W = teacher
    gen = torch.Generator().manual_seed(0)
    cond = torch.randn(4096, COND_DIM, generator=gen)
    noise = torch.randn(4096, TARGET_DIM, generator=gen)
    target = ode_targets(head, noise, cond, num_steps=20)
    student = OneStepResidualHead.from_teacher(head).requires_grad_(True)
    opt = torch.optim.Adam(student.parameters(), lr=2e-3)
    for _ in range(200):
        i = torch.randint(0, 4096, (256,), generator=gen)
        loss = (student.generate(noise[i], cond[i]) - target[i]).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    conds = torch.randn(4, COND_DIM, generator=torch.Generator().manual_seed(7))
    undistilled_spread = spread(lambda c: OneStepResidualHead.from_teacher(head).sample(c), conds)[1]
    mean, std = spread(lambda c: student.sample(c, generator=torch.Generator().manual_seed(1)), conds)
    assert undistilled_spread < 0.1 < abs(std - undistilled_spread)
    assert abs(std - NOISE_STD) < 0.06
    assert (mean - conds @ W.T).abs().max() < 0.1
