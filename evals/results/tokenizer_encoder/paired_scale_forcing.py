"""Paired comparison of two evals/scale_forcing.py JSON files of the same prompts: per-story means, Wilcoxon signed-rank.
Usage: python evals/results/tokenizer_encoder/paired_scale_forcing.py BEFORE.json AFTER.json"""
import json, sys, numpy as np
from scipy.stats import wilcoxon
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def rows(d):
    out = {}
    for r in d["rows"]:
        out[(r["forced_scales"], r["use_residual"])] = r
    return out
ra, rb = rows(a), rows(b)
def compare(label, stories_a, stories_b):
    for m in ("iou", "psnr", "material"):
        x = np.array([s.get(m) if s.get(m) is not None else np.nan for s in stories_a], float)
        y = np.array([s.get(m) if s.get(m) is not None else np.nan for s in stories_b], float)
        ok = ~np.isnan(x) & ~np.isnan(y)
        if not ok.any():  # a file written before the metric existed
            print(label, m, "not in both files")
            continue
        p = wilcoxon(x[ok], y[ok]).pvalue if (x[ok] != y[ok]).any() else 1.0
        print(label, m, f"{np.nanmean(x[ok]):.3f} -> {np.nanmean(y[ok]):.3f}  p={p:.2g}  n={ok.sum()}")


for key in ra:
    if key in rb:
        compare(key, ra[key]["per_story"], rb[key]["per_story"])
for name in ("hybrid", "discrete"):
    compare(f"ref {name}", a["references"][name]["per_story"], b["references"][name]["per_story"])
