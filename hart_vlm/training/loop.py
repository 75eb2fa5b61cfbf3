"""The optimisation loop of every recipe (STYLE.md principle 10: the recipes stay flat and call it).

A recipe builds its model, optimizer, LR schedule and data loaders and says what one batch costs
(`compute_losses`); :func:`train_loop` prepares them for the launch configuration (CPU, one GPU,
DDP, FSDP, DeepSpeed), resumes from a checkpoint when the config asks, and then, until
`cfg.max_steps`:

    for every optimizer step s:
        for every micro-batch m of the gradient_accumulation_steps:
            losses = compute_losses(model, batch, step_generator(seed, s, m, process), s)
            backward(losses["loss"]); on the last micro-batch: clip, optimizer step, zero
        LR-schedule step; every log_every steps a "train" line of metrics.jsonl (the losses' means
        and the wall-clock seconds per optimizer step, evaluations and checkpoints included),
        every eval_every an evaluation, every save_every a checkpoint (after the last step: all three)

Each micro-batch draws from its own generator and the data order is a function of the seed, so a
resumed run repeats the uninterrupted one bit for bit (checkpoint.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from .checkpoint import Checkpointer, TrainingProgress
from .config import TrainingConfig
from .runtime import MetricsLogger, evaluate, progress_bar, reduce_mean, short, step_generator

# (model, batch, generator, step) -> {"loss": scalar to minimise, other scalars to log}
LossFn = Callable[[nn.Module, Any, torch.Generator, int], dict[str, torch.Tensor]]


@dataclass
class LoopResult:
    model: nn.Module  # as accelerate prepared it: give it to get_state_dict / unwrap_model
    progress: TrainingProgress  # optimizer steps done, micro-batches consumed
    eval_metrics: dict[str, float] | None  # the last evaluation; None without evaluation data


def train_loop(
    cfg: TrainingConfig,
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    train_loader: DataLoader,
    compute_losses: LossFn,
    *,
    name: str,
    data_info: dict[str, Any],
    eval_loader: DataLoader | None = None,
    eval_losses: LossFn | None = None,
    summarize_eval: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> LoopResult:
    """Train `model` for `cfg.max_steps` optimizer steps (or the rest of them after a resume).

    train_loader: yields at least `max_steps * gradient_accumulation_steps` micro-batches per process.
    compute_losses: the training losses of one micro-batch; "loss" is minimised, every entry is
        logged (means over the logging window, averaged over processes).
    name: the progress bar's label.
    data_info: written with the step and the process count as the "data" line of metrics.jsonl.
    eval_loader, eval_losses: evaluation data and its losses; each evaluation averages
        `eval_losses` over the whole loader with the generators of (seed + 1, batch), the same at
        every evaluation so that the numbers are comparable across steps.
    summarize_eval: derives further metrics from the evaluation means (e.g. PSNR from an MSE).
    Writes output_dir/metrics.jsonl and output_dir/checkpoints/.
    """
    if eval_loader is not None and eval_losses is None:
        raise ValueError("eval_loader needs eval_losses, the losses to average over it")
    out = Path(cfg.output_dir)
    logger = MetricsLogger(out, accelerator.is_main_process)

    # 1. prepared for the launch configuration (the evaluation loader alone: DeepSpeed checks that
    # the loaders prepared together have one batch size); the LR schedule is stepped here, not prepared
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)

    # 2. resume if asked: restore the state and skip the micro-batches already consumed
    progress = TrainingProgress()
    checkpointer = Checkpointer(accelerator, out, progress, cfg.keep_checkpoints, scheduler=scheduler)
    if checkpointer.resume(cfg) is not None:
        logger.resume_at(progress.step)
    logger.log({"step": progress.step, "split": "data", **data_info, "processes": accelerator.num_processes})
    batches = iter(accelerator.skip_first_batches(train_loader, progress.batches_consumed)
                   if progress.batches_consumed else train_loader)

    def eval_batch_losses(model: nn.Module, batch: Any, index: int) -> dict[str, torch.Tensor]:
        generator = step_generator(cfg.seed + 1, 0, index, accelerator.process_index, accelerator.device)
        return eval_losses(model, batch, generator, progress.step)

    # 3. one optimizer step = gradient_accumulation_steps micro-batches
    bar = progress_bar(cfg, accelerator, progress.step, name)
    window: list[dict[str, torch.Tensor]] = []
    eval_metrics = None
    window_start, window_steps = time.perf_counter(), 0
    while progress.step < cfg.max_steps:
        lr = scheduler.get_last_lr()[0]
        for micro in range(cfg.gradient_accumulation_steps):
            batch = next(batches)
            progress.batches_consumed += 1
            # every random draw of the step (context dropout, diffusion noise, the tokenizer's
            # branch choice) comes from this generator, so resuming repeats it
            generator = step_generator(cfg.seed, progress.step, micro, accelerator.process_index, accelerator.device)
            with accelerator.accumulate(model):  # the optimizer steps (and zeroes) on the last micro-batch only
                losses = compute_losses(model, batch, generator, progress.step)
                if "loss" not in losses:
                    raise ValueError(f"compute_losses must return a dict with a 'loss' entry, got keys {sorted(losses)}")
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            window.append({k: v.detach() for k, v in losses.items()})
        scheduler.step()
        progress.step += 1
        window_steps += 1
        bar.update(1)
        bar.set_postfix(short({k: float(v) for k, v in window[-1].items()}))
        last = progress.step == cfg.max_steps
        if progress.step % cfg.log_every == 0 or last:
            step_seconds = (time.perf_counter() - window_start) / window_steps
            logger.log({"step": progress.step, "split": "train", "lr": lr, **reduce_mean(accelerator, window),
                        "step_seconds": round(step_seconds, 3)})
            window, window_start, window_steps = [], time.perf_counter(), 0
        if eval_loader is not None and ((cfg.eval_every and progress.step % cfg.eval_every == 0) or last):
            eval_metrics = evaluate(accelerator, model, eval_loader, eval_batch_losses)
            if summarize_eval is not None:
                eval_metrics = summarize_eval(eval_metrics)
            logger.log({"step": progress.step, "split": "eval", **eval_metrics})
            accelerator.print(f"step {progress.step}: eval " + ", ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items()))
        if (cfg.save_every and progress.step % cfg.save_every == 0) or last:
            checkpointer.save(cfg)
    bar.close()
    return LoopResult(model, progress, eval_metrics)
