"""Paired comparison of evals/assembly_bench.py JSON files of the same prompts: per-story means, Wilcoxon signed-rank.
Usage: python evals/results/tokenizer_encoder/paired_bench.py BEFORE.json AFTER.json [BEFORE2.json AFTER2.json ...]
With more than one pair, the stories of every pair that has a row (decoding, residual) are pooled for that row."""
import json, sys, numpy as np
from scipy.stats import wilcoxon

if len(sys.argv) < 3 or len(sys.argv) % 2 == 0:
    sys.exit(__doc__)
pairs = [(json.load(open(b)), json.load(open(a))) for b, a in zip(sys.argv[1::2], sys.argv[2::2])]


def values(row, metric):
    return [np.nan if s.get(metric) is None else s[metric] for s in row["per_story"]]


keys = []
for before, _ in pairs:
    keys += [(r["decoding"], r["use_residual"]) for r in before["rows"] if (r["decoding"], r["use_residual"]) not in keys]
for key in keys:
    x, y, vc = {"iou": [], "material_accuracy": []}, {"iou": [], "material_accuracy": []}, [0, 0, 0]
    for before, after in pairs:
        rows_a = {(r["decoding"], r["use_residual"]): r for r in before["rows"]}
        rows_b = {(r["decoding"], r["use_residual"]): r for r in after["rows"]}
        if key not in rows_a or key not in rows_b:
            continue
        ra, rb = rows_a[key], rows_b[key]
        assert [s["prompt"] for s in ra["per_story"]] == [s["prompt"] for s in rb["per_story"]], "different prompts"
        for m in x:
            x[m] += values(ra, m)
            y[m] += values(rb, m)
        vc[0] += ra["valid_complete_rate"] * ra["stories"]
        vc[1] += rb["valid_complete_rate"] * rb["stories"]
        vc[2] += ra["stories"]
    if not vc[2]:
        continue  # a row that no after-file has
    out = [key[0], "on" if key[1] else "off", f"{vc[2]} stories"]
    for m in x:
        a, b = np.array(x[m], float), np.array(y[m], float)
        ok = ~np.isnan(a) & ~np.isnan(b)
        out.append(f"{m} {np.nanmean(a):.3f} -> {np.nanmean(b):.3f} p={wilcoxon(a[ok], b[ok]).pvalue:.2g}")
    out.append(f"v&c {vc[0] / vc[2]:.2f} -> {vc[1] / vc[2]:.2f}")
    print(" | ".join(out))
