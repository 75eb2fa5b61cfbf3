"""Shared helpers of the recipe tests: recipes imported by path and run in-process, a tiny saved
HartVLM and a small instruction file (held-out assembly guides at 32 px)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from hart_vlm import HartVLM, HartVLMConfig, HartVLMProcessor
from hart_vlm.data.assembly import write_jsonl
from hart_vlm.text_tokenizer import load_text_tokenizer
from hart_vlm.training.config import parse_config
from tests import load_script

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "training" / "configs"


def load_recipe(name: str):
    """training/<name>.py as a module (registered, so its dataclasses resolve their annotations)."""
    return load_script(f"training/{name}.py", f"_recipe_{name}")


CONFIG_CLASSES = {"train_tokenizer": "TokenizerTrainingConfig", "train_vlm": "VLMTrainingConfig",
                  "finetune_lora": "LoraTrainingConfig"}


def run_recipe(name: str, args: list[str]):
    """Parse `args` as the recipe's command line and run its main() in this process."""
    recipe = load_recipe(name)
    cfg = parse_config(getattr(recipe, CONFIG_CLASSES[name]), ["--progress", "false", *args])
    AcceleratorState._reset_state(reset_partial_state=True)  # a fresh Accelerator per run
    GradientState._reset_state()
    return recipe.main(cfg)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A tiny random HartVLM (32 px images) saved with its processor."""
    tokenizer = load_text_tokenizer()
    config = HartVLMConfig.from_preset("tiny", tokenizer=tokenizer)
    torch.manual_seed(0)
    model = HartVLM(config)
    model.processor = HartVLMProcessor(tokenizer, config)
    path = tmp_path_factory.mktemp("tiny_vlm")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def instructions(tmp_path_factory) -> Path:
    """8 rows: 4 held-out guides and 4 caption examples, images as PNG files beside the JSONL."""
    return write_jsonl(tmp_path_factory.mktemp("instructions"), 4, split="heldout", resolution=32,
                       include_captions=True)
