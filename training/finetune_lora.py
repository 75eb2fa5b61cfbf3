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

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed

from peft import PeftModel

from hart_vlm import HartVLM
from hart_vlm.default_model import DEFAULT_MODEL, PACKAGED_MODELS, has_default_model, load_default
from hart_vlm.lora import apply_lora, autocast_adapter_inputs
from hart_vlm.training.batching import ChatCollator, ChatLosses, make_loader
from hart_vlm.training.checkpoint import folder_written_whole
from hart_vlm.training.config import TrainingConfig, option, run_cli, save_config
from hart_vlm.training.data import ChatDataset
from hart_vlm.training.loop import train_loop
from hart_vlm.training.runtime import (TrainingResult, make_accelerator, make_optimizer, make_scheduler,
                                      store_frozen_in_bf16)


@dataclass
class LoraTrainingConfig(TrainingConfig):
    output_dir: str = option("runs/lora", "folder for the adapter, checkpoints/, metrics.jsonl and config.yaml")
    max_steps: int = option(200, "optimizer steps to train for (a resumed run continues up to this step)")
    batch_size: int = option(4, "examples per micro-batch on each process")
    learning_rate: float = option(1e-3, "peak learning rate of AdamW")
    base: str = option("default", "'default' (the default packaged model), a packaged model's name (tiny, smollm2) or "
                                  "a saved HartVLM folder")
    data: list[str] = option([], "JSONL instruction files (DESIGN.md §7)")
    eval_data: list[str] = option([], "JSONL files to evaluate on")
    skip_bad_rows: bool = option(False, "leave out (and count) bad JSONL rows instead of stopping at the first")
    images_outside: bool = option(False, "allow JSONL image paths outside the data file's folder (absolute or with ..)")
    lora_rank: int = option(16, "LoRA rank r")
    lora_alpha: int | None = option(None, "LoRA alpha (default 2 * r)")
    lora_dropout: float = option(0.0, "dropout on the LoRA branch")
    merge: bool = option(False, "also save the base model with the adapter merged in (output_dir/merged)")
    context_dropout: float = option(0.1, "share of target images that see nothing before them (classifier-free "
                                         "guidance's unconditional branch, DESIGN.md §4)")
    attn_implementation: str = option("sdpa", "backbone attention: sdpa (CPU and GPU), flex_attention (GPU) or eager")
    length_grouping: bool = option(True, "batch examples of similar length together")
    group_batches: int = option(16, "batches per length-sorted window")
    max_length: int | None = option(None, "stop at an example longer than this many positions")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.data:
            raise ValueError("data must name at least one JSONL instruction file (--data FILE.jsonl)")
        if self.base == "default" or self.base in PACKAGED_MODELS:
            name = DEFAULT_MODEL if self.base == "default" else self.base
            if not has_default_model(name):
                raise ValueError(f"base {self.base!r}: the packaged model {name!r} is not in this installation; pass "
                                 "--base PATH, a folder saved by HartVLM.save_pretrained such as train_vlm.py's output_dir/model")
        elif not os.path.isfile(os.path.join(self.base, "config.json")):
            raise ValueError(f"base {self.base!r} is neither 'default', a packaged model's name {PACKAGED_MODELS} nor a "
                             "folder saved by HartVLM.save_pretrained")
        if self.lora_rank < 1 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_rank must be >= 1 and lora_dropout in [0, 1), got {self.lora_rank}, {self.lora_dropout}")


def load_base(base: str) -> HartVLM:
    """The model `--base` names, in float32 (the master weights; bf16 training stores its frozen
    copy in bf16 itself)."""
    if base == "default" or base in PACKAGED_MODELS:
        return load_default(None if base == "default" else base)
    return HartVLM.from_pretrained(base, dtype=torch.float32)


def main(cfg: LoraTrainingConfig) -> TrainingResult:
    accelerator = make_accelerator(cfg)
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")

    # 1. the base model with LoRA adapters (initialised identically on every process)
    # fp32 master weights whatever the checkpoint's dtype; mixed precision is autocast's job
    base = load_base(cfg.base)
    if base.processor is None:
        raise ValueError(f"base {cfg.base!r} has no processor; save models with HartVLM.save_pretrained")
    base.backbone.set_attn_implementation(cfg.attn_implementation)
    processor = base.processor
    set_seed(cfg.seed)
    model = apply_lora(base, r=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    model.train()
    # under bf16 the frozen weights are stored in bf16 (the frozen HART tokenizer runs in float32)
    keep = tuple(n for n, _ in model.named_modules() if n.endswith("image_tokenizer"))
    if store_frozen_in_bf16(model, accelerator, keep):
        autocast_adapter_inputs(model)
    positions = base.config.layout.num_positions

    # 2. data
    train_set, skipped = ChatDataset.from_jsonl(cfg.data, positions, cfg.skip_bad_rows, cfg.images_outside)
    eval_set = None
    if cfg.eval_data:
        eval_set, eval_skipped = ChatDataset.from_jsonl(cfg.eval_data, positions, cfg.skip_bad_rows, cfg.images_outside)
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

    # 3. optimisation of DESIGN.md §4's loss, its three parts logged (loop.py: prepare for the launch
    # configuration, resume if asked, then accumulate, clip, step, log, evaluate and checkpoint)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    image_start = base.config.image_start_token_id
    loop = train_loop(cfg, accelerator, model, optimizer, scheduler, train_loader,
                      ChatLosses(image_start, cfg.context_dropout), name="lora",
                      data_info={"train_examples": len(train_set), "skipped_rows": len(skipped)},
                      eval_loader=eval_loader, eval_losses=ChatLosses(image_start))

    # 4. the adapter (with the processor, so the folder is self-describing) and the merged model
    state = accelerator.get_state_dict(loop.model)
    trained = accelerator.unwrap_model(loop.model)
    saved = {}
    if accelerator.is_main_process:
        with folder_written_whole(out / "adapter") as tmp:
            trained.save_pretrained(tmp, state_dict=state)
            processor.save_pretrained(tmp)
        saved["adapter"] = out / "adapter"
        if cfg.merge:  # into the base as loaded (float32), not into the bf16 copy training ran on
            merged = PeftModel.from_pretrained(load_base(cfg.base), out / "adapter").merge_and_unload()
            with folder_written_whole(out / "merged") as tmp:
                merged.save_pretrained(tmp)
            saved["merged"] = out / "merged"
    accelerator.wait_for_everyone()
    return TrainingResult(trained, loop.progress.step, out, saved, loop.eval_metrics)


if __name__ == "__main__":
    run_cli(LoraTrainingConfig, main, description=__doc__.split("\n\n")[0])
