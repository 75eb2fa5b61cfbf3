"""LoRA fine-tuning (peft) of a HartVLM on a JSONL instruction file (DESIGN.md §7).

    python training/finetune_lora.py --base default --data FILE.jsonl --max-steps N --output-dir DIR [--merge]
    accelerate launch --config_file training/configs/accelerate/single_gpu.yaml training/finetune_lora.py \
        --config training/configs/lora_default.yaml --data FILE.jsonl

`--base` is "default" (the model embedded in the package) or a folder saved by
`HartVLM.save_pretrained` (e.g. train_vlm.py's output_dir/model). LoRA adapts the backbone's
attention and MLP projections; the image bridge and the residual diffusion head are trained fully
and the special tokens' embedding rows through trainable tokens (hart_vlm.lora). Writes
output_dir/adapter (`PeftModel.save_pretrained` plus the processor; reload it with
`PeftModel.from_pretrained(HartVLM.from_pretrained(base), adapter)`), with `--merge` also
output_dir/merged (a plain HartVLM folder with the adapter merged in), and output_dir/checkpoints/,
output_dir/metrics.jsonl, output_dir/config.yaml.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed

from hart_vlm import HartVLM
from hart_vlm.default_model import has_default_model, load_default
from hart_vlm.lora import apply_lora
from hart_vlm.training.batching import ChatCollator, make_loader
from hart_vlm.training.checkpoint import Checkpointer, TrainingProgress
from hart_vlm.training.config import TrainingConfig, option, run_cli, save_config
from hart_vlm.training.data import ChatDataset
from hart_vlm.training.runtime import (
    MetricsLogger, TrainingResult, evaluate, make_accelerator, make_optimizer, make_scheduler, progress_bar,
    reduce_mean, short, step_generator,
)

LOSSES = ("loss", "text_loss", "image_loss", "diffusion_loss")


@dataclass
class LoraTrainingConfig(TrainingConfig):
    output_dir: str = option("runs/lora", "folder for the adapter, checkpoints/, metrics.jsonl and config.yaml")
    max_steps: int = option(200, "optimizer steps to train for (a resumed run continues up to this step)")
    batch_size: int = option(4, "examples per micro-batch on each process")
    learning_rate: float = option(1e-3, "peak learning rate of AdamW")
    base: str = option("default", "'default' (the embedded model) or a saved HartVLM folder")
    data: list[str] = option([], "JSONL instruction files (DESIGN.md §7)")
    eval_data: list[str] = option([], "JSONL files to evaluate on")
    skip_bad_rows: bool = option(False, "leave out (and count) bad JSONL rows instead of stopping at the first")
    lora_rank: int = option(16, "LoRA rank r")
    lora_alpha: int | None = option(None, "LoRA alpha (default 2 * r)")
    lora_dropout: float = option(0.0, "dropout on the LoRA branch")
    merge: bool = option(False, "also save the base model with the adapter merged in (output_dir/merged)")
    attn_implementation: str = option("sdpa", "backbone attention: sdpa (CPU and GPU), flex_attention (GPU) or eager")
    length_grouping: bool = option(True, "batch examples of similar length together")
    group_batches: int = option(16, "batches per length-sorted window")
    max_length: int | None = option(None, "stop at an example longer than this many positions")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.data:
            raise ValueError("data must name at least one JSONL instruction file (--data FILE.jsonl)")
        if self.base == "default":
            if not has_default_model():
                raise ValueError(
                    "base 'default': the embedded default model is not in this installation (it is trained by "
                    "the project's recipes and shipped in a later release); pass --base PATH, a folder saved by "
                    "HartVLM.save_pretrained such as train_vlm.py's output_dir/model"
                )
        elif not os.path.isfile(os.path.join(self.base, "config.json")):
            raise ValueError(f"base {self.base!r} is neither 'default' nor a folder saved by HartVLM.save_pretrained")
        if self.lora_rank < 1 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_rank must be >= 1 and lora_dropout in [0, 1), got {self.lora_rank}, {self.lora_dropout}")


def main(cfg: LoraTrainingConfig) -> TrainingResult:
    accelerator = make_accelerator(cfg)
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")
    logger = MetricsLogger(out, accelerator.is_main_process)

    # 1. the base model with LoRA adapters (initialised identically on every process)
    # fp32 master weights whatever the checkpoint's dtype; mixed precision is autocast's job
    base = load_default() if cfg.base == "default" else HartVLM.from_pretrained(cfg.base, dtype=torch.float32)
    if base.processor is None:
        raise ValueError(f"base {cfg.base!r} has no processor; save models with HartVLM.save_pretrained")
    base.backbone.set_attn_implementation(cfg.attn_implementation)
    processor = base.processor
    set_seed(cfg.seed)
    model = apply_lora(base, r=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    model.train()
    positions = base.config.layout.num_positions

    # 2. data
    train_set, skipped = ChatDataset.from_jsonl(cfg.data, positions, cfg.skip_bad_rows)
    eval_set = None
    if cfg.eval_data:
        eval_set, eval_skipped = ChatDataset.from_jsonl(cfg.eval_data, positions, cfg.skip_bad_rows)
        skipped += eval_skipped
    if skipped:
        accelerator.print(f"skipped {len(skipped)} bad rows, the first: {skipped[0]}")
    collate = ChatCollator(processor, cfg.max_length)
    n_proc = accelerator.num_processes
    train_loader = make_loader(train_set, min(cfg.batch_size, len(train_set)),
                               cfg.max_steps * cfg.gradient_accumulation_steps * n_proc, cfg.seed, cfg.num_workers,
                               collate, train_set.length if cfg.length_grouping else None, cfg.group_batches)
    eval_loader = None
    if eval_set is not None:
        eval_loader = make_loader(eval_set, min(cfg.batch_size, len(eval_set)), cfg.eval_batches * n_proc,
                                  cfg.seed + 1, cfg.num_workers, collate)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    accelerator.print(f"LoRA on {cfg.base}: {trainable:,} trainable parameters; {len(train_set):,} examples")

    # 3. optimisation state, prepared for the launch configuration; resume if asked
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if eval_loader is not None:
        eval_loader = accelerator.prepare(eval_loader)
    accelerator.register_for_checkpointing(scheduler)
    progress = TrainingProgress()
    checkpointer = Checkpointer(accelerator, out, progress, cfg.keep_checkpoints)
    checkpointer.resume(cfg)
    logger.log({"step": progress.step, "split": "data", "train_examples": len(train_set), "skipped_rows": len(skipped),
                "processes": n_proc})
    batches = iter(accelerator.skip_first_batches(train_loader, progress.batches_consumed)
                   if progress.batches_consumed else train_loader)

    def eval_losses(model, batch, index):
        generator = step_generator(cfg.seed + 1, 0, index, accelerator.process_index, accelerator.device)
        output = model(**batch, generator=generator)
        return {name: getattr(output, name) for name in LOSSES}

    # 4. the loop: one optimizer step = gradient_accumulation_steps micro-batches
    bar = progress_bar(cfg, accelerator, progress.step, "lora")
    window, eval_metrics = [], None
    while progress.step < cfg.max_steps:
        lr = scheduler.get_last_lr()[0]
        for micro in range(cfg.gradient_accumulation_steps):
            batch = next(batches)
            progress.batches_consumed += 1
            generator = step_generator(cfg.seed, progress.step, micro, accelerator.process_index, accelerator.device)
            with accelerator.accumulate(model):  # the optimizer steps (and zeroes) on the last micro-batch only
                output = model(**batch, generator=generator)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            window.append({name: getattr(output, name).detach() for name in LOSSES})
        scheduler.step()
        progress.step += 1
        bar.update(1)
        bar.set_postfix(short({k: float(v) for k, v in window[-1].items()}))
        last = progress.step == cfg.max_steps
        if progress.step % cfg.log_every == 0 or last:
            logger.log({"step": progress.step, "split": "train", "lr": lr, **reduce_mean(accelerator, window)})
            window = []
        if eval_loader is not None and ((cfg.eval_every and progress.step % cfg.eval_every == 0) or last):
            eval_metrics = evaluate(accelerator, model, eval_loader, eval_losses)
            logger.log({"step": progress.step, "split": "eval", **eval_metrics})
            accelerator.print(f"step {progress.step}: eval " + ", ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items()))
        if (cfg.save_every and progress.step % cfg.save_every == 0) or last:
            checkpointer.save(cfg)
    bar.close()

    # 5. the adapter (with the processor, so the folder is self-describing) and the merged model
    state = accelerator.get_state_dict(model)
    trained = accelerator.unwrap_model(model)
    saved = {}
    if accelerator.is_main_process:
        trained.save_pretrained(out / "adapter", state_dict=state)
        processor.save_pretrained(out / "adapter")
        saved["adapter"] = out / "adapter"
        if cfg.merge:  # on a copy: the returned model keeps its adapter
            merged = copy.deepcopy(trained).merge_and_unload()
            merged.save_pretrained(out / "merged")
            saved["merged"] = out / "merged"
    accelerator.wait_for_everyone()
    return TrainingResult(trained, progress.step, out, saved, eval_metrics)


if __name__ == "__main__":
    run_cli(LoraTrainingConfig, main, description=__doc__.split("\n\n")[0])
