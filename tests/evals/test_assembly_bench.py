"""evals/assembly_bench.py: the scores of one story (ground truth, damaged pictures, a tiny model's
pictures at 32 px), the JSON of a whole sweep on a tiny random model, and the exit without a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hart_vlm.data.assembly import generate_guide, plan_guide
from tests.evals import load_eval

RES = 32


@pytest.fixture(scope="module")
def bench():
    return load_eval("assembly_bench")


@pytest.fixture(scope="module")
def tiny_run(bench, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    paths = {"json": out / "bench.json", "plot": out / "bench.png", "md": out / "RESULTS.md"}
    # A random model never writes an end-of-step sentence: force an image after every token; and
    # sample its text (greedy, generate_story's default, it may end the answer at once).
    result = bench.main(["--model", str(tiny_model_dir), "--num", "2", "--cfg", "0", "2", "--max-new-tokens", "12",
                         "--temperature", "0.7", "--force-image-after", r"\S\s*$", "--json", str(paths["json"]), "--plot", str(paths["plot"]),
                         "--results-md", str(paths["md"])])
    return result, paths


def test_ground_truth_scores_perfectly(bench):
    guide = generate_guide(0, split="heldout", seed=0, resolution=RES)
    story = bench.score_story(guide, [(s.text, s.image) for s in guide.steps], RES, tolerance=0.0)
    assert story["order_valid"] and story["complete"] and story["step_count_match"]
    assert story["valid_step_rate"] == story["image_rate"] == 1.0 and story["miscounted_step_rate"] == 0.0
    assert story["iou"] == 1.0 and story["psnr"] == 100.0 and story["ssim"] == pytest.approx(1.0)
    assert story["consistency"] == 1.0 and story["material_accuracy"] == 1.0
    assert story["drawn_materials"] == [guide.plan.material] * len(guide.steps)


def test_parts_that_move_lower_the_consistency(bench):
    guide = generate_guide(3, split="heldout", seed=0, resolution=RES)  # a nightstand: broad panels
    steps = [(s.text, s.image) for s in guide.steps]
    k = len(steps) - 1
    shifted = Image.fromarray(np.roll(np.asarray(steps[k][1]), 6, axis=1))
    damaged = bench.score_story(guide, steps[:k] + [(steps[k][0], shifted)], RES, tolerance=24.0)
    assert damaged["consistency"] < 1.0 and damaged["iou"] < 1.0
    # steps without pictures keep the texts' verdicts and drop the image metrics
    blind = bench.score_story(guide, [(text, None) for text, _ in steps], RES, tolerance=24.0)
    assert blind["order_valid"] and blind["image_rate"] == 0.0
    assert blind["iou"] is blind["psnr"] is blind["consistency"] is blind["material_accuracy"] is None


def test_a_step_that_counts_the_true_piece_wrong_is_counted(bench):
    from hart_vlm.data.assembly.phrasing import NUMBERS

    guide = next(g for g in (generate_guide(i, split="heldout", seed=0, resolution=RES) for i in range(40))
                 if "legs" in g.furniture.part_names)
    legs = len(guide.furniture.part("legs").boxes)
    steps = [(s.text, None) for s in guide.steps]
    right = bench.score_story(guide, [(f"Stand the {NUMBERS[legs]} legs up.", None)] + steps[1:], RES, 24.0)
    wrong = bench.score_story(guide, [(f"Stand the {NUMBERS[legs + 1]} legs up.", None)] + steps[1:], RES, 24.0)
    assert right["miscounted_step_rate"] == 0.0 and wrong["miscounted_step_rate"] == pytest.approx(1 / len(steps))
    assert bench.aggregate([right, wrong])["miscounted_step_rate"] == pytest.approx(0.5 / len(steps))


def test_the_plan_verdict_tells_a_wrong_plan_from_steps_that_leave_a_right_one(bench):
    guide = generate_guide(3, split="heldout", seed=0, resolution=RES)
    steps = [(s.text, None) for s in guide.steps]
    overview = guide.plan.overview
    right = bench.score_story(guide, steps, RES, tolerance=24.0, intro=overview)
    assert right["plan_valid"] and right["follows_plan"] and right["intro"] == overview
    strayed = bench.score_story(guide, steps[:-1], RES, tolerance=24.0, intro=overview)
    assert strayed["plan_valid"] and strayed["follows_plan"] is False
    items = overview.removeprefix("Overview: ").rstrip(".").split("; ")
    backwards = "Overview: " + "; ".join(f"({k}) {item.split(') ', 1)[1]}" for k, item in
                                         enumerate(reversed(items), 1)) + "."
    wrong = bench.score_story(guide, steps, RES, tolerance=24.0, intro=backwards)
    assert wrong["plan_valid"] is False and wrong["follows_plan"] is None
    none = bench.score_story(guide, steps, RES, tolerance=24.0)
    assert none["plan_valid"] is none["follows_plan"] is None
    rows = bench.aggregate([right, strayed, wrong, none])
    assert rows["plan_valid_rate"] == 0.5 and rows["follows_plan_rate"] == 0.5
    assert bench.aggregate([none])["plan_valid_rate"] is None


def test_a_tiny_models_pictures_are_scored_at_its_resolution(bench, tiny_model_dir):
    from hart_vlm import HartVLM

    model = HartVLM.from_pretrained(tiny_model_dir).eval()
    guide = generate_guide(2, split="heldout", seed=0, resolution=model.config.image_size)
    images = model.chat([[{"role": "user", "content": [{"type": "text", "text": guide.prompt}]}]] * 2, seed=0,
                        max_new_tokens=2, force_image_after="^", max_images=1)
    # the ground-truth texts with the model's 32 px pictures, then one step whose text adds nothing first
    steps = [(s.text, r.images[0]) for s, r in zip(guide.steps, images)]
    story = bench.score_story(guide, [("Unpack the box.", images[0].images[0])] + steps, RES, tolerance=24.0)
    assert story["steps_generated"] == 3 and not story["order_valid"]
    assert 0 <= story["iou"] <= 1 and 0 < story["psnr"] <= 100 and -1 <= story["ssim"] <= 1
    assert 0 <= story["consistency"] <= 1


def test_the_sweep_json_has_every_setting_and_rates_in_range(bench, tiny_run):
    result, paths = tiny_run
    saved = json.loads(paths["json"].read_text())
    assert saved["image_size"] == RES and saved["setup"]["num"] == 2 and saved["setup"]["cfg"] == [0.0, 2.0]
    settings = [(r["decoding"], r["cfg"], r["use_residual"], r["steps"]) for r in saved["rows"]]
    assert settings == [(d, c, u, m) for d in ("follow-plan", "free") for c in (0.0, 2.0) for u in (True, False)
                        for m in ("free", "given")]
    for row in saved["rows"]:
        assert row["stories"] == len(row["per_story"]) == 2
        for key in bench.RATES:
            assert 0.0 <= row[key] <= 1.0, key
        both = [s["order_valid"] and s["complete"] for s in row["per_story"]]
        assert row["valid_complete_rate"] == np.mean(both) <= min(row["valid_order_rate"], row["complete_rate"])
        for key in bench.IMAGE_METRICS:
            assert row[key] is None or np.isfinite(row[key])
            assert 0 <= row[f"{key}_stories"] <= 2
        for story in row["per_story"]:
            assert story["steps_true"] == len(generate_guide(story["index"], "heldout", 0, RES).steps)
            assert story["step_count_match"] == (story["steps_generated"] == story["steps_true"])
            assert isinstance(story["intro"], str)  # the text before "Step 1:" (an overview line), kept
            assert len(story["parts_added"]) == story["steps_generated"]
        assert row["image_rate"] > 0  # the forced images arrive
        assert row["seconds_per_story"] == pytest.approx(np.mean([s["seconds"] for s in row["per_story"]]))
        assert all(s["seconds"] > 0 for s in row["per_story"])
    assert {"cpu", "torch", "transformers"} <= set(saved["machine"])
    assert paths["plot"].stat().st_size > 0
    text = paths["md"].read_text()
    assert text.count("<!-- assembly_bench:") == 1 and "| decoding | CFG | residual head |" in text


def test_steps_picks_the_step_modes(bench, tiny_model_dir, tmp_path):
    paths = {"json": tmp_path / "bench.json", "plot": tmp_path / "bench.png"}
    bench.main(["--model", str(tiny_model_dir), "--num", "1", "--cfg", "0", "--steps", "free", "--max-new-tokens", "6",
                "--force-image-after", r"\S\s*$", "--temperature", "0", "--image-top-k", "5", "3",
                "--repetition-penalty", "1.1", "--diffusion-cfg", "1", "--diffusion-temperature", "0.5",
                "--wording", "unseen", "--decoding", "free", "--step-retries", "2", "--json", str(paths["json"])])
    assert paths["plot"].stat().st_size > 0  # no --plot: beside --json, never over the default run's plot
    saved = json.loads(paths["json"].read_text())
    assert saved["setup"]["step_modes"] == ["free"] and saved["setup"]["wording"] == "unseen"
    assert saved["setup"]["decodings"] == ["free"] and {r["decoding"] for r in saved["rows"]} == {"free"}
    assert saved["rows"][0]["per_story"][0]["prompt"] == plan_guide(0, "heldout", 0, wording="unseen").prompt
    assert saved["setup"]["sampling"]["temperature"] == 0.0  # greedy text, recorded with the results
    assert saved["setup"]["sampling"]["image_top_k"] == [5, 3]
    assert saved["setup"]["sampling"]["repetition_penalty"] == 1.1
    assert saved["setup"]["sampling"]["diffusion_cfg"] == 1.0
    assert saved["setup"]["sampling"]["diffusion_temperature"] == 0.5
    assert saved["setup"]["sampling"]["step_retries"] == 2
    assert [(r["use_residual"], r["steps"]) for r in saved["rows"]] == [(True, "free"), (False, "free")]


@pytest.mark.parametrize("flag, values", [("--temperature", ["-1"]), ("--top-p", ["0"]), ("--top-p", ["1.5"]),
                                          ("--repetition-penalty", ["0"]), ("--image-top-k", ["-1", "100"]),
                                          ("--diffusion-cfg", ["-1"]), ("--diffusion-temperature", ["-0.5"]),
                                          ("--step-retries", ["-1"])])
def test_bad_sampling_flags_are_refused(bench, tiny_model_dir, capsys, flag, values):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--model", str(tiny_model_dir), "--num", "1", flag, *values])
    assert exit_info.value.code == 2 and flag in capsys.readouterr().err


def test_without_a_model_it_exits_with_status_2(bench, monkeypatch, capsys):
    import hart_vlm.default_model

    monkeypatch.setattr(hart_vlm.default_model, "has_default_model", lambda name="tiny": False)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--num", "1"])
    assert exit_info.value.code == 2
    assert "no model to evaluate" in capsys.readouterr().err
