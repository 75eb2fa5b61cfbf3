"""The speed benchmark (evals/speed.py) on the tiny preset: fields of its JSON, its tables and its
last line. No timing asserts: only structure and the counts that do not depend on the machine."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import torch

from tests.evals import load_eval

LAST_LINE = re.compile(r"^next-scale vs raster: \d+\.\dx; vs diffusion: \d+\.\dx$")
DIT_STEPS = 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """All methods on the tiny preset, in process, one timed call per batch size."""
    speed = load_eval("speed")
    out = tmp_path_factory.mktemp("speed")
    paths = {"json": out / "speed.json", "plot": out / "speed.png", "md": out / "RESULTS.md"}
    argv = ["--preset", "tiny", "--repeats", "1", "--warmup", "0", "--batch-sizes", "1", "2", "--in-process",
            "--threads", "1", "--dit-steps", str(DIT_STEPS), "--json", str(paths["json"]),
            "--plot", str(paths["plot"]), "--results-md", str(paths["md"])]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = speed.main(argv)
    return speed, result, paths, stdout.getvalue()


def test_the_json_holds_every_method_at_every_batch_size(tiny_run):
    speed, result, paths, _ = tiny_run
    saved = json.loads(paths["json"].read_text())
    assert saved["methods"] == json.loads(json.dumps(result["methods"]))
    assert [m["method"] for m in saved["methods"]] == [m.name for m in speed.METHODS]
    assert saved["random_weights"] is True and saved["setup"]["cfg"] == 4.5
    assert {"cpu", "torch", "torch_threads", "transformers", "diffusers"} <= set(saved["machine"])
    assert len(saved["load_average"]["before"]) == 3
    for row in saved["methods"]:
        assert [b["batch"] for b in row["batches"]] == [1, 2]
        for b in row["batches"]:
            assert b["latency_s"] > 0 and b["images_per_s"] == pytest.approx(b["batch"] / b["latency_s"])
            assert set(b["stage_share"]) == set(speed.STAGES)
            assert sum(b["stage_share"].values()) == pytest.approx(1.0, abs=1e-6)
        assert row["flops_per_image"] > 0
        assert sum(row["flops_per_image_by_stage"].values()) == row["flops_per_image"]
        assert row["peak_rss_mb"] >= row["rss_after_build_mb"] > 0
    summary = saved["summary"]
    assert summary["batch"] == 2 and summary["next_scale_vs_raster"] > 0 and summary["next_scale_vs_diffusion"] > 0


def test_pass_counts_and_flops_follow_the_method(tiny_run):
    _, result, _, _ = tiny_run
    rows = {m["method"]: m for m in result["methods"]}
    K, pn = len(result["setup"]["scales"]), result["setup"]["scales"][-1]
    # prefill + one text token + <|image_start|>, then K - 1 scales (next-scale) or pn² - 1 codes
    # (raster), then <|image_end|> (with the context block when there is one)
    assert rows["next_scale"]["transformer_passes_per_image"] == 3 + (K - 1) + 1
    assert rows["raster"]["transformer_passes_per_image"] == 3 + (pn * pn - 1) + 1
    assert rows["diffusion"]["transformer_passes_per_image"] == DIT_STEPS
    head = {name: rows[name]["flops_per_image_by_stage"]["head"] for name in rows}
    assert head["next_scale"] > head["next_scale_head4"] > head["next_scale_head1"] > 0
    assert head["next_scale_discrete"] == head["raster"] == head["diffusion"] == 0
    # the context block is extra backbone work; every method runs the same decoder once
    assert (rows["next_scale_no_context"]["flops_per_image_by_stage"]["transformer"]
            < rows["next_scale"]["flops_per_image_by_stage"]["transformer"])
    assert len({r["flops_per_image_by_stage"]["decoder"] for r in rows.values()}) == 1
    params = result["parameters"]
    assert params["backbone"] == params["backbone_matched"] and params["dit"] > 0


def test_tables_plot_markdown_and_the_last_line(tiny_run):
    speed, result, paths, stdout = tiny_run
    lines = stdout.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert "random weights" in stdout and "| (b) raster, one code per pass |" in stdout
    peak = json.loads(paths["json"].read_text())["matmul_peak"]
    assert peak["gflops"] > 0 and f"matrix-product peak measured in the same run ({peak['gflops']:.0f} GFLOP/s" in stdout
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["md"].read_text()
    assert text.count("<!-- speed:tiny:cpu -->") == 1 and lines[-1] in text
    # a second run of the same preset and device replaces its section, others stay
    paths["md"].write_text(text + "\n## Another eval\n")
    speed.update_results_markdown(result, paths["md"], None, None)
    again = paths["md"].read_text()
    assert again.count("<!-- speed:tiny:cpu -->") == 1 and "## Another eval" in again


def test_stage_timers_are_removed_after_the_run(tiny_run):
    speed, _, _, _ = tiny_run

    class Thing:
        def work(self, x):
            return 2 * x

    thing = Thing()
    with speed.watch_stages([(thing, "work", "transformer")], torch.device("cpu")) as record:
        assert thing.work(3) == 6
    assert record["calls"]["transformer"] == 1 and record["seconds"]["transformer"] >= 0
    assert "work" not in vars(thing)


def test_a_method_in_its_own_process(tmp_path, capsys):
    speed = load_eval("speed")
    result = speed.main(["--preset", "tiny", "--methods", "raster", "--repeats", "1", "--warmup", "0",
                         "--batch-sizes", "1", "--threads", "1", "--json", str(tmp_path / "s.json"),
                         "--plot", str(tmp_path / "s.png"), "--results-md", str(tmp_path / "R.md")])
    (row,) = result["methods"]
    assert row["rss_isolated"] is True and row["peak_rss_mb"] > 0
    assert result["summary"]["next_scale_vs_raster"] is None  # no summary line without all three methods
    assert not LAST_LINE.match(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--batch-sizes", "0"], ["--preset", "huge"], ["--threads", "0"]])
def test_bad_arguments_are_refused(argv, tmp_path):
    with pytest.raises(SystemExit):
        load_eval("speed").main([*argv, "--json", str(tmp_path / "x.json"), "--results-md", str(tmp_path / "R.md")])
