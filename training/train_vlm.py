"""Pre-train or fine-tune (SFT) the unified model on a mixture of interleaved chats.

    python training/train_vlm.py --config training/configs/vlm_tiny.yaml --max-steps 3
    accelerate launch --config_file training/configs/accelerate/ddp.yaml training/train_vlm.py \
        --config training/configs/vlm_default.yaml --hart-tokenizer runs/tokenizer_default/model

The model is built from a preset (its HART tokenizer taken from `--hart-tokenizer`, a folder written
by train_tokenizer.py or an official HART tokenizer; the model's config follows the tokenizer's),
from a pretrained LLM folder (`--llm`), or loaded from a saved HartVLM (`--init-from`, e.g. SFT
after pre-training). The HART tokenizer stays frozen. Data: JSONL instruction files (DESIGN.md §7),
a `datasets` dataset with a "messages" column, or, by default, the procedural assembly mixture
(guides as interleaved chats, caption -> image, image -> description, text only). Batches are
grouped by length; the loss is DESIGN.md §4's, its three parts logged separately.
Writes output_dir/model (`HartVLM.save_pretrained`, with its processor), output_dir/checkpoints/,
output_dir/metrics.jsonl and output_dir/config.yaml.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import set_seed

from hart.tokenizer import HybridTokenizer
from hart_vlm import HartVLM, HartVLMConfig, HartVLMProcessor
from hart_vlm.default_model import load_image_tokenizer
from hart_vlm.text_tokenizer import load_text_tokenizer
from hart_vlm.lora import apply_lora, autocast_adapter_inputs, load_adapter_package, save_adapter_package
from hart_vlm.training.batching import ChatCollator, ChatLosses, make_loader
from hart_vlm.training.checkpoint import folder_written_whole
from hart_vlm.training.config import TrainingConfig, option, run_cli, save_config
from hart_vlm.training.data import AssemblyMixture, ChatDataset, HFChatDataset, load_hf_dataset
from hart_vlm.training.loop import train_loop
from hart_vlm.training.runtime import (TrainingResult, make_accelerator, make_optimizer, make_scheduler,
                                      store_frozen_in_bf16)


@dataclass
class VLMTrainingConfig(TrainingConfig):
    model_preset: str = option("tiny", "HartVLMConfig preset of a model built from scratch")
    model_overrides: dict = option({}, "HartVLMConfig fields replacing the preset's (text_config: {...} for the backbone)")
    hart_tokenizer: str | None = option(
        None, "trained HART tokenizer folder, or `default` (the embedded model's); the model's image config follows it. With init_from: a new tokenizer of "
              "the same architecture put in place of the saved model's (HartVLM.replace_image_tokenizer: the maps "
              "into and out of its latent space and the residual head start afresh unless keep_image_maps, the "
              "backbone is kept)")
    keep_image_maps: bool = option(
        False, "with init_from + hart_tokenizer: keep word_embed, image_head and the residual head, for a tokenizer "
               "trained on from the model's own (its codebook barely moved)")
    llm: str | None = option(None, "build the model around this LLM: a local transformers causal-LM folder or a "
                                   "known name (hart_vlm.llms: smollm2)")
    lora_rank: int = option(0, "LoRA rank on the backbone's attention and MLP (hart_vlm.lora; the bridge, the "
                               "residual head and the special tokens' rows train fully); 0: train every weight")
    lora_alpha: int | None = option(None, "LoRA alpha (default 2 * lora_rank)")
    context_dropout: float = option(0.1, "share of target images that see nothing before them (classifier-free "
                                         "guidance's unconditional branch, DESIGN.md §4)")
    init_from: str | None = option(None, "continue training a saved HartVLM folder (e.g. SFT after pre-training) or a "
                                         "LoRA package (its adapter trains on; lora_rank must be its rank)")
    attn_implementation: str = option("sdpa", "backbone attention: sdpa (CPU and GPU), flex_attention (GPU) or eager")
    data: list[str] = option([], "JSONL instruction files (DESIGN.md §7); none: the procedural assembly mixture")
    dataset: str | None = option(None, "a datasets folder (save_to_disk) or name with a 'messages' column")
    dataset_split: str = option("train", "split of `dataset`")
    eval_data: list[str] = option([], "JSONL files to evaluate on (the mixture: its validation split)")
    skip_bad_rows: bool = option(False, "leave out (and count) bad JSONL rows instead of stopping at the first")
    images_outside: bool = option(False, "allow JSONL image paths outside the data file's folder (absolute or with ..)")
    mixture_examples: int = option(100000, "examples of the procedural assembly mixture (train split)")
    mixture_weights: dict = option({"guide": 0.6, "caption": 0.3, "text": 0.1}, "task weights of the mixture")
    guide_overview: bool = option(False, "mixture guides open with a one-line numbered plan before 'Step 1:'")
    wording: str = option("data", "mixture guide prompts: 'data' (the data's templates) or 'varied' (worded as users "
                                  "word requests; plan_guide)")
    chat_data: list[str] = option([], "JSONL conversations mixed in as the mixture's 'chat' task (e.g. general "
                                      "questions answered in text: training/data/general_chat.jsonl)")
    eval_examples: int = option(64, "examples of the mixture's validation split to evaluate on")
    data_seed: int = option(0, "seed of the procedural assembly data")
    length_grouping: bool = option(True, "batch examples of similar length together")
    group_batches: int = option(16, "batches per length-sorted window")
    max_length: int | None = option(None, "stop at an example longer than this many positions")
    def __post_init__(self) -> None:
        super().__post_init__()
        if self.llm is not None and self.init_from is not None:
            raise ValueError("give at most one of llm (build around an LLM) and init_from (a saved HartVLM)")
        if self.llm is not None and self.hart_tokenizer is None:
            raise ValueError("llm needs hart_tokenizer: a trained HART tokenizer folder to pair it with")
        if self.init_from is not None and self.model_overrides:
            raise ValueError("an init_from model brings its own config; drop model_overrides")
        if self.keep_image_maps and (self.init_from is None or self.hart_tokenizer is None):
            raise ValueError("keep_image_maps applies when init_from and hart_tokenizer are both given")
        if self.data and self.dataset is not None:
            raise ValueError("give either data (JSONL files) or dataset, not both")
        if self.mixture_examples < 1 or self.eval_examples < 0 or self.group_batches < 1:
            raise ValueError("mixture_examples and group_batches must be >= 1, eval_examples >= 0")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0: no LoRA), got {self.lora_rank}")
        if not 0.0 <= self.context_dropout < 1.0:
            raise ValueError(f"context_dropout must be in [0, 1), got {self.context_dropout}")


def build_model(cfg: VLMTrainingConfig) -> HartVLM:
    """A HartVLM with its processor, as the config asks; its HART tokenizer frozen."""
    if cfg.init_from is not None and (Path(cfg.init_from) / "adapter_config.json").is_file():
        return continue_adapter(cfg)
    if cfg.init_from is not None:
        model = HartVLM.from_pretrained(cfg.init_from)
        if model.processor is None:
            raise ValueError(f"{cfg.init_from!r} holds no processor; save models with HartVLM.save_pretrained")
        if cfg.hart_tokenizer is not None:
            model.replace_image_tokenizer(HybridTokenizer.from_pretrained(cfg.hart_tokenizer), cfg.keep_image_maps)
    elif cfg.llm is not None:
        model = HartVLM.from_components(cfg.llm, load_image_tokenizer(cfg.hart_tokenizer),
                                        diffusion_head_config=cfg.model_overrides.get("diffusion_head_config"))
    else:
        overrides = dict(cfg.model_overrides)
        tokenizer = HybridTokenizer.from_pretrained(cfg.hart_tokenizer) if cfg.hart_tokenizer else None
        if tokenizer is not None:  # the model's image layout and codebook follow the trained tokenizer
            overrides["hart_tokenizer_config"] = tokenizer.config.to_dict()
        text_tokenizer = load_text_tokenizer()
        config = HartVLMConfig.from_preset(cfg.model_preset, tokenizer=text_tokenizer, **overrides)
        model = HartVLM(config)
        if tokenizer is not None:
            model.image_tokenizer.load_state_dict(tokenizer.state_dict())
        model.processor = HartVLMProcessor(text_tokenizer, config)
    model.backbone.set_attn_implementation(cfg.attn_implementation)
    model.image_tokenizer.requires_grad_(False)
    # fp32 master weights whatever the checkpoint's dtype; mixed precision is autocast's job
    model = model.float()
    if cfg.lora_rank:
        model = apply_lora(model, r=cfg.lora_rank, alpha=cfg.lora_alpha)
    return model.train()


def continue_adapter(cfg: VLMTrainingConfig):
    """A LoRA package (e.g. a packaged model) trained on: its adapter, unmerged, around the base
    LLM's weights, everything it trained trainable again."""
    package = load_adapter_package(cfg.init_from, merge=False)
    rank = package.peft_config["default"].r
    if cfg.lora_rank != rank:
        raise ValueError(f"init_from {cfg.init_from!r} is a LoRA package of rank {rank}: it trains on as LoRA, so "
                         f"lora_rank must be {rank}, got {cfg.lora_rank}")
    if cfg.hart_tokenizer is not None:
        raise ValueError("a LoRA package keeps its HART tokenizer; drop hart_tokenizer")
    package.get_base_model().backbone.set_attn_implementation(cfg.attn_implementation)
    return package.train()


