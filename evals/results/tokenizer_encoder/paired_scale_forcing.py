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
for key in ra:
    if key not in rb: continue
    for m in ("iou", "psnr", "material"):
        x = np.array([s[m] if s[m] is not None else np.nan for s in ra[key]["per_story"]], float)
        y = np.array([s[m] if s[m] is not None else np.nan for s in rb[key]["per_story"]], float)
        ok = ~np.isnan(x) & ~np.isnan(y)
        p = wilcoxon(x[ok], y[ok]).pvalue if (x[ok] != y[ok]).any() else 1.0
        print(key, m, f"{np.nanmean(x):.3f} -> {np.nanmean(y):.3f}  p={p:.2g}  n={ok.sum()}")
for name in ("hybrid", "discrete"):
    for m in ("iou", "psnr", "material"):
        x = np.array([s[m] if s[m] is not None else np.nan for s in a["references"][name]["per_story"]], float)
        y = np.array([s[m] if s[m] is not None else np.nan for s in b["references"][name]["per_story"]], float)
        ok = ~np.isnan(x) & ~np.isnan(y)
        print("ref", name, m, f"{np.nanmean(x):.3f} -> {np.nanmean(y):.3f}  p={wilcoxon(x[ok], y[ok]).pvalue:.2g}")
