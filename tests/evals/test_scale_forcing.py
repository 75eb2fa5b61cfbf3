"""evals/scale_forcing.py on a tiny random model: copied codes give back the render's own decoding,
the cached context reproduces the full-sequence forward, and the JSON / table / flags."""

from __future__ import annotations

import json

import pytest
import torch

from hart_vlm.data.assembly import generate_guide
from tests.evals import load_eval


@pytest.fixture(scope="module")
def forcing():
    return load_eval("scale_forcing")


@pytest.fixture(scope="module")
def tiny_run(forcing, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("forcing")
    paths = {"json": out / "forcing.json", "plot": out / "forcing.png", "md": out / "RESULTS.md"}
    result = forcing.main(["--model", str(tiny_model_dir), "--num", "2", "--cfg", "2", "--json", str(paths["json"]),
                           "--plot", str(paths["plot"]), "--results-md", str(paths["md"])])
    return result, paths


def test_copying_every_scale_without_the_head_is_the_renders_discrete_decoding(tiny_run):
    result, _ = tiny_run
    K = len(result["scales"])
    assert result["setup"]["forced"] == list(range(K + 1))
    all_copied = next(r for r in result["rows"] if r["forced_scales"] == K and not r["use_residual"])
    discrete = result["references"]["discrete"]
    assert all_copied["iou"] == pytest.approx(discrete["iou"])
    assert all_copied["psnr"] == pytest.approx(discrete["psnr"])
    assert all_copied["material"] == discrete["material"]


def test_the_json_table_and_section_hold_every_row(forcing, tiny_run):
    result, paths = tiny_run
    saved = json.loads(paths["json"].read_text())
    K = len(saved["scales"])
    assert [(r["forced_scales"], r["use_residual"]) for r in saved["rows"]] == [
        (f, head) for f in range(K + 1) for head in (True, False)]
    for row in saved["rows"] + list(saved["references"].values()):
        assert len(row["per_story"]) == 2 and 0 <= row["iou"] <= 1 and row["psnr"] > 0
        assert row["material"] is None or 0 <= row["material"] <= 1
    assert len(saved["code_match_free"]) == K and all(0 <= m <= 1 for m in saved["code_match_free"])
    assert {"cpu", "torch", "transformers"} <= set(saved["machine"])
    assert paths["plot"].stat().st_size > 0
    text = paths["md"].read_text()
    assert text.count("<!-- scale_forcing:") == 1 and "| scales copied from the render |" in text
    assert "| material |" in text


def test_the_cached_context_gives_the_codes_of_the_full_sequence_forward(forcing, tiny_model_dir):
    """Greedy, no guidance, every scale but the last copied: the last scale's codes are the argmax of
    the image logits that HartVLM.forward computes on the whole true conversation."""
    from hart_vlm import HartVLM
    from hart_vlm.sampling import SamplingConfig

    model = HartVLM.from_pretrained(tiny_model_dir).eval()
    K = model.layout.num_scales
    guide = generate_guide(1, "heldout", 0, model.config.image_size)
    batch = model.processor(guide.to_messages(overview=True))
    input_ids, pixels = batch["input_ids"], batch["pixel_values"]
    starts = (input_ids[0] == model.vocab.image_start_id).nonzero()[:, 0].tolist()
    with torch.no_grad():
        logits = model(input_ids, pixel_values=pixels).image_logits  # (N, num_codes, V): code c at <|image_start|> + c
        enc = model.image_tokenizer.encode(pixels)
    sampling = SamplingConfig.from_kwargs(cfg=0, use_residual=False, image_top_k=(1, 1))
    j = 1  # the second step: its context holds the first step's picture
    gen = forcing.forcing_generator(model, sampling, torch.Generator().manual_seed(0), [0, K - 1])
    gen.true_codes = [codes[j] for codes in enc.indices]
    with torch.no_grad():
        images = gen.draw_all(input_ids[:, :starts[j]], pixels[:j])
    assert len(images) == 2
    last = model.layout.input_block(K - 1)
    expected = logits[j, 1 + last.start: 1 + last.stop].argmax(-1)
    assert torch.equal(gen.drawn[K - 1][1], expected)
    for k in range(K - 1):  # the copied scales
        assert torch.equal(gen.drawn[k][1], gen.true_codes[k])
    # the first scale of the uncopied row is the argmax at <|image_start|>
    assert torch.equal(gen.drawn[0][0], logits[j, :1].argmax(-1))


def test_sampling_flags_reach_the_run_and_its_record(forcing, tiny_model_dir, tmp_path):
    paths = {"json": tmp_path / "f.json", "plot": tmp_path / "f.png"}
    result = forcing.main(["--model", str(tiny_model_dir), "--num", "1", "--forced", "0", "--image-top-k", "1", "1",
                           "--image-top-k-switch", "2", "--diffusion-cfg", "0", "--diffusion-temperature", "0",
                           "--json", str(paths["json"]), "--plot", str(paths["plot"])])
    saved = json.loads(paths["json"].read_text())
    assert saved["setup"]["sampling"] == {"image_top_k": [1, 1], "image_top_k_switch": 2, "diffusion_cfg": 0.0,
                                          "diffusion_temperature": 0.0}
    assert [(r["forced_scales"], r["use_residual"]) for r in result["rows"]] == [(0, True), (0, False)]


@pytest.mark.parametrize("context", ["true", "own"])
def test_the_earlier_pictures_in_the_context_are_the_renders_or_the_models_own(forcing, tiny_model_dir, monkeypatch,
                                                                               context):
    from hart_vlm import HartVLM

    model = HartVLM.from_pretrained(tiny_model_dir).eval()
    guide = generate_guide(0, "heldout", 0, model.config.image_size)
    renders = model.processor(guide.to_messages(overview=True))["pixel_values"]
    seen, drawn = [], []  # per draw: the context pictures given, the pictures returned
    make = forcing.forcing_generator

    def recording(*args, **kwargs):
        gen = make(*args, **kwargs)
        draw = gen.draw_all

        def recorded_draw(input_ids, pixel_values):
            images = draw(input_ids, pixel_values)
            seen.append(pixel_values)
            drawn.append(images)
            return images

        gen.draw_all = recorded_draw
        return gen

    monkeypatch.setattr(forcing, "forcing_generator", recording)
    forcing.evaluate(model, [guide], [0, 2], cfg=2.0, seed=0, overview=True, context=context)
    n = len(guide.steps)
    assert n > 1 and len(seen) == 2 * n  # residual head on, then off
    for head in range(2):
        calls = range(head * n, (head + 1) * n)
        assert seen[calls[0]] is None
        for j, call in enumerate(calls):
            if j == 0:
                continue
            if context == "true":
                expected = renders[:j]
            else:  # the F = 0 pictures of the same head setting, as the processor reads a picture
                expected = torch.stack([model.processor.load_image(drawn[c][0]) for c in calls[:j]])
            assert torch.equal(seen[call], expected)


@pytest.mark.parametrize("flags", [["--forced", "-1"], ["--forced", "99"], ["--cfg", "-1"], ["--num", "0"],
                                   ["--diffusion-cfg", "-1"], ["--diffusion-temperature", "-1"],
                                   ["--image-top-k", "-1", "5"], ["--image-top-k-switch", "-1"], ["--context", "mine"]])
def test_bad_flags_are_refused(forcing, tiny_model_dir, capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        forcing.main(["--model", str(tiny_model_dir), *flags])
    assert exit_info.value.code == 2 and flags[0] in capsys.readouterr().err
