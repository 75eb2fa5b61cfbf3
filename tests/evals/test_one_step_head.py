"""evals/one_step_head.py on a tiny random model with a one-step head: every setting, the timers put
back afterwards, and the exit for a model without one."""

from __future__ import annotations

import pytest
import torch

from hart_vlm import HartVLM
from hart_vlm.generation.pictures import PictureDrawer
from tests.evals import load_eval


def test_every_setting_is_run_and_the_drawer_is_restored(tmp_path):
    torch.manual_seed(0)
    HartVLM.from_preset("tiny", one_step_head=True).save_pretrained(tmp_path / "model")
    bench = load_eval("one_step_head")
    draw, sample_residual = PictureDrawer.draw, PictureDrawer.sample_residual
    result = bench.main(["--model", str(tmp_path / "model"), "--num", "1", "--json", str(tmp_path / "r.json"),
                         "--results-md", str(tmp_path / "RESULTS.md")])
    assert [r["setting"] for r in result["rows"]] == [label for label, _, _ in bench.SETTINGS]
    assert PictureDrawer.draw is draw and PictureDrawer.sample_residual is sample_residual
    assert all(r["picture_seconds"] >= r["head_seconds"] >= 0 for r in result["rows"])
    assert "<!-- one_step_head:" in (tmp_path / "RESULTS.md").read_text()


def test_a_model_without_a_one_step_head_is_refused(tiny_model_dir):
    with pytest.raises(SystemExit):
        load_eval("one_step_head").main(["--model", str(tiny_model_dir), "--num", "1"])
