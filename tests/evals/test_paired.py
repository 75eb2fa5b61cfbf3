"""evals/paired.py: two benchmark runs compared story by story."""

from __future__ import annotations

import json

import pytest

from tests.evals import load_eval

paired = load_eval("paired")


def run(tmp_path, name, ious, prompts=None):
    stories = [{"index": i, "prompt": (prompts or [f"p{j}" for j in range(len(ious))])[i], "iou": iou,
                "material_accuracy": 0.5, "consistency": None, "psnr": 20.0 + iou, "order_valid": True,
                "complete": i > 0} for i, iou in enumerate(ious)]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"rows": [{"per_story": stories}]}))
    return path


def test_a_paired_comparison_of_two_runs(tmp_path):
    before = paired.stories(run(tmp_path, "a", [0.1 * i for i in range(10)]), 0)
    after = paired.stories(run(tmp_path, "b", [0.1 * i + 0.05 for i in range(10)]), 0)
    rows = {name: rest for name, *rest in paired.compare(before, after)}
    assert rows["part IoU"][0] == "0.450 → 0.500" and float(rows["part IoU"][1]) < 0.01
    assert rows["material"][1] == "1"  # no difference at all
    assert "consistency" not in rows  # no story has it
    assert rows["valid and complete"][0] == "9 → 9 of 10"
    with pytest.raises(SystemExit, match="same prompts"):
        paired.compare(before, paired.stories(run(tmp_path, "c", [0.0] * 10, [f"q{j}" for j in range(10)]), 0))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit, match="not an assembly benchmark result"):
        paired.stories(tmp_path / "bad.json", 0)
