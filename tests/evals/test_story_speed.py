"""evals/story_speed.py: every model and dtype is timed and the results file is written."""

import json

import torch

import hart_vlm
from hart_vlm import HartVLM
from tests.evals import load_eval


def test_story_speed_times_each_dtype(tiny_model_dir, tmp_path, monkeypatch):
    loaded = []

    def load(name, dtype):
        loaded.append(dtype)
        return HartVLM.from_pretrained(tiny_model_dir).to(dtype)

    monkeypatch.setattr(hart_vlm, "load_default", load)
    out = tmp_path / "speed.json"
    result = load_eval("story_speed").main(["--models", "tiny", "--dtypes", "float32", "bfloat16", "--stories", "1",
                                            "--json", str(out), "--prompt", "How do I build a pine stool?"])
    assert loaded == [torch.float32, torch.bfloat16]
    assert [(row["dtype"], len(row["seconds"])) for row in result["rows"]] == [("float32", 1), ("bfloat16", 1)]
    assert {row["products"] for row in result["rows"]} == {"as the weights"}  # no bf16_products without "auto"
    assert all(row["median"] > 0 for row in result["rows"])
    # the backbone's passes were counted for every story
    assert all(row["passes"][0] > 0 and row["ms_per_pass"] > 0 for row in result["rows"])
    assert json.loads(out.read_text())["rows"][1]["dtype"] == "bfloat16"
