"""Paired comparison of two evals/assembly_bench.py JSON files of the same prompts: per-story means, Wilcoxon signed-rank.
Usage: python evals/results/tokenizer_encoder/paired_bench.py BEFORE.json AFTER.json"""
import json, sys, numpy as np
from scipy.stats import wilcoxon
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for ra, rb in zip(a["rows"], b["rows"]):
    assert (ra["decoding"], ra["use_residual"]) == (rb["decoding"], rb["use_residual"])
    out = [ra["decoding"], "on" if ra["use_residual"] else "off"]
    for m in ("iou", "material_accuracy"):
        x = np.array([s.get(m) if s.get(m) is not None else np.nan for s in ra["per_story"]], float)
        y = np.array([s.get(m) if s.get(m) is not None else np.nan for s in rb["per_story"]], float)
        ok = ~np.isnan(x) & ~np.isnan(y)
        out.append(f"{m} {np.nanmean(x):.3f} -> {np.nanmean(y):.3f} p={wilcoxon(x[ok], y[ok]).pvalue:.2g}")
    out.append(f"v&c {ra['valid_complete_rate']:.2f} -> {rb['valid_complete_rate']:.2f}")
    print(" | ".join(out))
