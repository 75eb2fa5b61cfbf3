"""Train HART's hybrid tokenizer (HART §3.1) on a folder of images, a `datasets` dataset, renders of
the procedural assembly data and/or crops of the photographs that ship with scikit-image.

    python training/train_tokenizer.py --config training/configs/tokenizer_tiny.yaml --max-steps 3
    accelerate launch --config_file training/configs/accelerate/ddp.yaml training/train_tokenizer.py \
        --config training/configs/tokenizer_default.yaml --output-dir runs/tokenizer_default

Stages, by optimizer step:
- until `hybrid_start_step`: discrete-only training of everything (VAR's tokenizer: the decoder
  sees f_hat, the encoder gets the straight-through gradient, the codebook the VQ loss);
- from `hybrid_start_step`: HART's alternation, the decoder sees the discrete-only latent or the
  full continuous one with p = `continuous_prob`; with the config's `freeze_codebook_for_hybrid`
  the encoder and codebook stay frozen, as in HART's second stage;
- from `gan_start_step` (with `discriminator: true`): the PatchGAN hinge losses.
Writes output_dir/model (`HybridTokenizer.save_pretrained`, what train_vlm's --hart-tokenizer
reads), output_dir/checkpoints/, output_dir/metrics.jsonl and output_dir/config.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import set_seed
from torch.utils.data import ConcatDataset

from hart.discriminator import PatchDiscriminator
from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig
from hart_vlm.default_model import load_image_tokenizer
from hart_vlm.training.batching import make_loader
from hart_vlm.training.checkpoint import folder_written_whole
from hart_vlm.training.config import TrainingConfig, option, run_cli, save_config
from hart_vlm.training.data import load_hf_dataset
from hart_vlm.training.images import EVAL_PHOTOS, TRAIN_PHOTOS, AssemblyImages, HFImages, ImageFolder, PhotoCrops
from hart_vlm.training.loop import train_loop
from hart_vlm.training.runtime import TrainingResult, make_accelerator, make_optimizer, make_scheduler
from hart_vlm.training.tokenizer_objective import TokenizerObjective


@dataclass
class TokenizerTrainingConfig(TrainingConfig):
    tokenizer_preset: str | None = option("tiny", "HybridTokenizerConfig preset of a tokenizer trained from scratch")
    tokenizer_overrides: dict = option({}, "HybridTokenizerConfig fields replacing the preset's (or the defaults')")
    init_from: str | None = option(
        None, "start from this tokenizer instead: a tokenizer folder (own or official HART), a saved HartVLM "
              "folder (its image tokenizer) or `default` (the embedded default model's)")
    image_folder: str | None = option(None, "train on every image under this folder")
    dataset: str | None = option(None, "train on a datasets folder (save_to_disk) or dataset name")
    dataset_split: str = option("train", "split of `dataset`")
    dataset_image_column: str = option("image", "the column of `dataset` holding the images")
    assembly_images: int = option(10000, "renders of the procedural assembly data to train on (0: none)")
    photo_crops: int = option(0, "random crops of scikit-image's photographs to train on (0: none)")
    data_seed: int = option(0, "seed of the assembly renders and of the photo crops")
    eval_assembly_images: int = option(32, "validation-split renders to evaluate on (0: none)")
    eval_photo_crops: int = option(0, "crops of a held-out photograph to evaluate on (0: none)")
    continuous_prob: float = option(0.5, "hybrid stage: probability that the decoder sees the continuous latent")
    hybrid_start_step: int = option(0, "first step of the hybrid stage (steps before it train discrete-only)")
    discriminator: bool = option(False, "train with a PatchGAN discriminator")
    gan_start_step: int = option(0, "first step of the adversarial losses (the GAN warm-up ends here)")
    adversarial_weight: float = option(0.1, "weight of the generator hinge loss in the tokenizer's loss")
    discriminator_channels: int = option(64, "PatchGAN base width (ndf)")
    discriminator_layers: int = option(3, "PatchGAN strided blocks")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_from is not None and self.tokenizer_overrides:
            raise ValueError("tokenizer_overrides cannot change the architecture of an init_from tokenizer")
        if not (self.image_folder or self.dataset or self.assembly_images or self.photo_crops):
            raise ValueError("no training images: set image_folder, dataset, assembly_images or photo_crops")
        for name in ("assembly_images", "photo_crops", "eval_assembly_images", "eval_photo_crops",
                     "hybrid_start_step", "gan_start_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.continuous_prob <= 1.0:
            raise ValueError(f"continuous_prob must be in [0, 1], got {self.continuous_prob}")
        if self.adversarial_weight < 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {self.adversarial_weight}")


def main(cfg: TokenizerTrainingConfig) -> TrainingResult:
    accelerator = make_accelerator(cfg)
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")

    # 1. the tokenizer (and discriminator), initialised identically on every process
    set_seed(cfg.seed)
    if cfg.init_from is not None:
        tokenizer = load_image_tokenizer(cfg.init_from).requires_grad_(True)  # a HartVLM keeps it frozen
    else:
        preset = HybridTokenizerConfig.from_preset(cfg.tokenizer_preset).to_dict() if cfg.tokenizer_preset else {}
        tokenizer = HybridTokenizer(HybridTokenizerConfig.from_dict({**preset, **cfg.tokenizer_overrides}))
    discriminator = PatchDiscriminator(3, cfg.discriminator_channels, cfg.discriminator_layers) if cfg.discriminator else None
    model = TokenizerObjective(tokenizer, discriminator).train()
    size = tokenizer.config.image_size

    # 2. images
    sources = []
    if cfg.image_folder:
        sources.append(ImageFolder(cfg.image_folder, size))
    if cfg.dataset:
        sources.append(HFImages(load_hf_dataset(cfg.dataset, cfg.dataset_split, cfg.dataset_image_column), size,
                                cfg.dataset_image_column))
    if cfg.assembly_images:
        sources.append(AssemblyImages(cfg.assembly_images, size, "train", cfg.data_seed))
    if cfg.photo_crops:
        sources.append(PhotoCrops(cfg.photo_crops, size, TRAIN_PHOTOS, cfg.data_seed))
    train_set = ConcatDataset(sources)
    n_proc = accelerator.num_processes
    train_loader = make_loader(train_set, cfg.batch_size, cfg.max_steps * cfg.gradient_accumulation_steps * n_proc,
                               cfg.seed, cfg.num_workers)
    eval_sources = []
    if cfg.eval_assembly_images:
        eval_sources.append(AssemblyImages(cfg.eval_assembly_images, size, "validation", cfg.data_seed))
    if cfg.eval_photo_crops:
        eval_sources.append(PhotoCrops(cfg.eval_photo_crops, size, EVAL_PHOTOS, cfg.data_seed))
    eval_loader = None
    if eval_sources:
        eval_set = ConcatDataset(eval_sources)
        eval_loader = make_loader(eval_set, min(cfg.batch_size, len(eval_set)), cfg.eval_batches * n_proc, cfg.seed + 1)
    accelerator.print(f"tokenizer: {sum(p.numel() for p in tokenizer.parameters()):,} parameters, {size} px, "
                      f"scales {tokenizer.config.v_patch_nums}; {len(train_set):,} training images")

    # 3. optimisation (loop.py: prepare for the launch configuration, resume if asked, then
    # accumulate, clip, step, log, evaluate and checkpoint); the stages follow the optimizer step
    def compute_losses(model, images, generator, step):
        continuous_prob = cfg.continuous_prob if step >= cfg.hybrid_start_step else 0.0
        adversarial_weight = cfg.adversarial_weight if cfg.discriminator and step >= cfg.gan_start_step else 0.0
        return model(images, generator, continuous_prob, adversarial_weight)

    def eval_losses(model, images, generator, step):  # both decoder branches, whatever the stage
        discrete = model(images, generator, continuous_prob=0.0)["reconstruction"]
        hybrid = model(images, generator, continuous_prob=1.0)["reconstruction"]
        return {"discrete_mse": discrete, "hybrid_mse": hybrid}

    def with_psnr(metrics):  # images span [-1, 1]: peak-to-peak 2, PSNR = 10 log10(2² / MSE)
        psnr = {f"{b}_psnr": 10 * math.log10(4.0 / max(metrics[f"{b}_mse"], 1e-12)) for b in ("discrete", "hybrid")}
        return {**metrics, **psnr}

    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    loop = train_loop(cfg, accelerator, model, optimizer, scheduler, train_loader, compute_losses, name="tokenizer",
                      data_info={"train_examples": len(train_set)}, eval_loader=eval_loader, eval_losses=eval_losses,
                      summarize_eval=with_psnr)

    # 4. the trained tokenizer, as HybridTokenizer.save_pretrained writes it
    state = accelerator.get_state_dict(loop.model)
    trained = accelerator.unwrap_model(loop.model)
    saved = {}
    if accelerator.is_main_process:
        export = HybridTokenizer(trained.tokenizer.config)
        export.load_state_dict({k.removeprefix("tokenizer."): v for k, v in state.items() if k.startswith("tokenizer.")})
        with folder_written_whole(out / "model") as tmp:
            export.save_pretrained(tmp)
        saved["model"] = out / "model"
    accelerator.wait_for_everyone()
    return TrainingResult(trained, loop.progress.step, out, saved, loop.eval_metrics)


if __name__ == "__main__":
    run_cli(TokenizerTrainingConfig, main, description=__doc__.split("\n\n")[0])
