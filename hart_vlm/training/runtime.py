"""What every recipe's loop needs around accelerate: the Accelerator, AdamW, the LR schedule, the
per-step random generators, evaluation, metrics.jsonl and the progress bar."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, GradientAccumulationPlugin, parse_flag_from_env
from tqdm.auto import tqdm

from hart_vlm.precision import auto_dtype

from .config import TrainingConfig


@dataclass
class TrainingResult:
    """What a recipe's `main` returns (the tests and callers from Python use it)."""

    model: torch.nn.Module  # the trained model, unwrapped from accelerate's wrappers
    step: int  # optimizer steps done
    output_dir: Path
    saved: dict[str, Path] = field(default_factory=dict)  # exported folders by name ("model", "adapter", ...)
    eval_metrics: dict[str, float] | None = None  # the last evaluation


def make_accelerator(cfg: TrainingConfig) -> Accelerator:
    """The Accelerator of a recipe; the launch config (CPU, GPU, DDP, FSDP, DeepSpeed) comes from
    `accelerate launch` and the environment, the training settings from `cfg`.

    - mixed precision "auto" is bf16 where the device computes it natively and faster (a CUDA
      device that supports it, a CPU with a bf16 unit measured faster: hart_vlm.precision), fp32 elsewhere;
    - gradient accumulation counts micro-batches only (`sync_with_dataloader=False`), so every
      optimizer step sees exactly `gradient_accumulation_steps` micro-batches;
    - DDP may find parameters without gradient: a text-only batch reaches neither the image head
      nor the diffusion head, and the frozen parts of the tokenizer's hybrid stage get none;
    - the LR schedule is not `prepare`d: a prepared scheduler steps once per process per optimizer
      step (accelerate scales it for data parallelism), while ours counts optimizer steps.
    """
    precision = cfg.mixed_precision
    if precision == "auto":
        # (not through PartialState(): created here without cpu=True it would ignore ACCELERATE_USE_CPU)
        on_cuda = torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU")
        precision = "bf16" if auto_dtype("cuda" if on_cuda else "cpu") == torch.bfloat16 else "no"
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg.gradient_accumulation_steps, sync_with_dataloader=False
        ),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        step_scheduler_with_optimizer=False,
    )
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None:
        # Our DataLoaders use batch samplers (no `batch_size` attribute for DeepSpeed to read).
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.batch_size
        deepspeed.deepspeed_config["gradient_clipping"] = cfg.max_grad_norm
    return accelerator


def store_frozen_in_bf16(model: torch.nn.Module, accelerator: Accelerator, keep: tuple[str, ...] = ()) -> int:
    """Under bf16 mixed precision, stores the frozen floating-point parameters in bf16, so that
    autocast does not cast them again at every matrix product; trainable parameters stay float32
    (the optimizer's master weights) and modules whose name starts with one of `keep` stay as
    they are. Returns the number of parameters converted (0 without bf16)."""
    if accelerator.mixed_precision != "bf16":
        return 0
    converted = 0
    for name, param in model.named_parameters():
        if param.requires_grad or not param.is_floating_point() or name.startswith(keep):
            continue
        param.data = param.data.to(torch.bfloat16)
        converted += param.numel()
    return converted


def make_optimizer(model: torch.nn.Module, cfg: TrainingConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases, norms and embeddings."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "embed" in name or "norm" in name else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2)
    )


class LRSchedule:
    """Multiplier of the peak learning rate for optimizer step s (0-based): linear warm-up over
    `warmup` steps, then constant, or a cosine / linear decay to `min_ratio` at step `total`."""

    def __init__(self, kind: str, warmup: int, total: int, min_ratio: float):
        if kind not in ("constant", "cosine", "linear"):
            raise ValueError(f"kind must be 'constant', 'cosine' or 'linear', got {kind!r}")
        self.kind, self.warmup, self.total, self.min_ratio = kind, warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if self.kind == "cosine" else 1.0 - progress
        return self.min_ratio + (1.0 - self.min_ratio) * shape


class ConfiguredLR(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR whose schedule always comes from the run's config. Its checkpoint holds only the
    step count: torch's LambdaLR would also restore the schedule object's fields and the peak
    learning rates, so a run resumed with a longer `schedule_steps` (or another `learning_rate`)
    would silently keep the old schedule. With an unchanged config the restored learning rate is
    the saved one, bit for bit (the same `base_lr * schedule(step)`)."""

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        # restored after the optimizer (Checkpointer.restore loads it last), so this wins
        for group, base_lr, schedule in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base_lr * schedule(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig) -> ConfiguredLR:
    schedule = LRSchedule(cfg.lr_schedule, cfg.warmup_steps, cfg.decay_steps, cfg.min_lr_ratio)
    return ConfiguredLR(optimizer, schedule)


def step_generator(seed: int, step: int, micro_batch: int, process_index: int, device: torch.device) -> torch.Generator:
    """The generator of one micro-batch's random draws (context dropout, diffusion noise, the
    tokenizer's branch choice), a pure function of its coordinates so that resuming repeats them."""
    state = np.random.SeedSequence([seed, step, micro_batch, process_index]).generate_state(1, np.uint64)[0]
    generator = torch.Generator(device=device)
    generator.manual_seed(int(state) & (2**63 - 1))
    return generator


@torch.no_grad()
def evaluate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    loader: Iterable,
    loss_fn: Callable[[torch.nn.Module, Any, int], dict[str, torch.Tensor]],
) -> dict[str, float]:
    """Mean of each loss of `loss_fn(model, batch, batch_index)` over the loader, averaged over processes."""
    model.eval()
    names: list[str] = []
    totals, count = None, 0
    for i, batch in enumerate(loader):
        losses = loss_fn(model, batch, i)
        names = list(losses)
        values = torch.stack([losses[k].detach().float() for k in names])
        totals = values if totals is None else totals + values
        count += 1
    model.train()
    if totals is None:
        raise ValueError("the evaluation data loader yielded no batch")
    means = accelerator.reduce(totals / count, reduction="mean")
    return {k: float(v) for k, v in zip(names, means.tolist())}


def reduce_mean(accelerator: Accelerator, records: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Means of the per-micro-batch losses of a logging window, averaged over processes."""
    names = list(dict.fromkeys(k for r in records for k in r))  # a loss may start mid-window (GAN)
    local = torch.stack([torch.stack([r[k].detach().float() for r in records if k in r]).mean() for k in names])
    return {k: float(v) for k, v in zip(names, accelerator.reduce(local, reduction="mean").tolist())}


class MetricsLogger:
    """Appends one JSON object per line to output_dir/metrics.jsonl (main process only)."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.start = time.time()
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def resume_at(self, step: int) -> None:
        """Drops the lines of steps after `step` (logged by a run that stopped after its last
        checkpoint), so that the resumed run's lines are not duplicates; rewritten atomically."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True)
                if line.strip() and _step_of(line) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {**record, "elapsed_s": round(time.time() - self.start, 3)}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _step_of(line: str) -> float:
    """The step of a metrics line (a line that cannot be read counts as after every step)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def progress_bar(cfg: TrainingConfig, accelerator: Accelerator, start: int, desc: str) -> tqdm:
    return tqdm(total=cfg.max_steps, initial=start, desc=desc, dynamic_ncols=True,
                disable=not (cfg.progress and accelerator.is_main_process))


def short(values: dict[str, float]) -> dict[str, str]:
    """Progress-bar postfix: '<name>': '<value with 4 significant digits>'."""
    return {k.removesuffix("_loss"): f"{v:.4g}" for k, v in values.items()}
