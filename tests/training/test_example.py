"""examples/finetune_lora.py on a tiny saved model (the embedded default model does not exist yet)."""

from __future__ import annotations

import importlib.util
import json
import math

from hart_vlm.data.assembly import plan_guide

from .conftest import ROOT


def test_finetune_lora_example_tells_a_story_before_and_after(tmp_path, tiny_vlm_dir):
    spec = importlib.util.spec_from_file_location("_example_finetune_lora", ROOT / "examples" / "finetune_lora.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    losses = example.main(["--base", str(tiny_vlm_dir), "--examples", "4", "--steps", "4", "--lora-rank", "4",
                           "--learning-rate", "1e-2", "--out", str(tmp_path)])
    assert math.isfinite(losses["loss_before"]) and losses["loss_after"] < losses["loss_before"]
    for name in ("story_before", "story_after"):
        story = json.loads((tmp_path / name / "story.json").read_text())
        assert story["prompt"] == plan_guide(4, "heldout").prompt  # held out: not among the 4 training guides
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "lora" / "merged" / "config.json").is_file()
