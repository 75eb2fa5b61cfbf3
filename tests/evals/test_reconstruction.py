"""evals/reconstruction.py on a tiny random HybridTokenizer: the table's rows and fields, hybrid ==
continuous (HART's exact extraction), the JSON and plot it writes, and the exit without a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig
from tests.evals import load_eval

NUM = 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    reconstruction = load_eval("reconstruction")
    out = tmp_path_factory.mktemp("reconstruction")
    torch.manual_seed(0)
    HybridTokenizer(HybridTokenizerConfig.from_preset("tiny")).save_pretrained(out / "tokenizer")
    paths = {"json": out / "rec.json", "plot": out / "rec.png", "md": out / "RESULTS.md"}
    result = reconstruction.main(["--tokenizer", str(out / "tokenizer"), "--num", str(NUM), "--batch-size", "2",
                                  "--json", str(paths["json"]), "--plot", str(paths["plot"]),
                                  "--results-md", str(paths["md"])])
    return reconstruction, result, paths


def test_three_rows_per_image_set_with_their_fields(tiny_run):
    reconstruction, result, paths = tiny_run
    assert result["image_size"] == 32 and result["tokenizer"]["v_patch_nums"] == [1, 2, 3, 4]
    assert list(result["sets"]) == ["assembly_heldout", "photos"]
    for name, s in result["sets"].items():
        assert [r["decoding"] for r in s["rows"]] == list(reconstruction.DECODINGS)
        for r in s["rows"]:
            assert r["images"] == name and r["count"] == NUM
            assert np.isfinite(r["psnr"]) and r["psnr"] > 0 and r["psnr_std"] >= 0
            assert -1 <= r["ssim"] <= 1 and r["ssim_std"] >= 0
    saved = json.loads(paths["json"].read_text())
    assert saved["sets"] == json.loads(json.dumps(result["sets"]))
    assert {"cpu", "torch", "transformers", "device"} <= set(saved["machine"])
    assert paths["plot"].stat().st_size > 0


def test_hybrid_equals_continuous_and_differs_from_discrete_only(tiny_run):
    _, result, _ = tiny_run
    for s in result["sets"].values():
        by = {r["decoding"]: r for r in s["rows"]}
        assert s["hybrid_vs_continuous_max_abs"] < 1e-4
        assert by["hybrid"]["psnr"] == pytest.approx(by["continuous"]["psnr"], abs=1e-3)
        assert by["hybrid"]["ssim"] == pytest.approx(by["continuous"]["ssim"], abs=1e-4)
        # random weights: the residual is not zero, so dropping it changes the picture
        assert by["discrete"]["psnr"] != pytest.approx(by["hybrid"]["psnr"], abs=1e-6)
        assert s["gap_closed"]["psnr"] == pytest.approx(1.0, abs=1e-2)


def test_the_markdown_section_is_replaced_not_repeated(tiny_run):
    reconstruction, result, paths = tiny_run
    text = paths["md"].read_text()
    assert text.count("<!-- reconstruction:rec -->") == 1 and "| tokenizer | photos | discrete-only | 3 |" in text
    reconstruction.write_results_section(paths["md"], "reconstruction:rec", ["again"])
    text = paths["md"].read_text()
    assert text.count("<!-- reconstruction:rec -->") == 1 and "again" in text and "| photos |" not in text


def test_a_perfect_reconstruction_has_ssim_1_and_infinite_psnr():
    reconstruction = load_eval("reconstruction")

    class Identity:  # every decoding returns the input: PSNR infinite, SSIM 1
        quant_conv = torch.nn.Conv2d(1, 1, 1)

        def encode(self, images):
            return type("Enc", (), {"indices": images, "residual": None, "latent": images})()

        def decode(self, indices, residual=None):
            return indices

        def decode_latent(self, latent):
            return latent

    images = reconstruction.assembly_images(3, 32, seed=0)
    result = reconstruction.evaluate_set(Identity(), images, assembly_score=reconstruction.assembly_scorer(3, 32, seed=0))
    for d in reconstruction.DECODINGS:
        assert torch.allclose(result.ssim[d], torch.ones(3, dtype=result.ssim[d].dtype))
        assert torch.isinf(result.psnr[d]).all()
        # the render itself: every part in place where the checker expects it
        scored = result.iou[d][~result.iou[d].isnan()]
        assert scored.numel() >= 2 and torch.allclose(scored, torch.ones_like(scored))
        read = result.material[d][~result.material[d].isnan()]  # and drawn in the guide's own material
        assert read.numel() >= 2 and torch.equal(read, torch.ones_like(read))


def test_part_iou_falls_when_the_picture_loses_its_parts():
    reconstruction = load_eval("reconstruction")
    score = reconstruction.assembly_scorer(3, 32, seed=0)
    images = reconstruction.assembly_images(3, 32, seed=0)
    i = 2  # guide 2 at step 2: some parts are in place
    background = ((images[i] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    background[:] = background[0, 0]  # the corner's background colour everywhere
    from PIL import Image

    assert score(i, Image.fromarray(background)) == (0.0, None)  # no part, no material to read


def test_material_is_wrong_when_the_furniture_is_recoloured():
    from hart_vlm.data.assembly import MATERIALS, generate_guide, make_renderer

    reconstruction = load_eval("reconstruction")
    score = reconstruction.assembly_scorer(3, 128, seed=0)
    i = 2
    guide = generate_guide(i, split="heldout", seed=0, resolution=128)
    step = guide.steps[i % len(guide.steps)]
    iou, right = score(i, step.image)
    assert iou == 1.0 and right is True
    other = next(m for m in MATERIALS if m != guide.plan.material)
    renderer = make_renderer(guide.plan.furniture, other, guide.plan.view, 128)
    recoloured = renderer.render_states([[step.part_names.index(n) for n in step.state]])[0].image
    iou, right = score(i, recoloured)
    assert right is False


def test_photo_crops_and_images():
    reconstruction = load_eval("reconstruction")
    crops = reconstruction.photo_crops(np.zeros((30, 50, 3), dtype=np.uint8))
    assert len(crops) == 10 and crops[0].size == (30, 30) and all(c.size == (15, 15) for c in crops[1:])
    images = reconstruction.photo_images(12, 32)
    assert images.shape == (12, 3, 32, 32) and images.min() >= -1 and images.max() <= 1


def test_assembly_rows_carry_part_iou_and_photo_rows_do_not(tiny_run):
    _, result, _ = tiny_run
    for r in result["sets"]["assembly_heldout"]["rows"]:
        assert 0 <= r["iou"] <= 1 and r["iou_count"] >= 1
        assert r["material_count"] == 0 or 0 <= r["material_accuracy"] <= 1
    assert all("iou" not in r and "material_accuracy" not in r for r in result["sets"]["photos"]["rows"])


def test_a_baseline_is_evaluated_on_the_same_images_in_the_same_run(tmp_path):
    reconstruction = load_eval("reconstruction")
    torch.manual_seed(0)
    HybridTokenizer(HybridTokenizerConfig.from_preset("tiny")).save_pretrained(tmp_path / "a")
    torch.manual_seed(1)
    HybridTokenizer(HybridTokenizerConfig.from_preset("tiny")).save_pretrained(tmp_path / "b")
    common = ["--num", "2", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"),
              "--results-md", str(tmp_path / "R.md")]
    result = reconstruction.main(["--tokenizer", str(tmp_path / "a"), "--baseline", str(tmp_path / "b"), *common])
    alone = reconstruction.main(["--tokenizer", str(tmp_path / "b"), *common])
    assert result["baseline"]["source"] == "b" and result["baseline"]["argument"] == str(tmp_path / "b")
    assert result["baseline"]["sets"] == alone["sets"]  # same images, same numbers as a run of its own
    assert result["sets"] != alone["sets"]
    text = (tmp_path / "R.md").read_text()
    assert "| b | assembly_heldout |" in text  # the last run's section, the baseline's own
    lines = reconstruction.table(result).splitlines()
    assert lines[2].startswith("| b (baseline) |") and lines[-1].startswith("| a |")


def test_a_bad_baseline_exits_with_status_2(tmp_path, capsys):
    reconstruction = load_eval("reconstruction")
    torch.manual_seed(0)
    HybridTokenizer(HybridTokenizerConfig.from_preset("tiny")).save_pretrained(tmp_path / "a")
    with pytest.raises(SystemExit) as exit_info:
        reconstruction.main(["--tokenizer", str(tmp_path / "a"), "--baseline", str(tmp_path / "nowhere"), "--num", "1"])
    assert exit_info.value.code == 2 and "--baseline" in capsys.readouterr().err


def test_a_saved_model_is_read_through_its_tokenizer(tmp_path):
    from hart_vlm import HartVLM

    reconstruction = load_eval("reconstruction")
    torch.manual_seed(0)
    HartVLM.from_preset("tiny").save_pretrained(tmp_path / "model")
    result = reconstruction.main(["--model", str(tmp_path / "model"), "--num", "1", "--json", str(tmp_path / "r.json"),
                                  "--plot", str(tmp_path / "r.png")])
    assert result["source"] == "model" and result["image_size"] == 32
    assert (tmp_path / "r.json").is_file() and not (tmp_path / "RESULTS.md").exists()


def test_without_a_model_it_exits_with_status_2(monkeypatch, capsys):
    import hart_vlm.default_model

    reconstruction = load_eval("reconstruction")
    monkeypatch.setattr(hart_vlm.default_model, "has_default_model", lambda name="tiny": False)
    with pytest.raises(SystemExit) as exit_info:
        reconstruction.main(["--num", "1"])
    assert exit_info.value.code == 2
    assert "no model to evaluate" in capsys.readouterr().err
