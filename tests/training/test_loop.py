"""train_loop on a toy regression: the same weights and metrics as the loop written out by hand
(accumulation, clipping, per-micro-batch generators, LR schedule, evaluation), exact resume, and
clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from torch.utils.data import Dataset

from hart_vlm.training.batching import make_loader
from hart_vlm.training.config import TrainingConfig
from hart_vlm.training.loop import train_loop
from hart_vlm.training.runtime import LRSchedule, make_accelerator, make_optimizer, make_scheduler, step_generator


class Points(Dataset):
    """y = x · w_true + 1 for 16 fixed points in R^4."""

    def __init__(self, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(16, 4, generator=gen)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 1.0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def noisy_mse(model, batch, generator, step):
    x_BD, y_B1 = batch
    noise_B1 = 0.1 * torch.randn(y_B1.shape, generator=generator)  # the loop's generator of this micro-batch
    mse = ((model(x_BD) - y_B1 - noise_B1) ** 2).mean()
    return {"loss": mse, "abs_err": (model(x_BD) - y_B1).abs().mean()}


def config(out, max_steps, **fields):
    fields = {"learning_rate": 0.05, "schedule_steps": 4, "log_every": 2, **fields}
    return TrainingConfig(output_dir=str(out), max_steps=max_steps, batch_size=2, gradient_accumulation_steps=2,
                          warmup_steps=1, max_grad_norm=0.5, eval_every=2, eval_batches=2,
                          progress=False, mixed_precision="no", **fields)


def run(cfg, compute_losses=noisy_mse, **kwargs):
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = make_accelerator(cfg)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = make_optimizer(model, cfg)
    train_loader = make_loader(Points(0), cfg.batch_size, cfg.max_steps * cfg.gradient_accumulation_steps, cfg.seed)
    eval_loader = make_loader(Points(1), cfg.batch_size, cfg.eval_batches, cfg.seed + 1)
    kwargs = {"eval_loader": eval_loader, "eval_losses": noisy_mse, **kwargs}
    return train_loop(cfg, accelerator, model, optimizer, make_scheduler(optimizer, cfg), train_loader, compute_losses,
                      name="toy", data_info={"train_examples": 16}, **kwargs)


def test_train_loop_equals_the_loop_written_out(tmp_path):
    steps_seen = []

    def losses(model, batch, generator, step):
        steps_seen.append(step)
        return noisy_mse(model, batch, generator, step)

    cfg = config(tmp_path, 3)
    result = run(cfg, losses, summarize_eval=lambda m: {**m, "rmse": m["loss"] ** 0.5})
    assert result.progress.step == 3 and result.progress.batches_consumed == 6
    assert steps_seen == [0, 0, 1, 1, 2, 2]

    # by hand: mean of the 2 micro-batch losses, clip, AdamW step, schedule step
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    batches = iter(make_loader(Points(0), 2, 6, cfg.seed))
    lrs = []
    for step in range(3):
        lrs.append(scheduler.get_last_lr()[0])
        for micro in range(2):
            generator = step_generator(cfg.seed, step, micro, 0, torch.device("cpu"))
            (noisy_mse(model, next(batches), generator, step)["loss"] / 2).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], value, rtol=0, atol=1e-6)

    # evaluation: the mean over the evaluation batches with the generators of (seed + 1, batch), then the summary
    with torch.no_grad():
        evals = [noisy_mse(model, batch, step_generator(cfg.seed + 1, 0, i, 0, torch.device("cpu")), 3)["loss"]
                 for i, batch in enumerate(make_loader(Points(1), 2, 2, cfg.seed + 1))]
    expected = float(torch.stack(evals).mean())
    assert result.eval_metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert result.eval_metrics["rmse"] == pytest.approx(expected ** 0.5, rel=1e-5)

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["step"]) for r in records] == [("data", 0), ("train", 2), ("eval", 2), ("train", 3), ("eval", 3)]
    assert records[0]["train_examples"] == 16 and records[0]["processes"] == 1
    assert [r["lr"] for r in records if r["split"] == "train"] == pytest.approx([lrs[1], lrs[2]])
    assert set(records[1]) >= {"loss", "abs_err"} and "rmse" in records[2]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000003"]


def test_train_loop_resumed_halfway_ends_where_the_straight_run_does(tmp_path):
    straight = run(config(tmp_path / "a", 4))
    run(config(tmp_path / "b", 2))
    resumed = run(config(tmp_path / "b", 4, resume=True))
    assert resumed.progress.step == 4 and resumed.progress.batches_consumed == 8
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value)
    assert resumed.eval_metrics == straight.eval_metrics


def test_a_resumed_run_follows_the_schedule_of_its_config(tmp_path):
    # trained 2 steps of a schedule over 4, then resumed to 6 steps with the decay laid out over 6
    # and another peak: from the resumption on, the learning rate is the new schedule's
    run(config(tmp_path, 2))
    run(config(tmp_path, 6, resume=True, schedule_steps=6, learning_rate=0.02))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["lr"] for r in records if r["split"] == "train"}
    new = LRSchedule("cosine", warmup=1, total=6, min_ratio=0.1)
    old = LRSchedule("cosine", warmup=1, total=4, min_ratio=0.1)
    assert logged[2] == pytest.approx(0.05 * old(1))  # the lr of the last step before the resumption
    assert logged[4] == pytest.approx(0.02 * new(3)) and logged[6] == pytest.approx(0.02 * new(5))
    assert 0.02 * new(5) != pytest.approx(0.05 * old(5))


def test_train_loop_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="'loss' entry"):
        run(config(tmp_path / "a", 1), lambda *args: {"mse": noisy_mse(*args)["loss"]})
    with pytest.raises(ValueError, match="eval_loader needs eval_losses"):
        run(config(tmp_path / "b", 1), eval_losses=None)


def test_a_run_resumed_from_an_earlier_checkpoint_logs_each_step_once(tmp_path):
    import json

    out = tmp_path / "run"
    run(config(out, 4, log_every=1, save_every=2, keep_checkpoints=3))  # as if it stopped after step 4
    checkpoint = out / "checkpoints" / "step_00000002"
    run(config(out, 4, log_every=1, save_every=2, keep_checkpoints=3, resume_from=str(checkpoint)))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in lines if r["split"] == "train"]
    assert train_steps == [1, 2, 3, 4]
    assert [r["step"] for r in lines if r["split"] == "data"] == [0, 2]
