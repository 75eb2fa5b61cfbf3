"""evals/probe.py: linear probes separate what is separable and fall to chance on noise; the script's
table and JSON on a tiny random model."""

from __future__ import annotations

import json

import torch

from tests.evals import load_eval


def test_a_probe_reads_a_linear_label_and_not_noise():
    probe = load_eval("probe")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=gen)
    y = (x @ torch.randn(16, 3, generator=gen)).argmax(1)  # three classes, linear in the features
    predict = probe.fit_probe(x[:300], y[:300], None, multilabel=False)
    assert (predict(x[300:]).argmax(1) == y[300:]).float().mean() > 0.9
    noise = torch.randint(0, 3, (400,), generator=gen)
    chance = probe.fit_probe(x[:300], noise[:300], None, multilabel=False)
    assert (chance(x[300:]).argmax(1) == noise[300:]).float().mean() < 0.6


def test_the_script_reports_every_layer_and_the_code_baseline(tiny_model_dir, tmp_path):
    probe = load_eval("probe")
    out = tmp_path / "probe.json"
    result = probe.main(["--model", str(tiny_model_dir), "--train", "3", "--test", "2", "--json", str(out),
                         "--results-md", str(tmp_path / "RESULTS.md")])
    names = [r["features"] for r in result["rows"]]
    layers = json.loads((tiny_model_dir / "config.json").read_text())["text_config"]["num_hidden_layers"]
    assert names[:2] == ["majority", "raw HART codes (histogram)"] and len(names) == 2 + layers + 1
    assert all(0 <= r[k] <= 1 for r in result["rows"] for k in ("kind", "parts"))
    assert all(r["material"] is None or 0 <= r["material"] <= 1 for r in result["rows"])
    assert json.loads(out.read_text())["rows"] == result["rows"]
    assert "<!-- probe:" in (tmp_path / "RESULTS.md").read_text()