def main(cfg: VLMTrainingConfig) -> TrainingResult:
    accelerator = make_accelerator(cfg)
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")

    # 1. the model, initialised identically on every process
    set_seed(cfg.seed)
    model = build_model(cfg)
    processor = model.processor
    config = model.config
    positions = config.layout.num_positions
    # under bf16 the frozen weights are stored in bf16 (the frozen HART tokenizer runs in float32)
    keep = tuple(n for n, _ in model.named_modules() if n.endswith("image_tokenizer"))
    if store_frozen_in_bf16(model, accelerator, keep) and cfg.lora_rank:
        autocast_adapter_inputs(model)

    # 2. data
    skipped: list[str] = []
    if cfg.data:
        train_set, skipped = ChatDataset.from_jsonl(cfg.data, positions, cfg.skip_bad_rows, cfg.images_outside)
    elif cfg.dataset is not None:
        train_set = HFChatDataset(load_hf_dataset(cfg.dataset, cfg.dataset_split))
    else:
        chats = ChatDataset.from_jsonl(cfg.chat_data, positions, images_outside=cfg.images_outside)[0] if cfg.chat_data else None
        train_set = AssemblyMixture(cfg.mixture_examples, "train", cfg.data_seed, config.image_size,
                                    cfg.mixture_weights, positions, cfg.guide_overview, cfg.wording, chats)
    eval_set = None
    if cfg.eval_data:
        eval_set, eval_skipped = ChatDataset.from_jsonl(cfg.eval_data, positions, cfg.skip_bad_rows, cfg.images_outside)
        skipped += eval_skipped
    elif not cfg.data and cfg.dataset is None and cfg.eval_examples:
        eval_set = AssemblyMixture(cfg.eval_examples, "validation", cfg.data_seed, config.image_size,
                                   cfg.mixture_weights, positions, cfg.guide_overview, cfg.wording, chats)
    if skipped:
        accelerator.print(f"skipped {len(skipped)} bad rows, the first: {skipped[0]}")
    collate = ChatCollator(processor, cfg.max_length)
    n_proc = accelerator.num_processes
    length = getattr(train_set, "length", None) if cfg.length_grouping else None
    train_loader = make_loader(train_set, min(cfg.batch_size, len(train_set)),
                               cfg.max_steps * cfg.gradient_accumulation_steps * n_proc, cfg.seed, cfg.num_workers,
                               collate, length, cfg.group_batches)
    eval_loader = None
    if eval_set is not None:
        eval_loader = make_loader(eval_set, min(cfg.batch_size, len(eval_set)), cfg.eval_batches * n_proc,
                                  cfg.seed + 1, cfg.num_workers, collate)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    accelerator.print(f"model: {trainable:,} trainable parameters, {config.image_size} px images; "
                      f"{len(train_set):,} training examples")

    # 3. optimisation of DESIGN.md §4's loss, its three parts logged (loop.py: prepare for the launch
    # configuration, resume if asked, then accumulate, clip, step, log, evaluate and checkpoint)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    loop = train_loop(cfg, accelerator, model, optimizer, scheduler, train_loader,
                      ChatLosses(config.image_start_token_id, cfg.context_dropout), name="train_vlm",
                      data_info={"train_examples": len(train_set), "skipped_rows": len(skipped)},
                      eval_loader=eval_loader, eval_losses=ChatLosses(config.image_start_token_id))

    # 4. the trained model with its processor
    state = accelerator.get_state_dict(loop.model)
    trained = accelerator.unwrap_model(loop.model)
    saved = {}
    if accelerator.is_main_process:
        if cfg.lora_rank and trained.get_base_model().config.base_llm:  # only what training changed
            with folder_written_whole(out / "adapter") as tmp:
                save_adapter_package(trained, tmp, state_dict=state)
            saved["adapter"] = out / "adapter"
        else:
            model_out = copy.deepcopy(trained).merge_and_unload() if cfg.lora_rank else trained  # keep the returned one
            with folder_written_whole(out / "model") as tmp:
                model_out.save_pretrained(tmp, state_dict=None if cfg.lora_rank else state)
            saved["model"] = out / "model"
    accelerator.wait_for_everyone()
    return TrainingResult(trained, loop.progress.step, out, saved, loop.eval_metrics)


if __name__ == "__main__":
    run_cli(VLMTrainingConfig, main, description=__doc__.split("\n\n")[0])
