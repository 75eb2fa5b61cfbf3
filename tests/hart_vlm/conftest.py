"""Shared fixtures of the unified-model tests: tiny random models on the shipped text tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hart_vlm import HartVLM, HartVLMConfig, HartVLMProcessor
from hart_vlm.text_tokenizer import load_text_tokenizer

QWEN2_TINY = dict(
    model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
)


@pytest.fixture(scope="session")
def text_tokenizer():
    return load_text_tokenizer()


def build_tiny(text_tokenizer, backbone: str = "llama", attn: str = "sdpa", seed: int = 0, **overrides) -> HartVLM:
    text_config = dict(QWEN2_TINY) if backbone == "qwen2" else {}
    cfg = HartVLMConfig.from_preset("tiny", tokenizer=text_tokenizer, text_config=text_config, **overrides)
    torch.manual_seed(seed)
    model = HartVLM(cfg)
    model.backbone.set_attn_implementation(attn)
    model.processor = HartVLMProcessor(text_tokenizer, cfg)
    return model.eval()


@pytest.fixture(scope="session")
def default_model():
    """The packaged default model (load_default()), loaded once per test session."""
    import hart_vlm

    return hart_vlm.load_default()


@pytest.fixture
def tiny_model(text_tokenizer):
    return build_tiny(text_tokenizer)


def random_image(seed: int, size: tuple[int, int] = (40, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def interleaved_conversation(seed: int = 0) -> list[dict]:
    """A user question with an input image, answered with two steps of text and image."""
    return [
        {"role": "user", "content": [{"type": "text", "text": "How do I build this stool?"},
                                     {"type": "image", "image": random_image(seed)}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Step 1: Attach the four legs to the seat."},
            {"type": "image", "image": random_image(seed + 1)},
            {"type": "text", "text": "Step 2: Fix the footrest between the legs."},
            {"type": "image", "image": random_image(seed + 2)},
        ]},
    ]


# Debian's Chromium, driven by Playwright (which never downloads a browser of its own here)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def launch_chromium(playwright):
    """A headless Chromium that fetches nothing it is not told to."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
