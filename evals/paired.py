"""Two runs of the assembly benchmark on the same prompts, compared story by story.

    python evals/paired.py BEFORE.json AFTER.json [--row 0]

For each per-story measure (part IoU, material, consistency, PSNR) the mean of both runs over the
stories that have it in both, and the two-sided Wilcoxon signed-rank p-value of the paired
differences (scipy); for valid-and-complete, the counts. The runs must hold the same prompts
(`assembly_bench.py` with the same --num, --seed and --wording).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MEASURES = (("iou", "part IoU"), ("material_accuracy", "material"), ("consistency", "consistency"), ("psnr", "PSNR (dB)"))


def stories(path: Path, row: int) -> dict[int, dict]:
    data = json.loads(path.read_text())
    try:
        return {s["index"]: s for s in data["rows"][row]["per_story"]}
    except (KeyError, IndexError, TypeError) as error:
        raise SystemExit(f"{path}: not an assembly benchmark result with a row {row} ({error})") from None


def compare(before: dict[int, dict], after: dict[int, dict]) -> list[tuple[str, str, str, str]]:
    from scipy.stats import wilcoxon

    if set(before) != set(after) or any(before[i]["prompt"] != after[i]["prompt"] for i in before):
        raise SystemExit("the two runs do not hold the same prompts")
    rows = []
    for key, name in MEASURES:
        pairs = [(before[i][key], after[i][key]) for i in sorted(before)
                 if before[i].get(key) is not None and after[i].get(key) is not None]
        if not pairs:
            continue
        a, b = zip(*pairs)
        differences = [y - x for x, y in pairs]
        p = wilcoxon(differences).pvalue if any(differences) else 1.0
        rows.append((name, f"{sum(a) / len(a):.3f} → {sum(b) / len(b):.3f}", f"{p:.3g}", str(len(pairs))))
    ok = [sum(bool(s["order_valid"] and s["complete"]) for s in run.values()) for run in (before, after)]
    rows.append(("valid and complete", f"{ok[0]} → {ok[1]} of {len(before)}", "", str(len(before))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--row", type=int, default=0, help="which row (decoding x guidance x head) of each run")
    args = parser.parse_args()
    print(f"{args.before} → {args.after}, row {args.row}")
    print("| measure | before → after | Wilcoxon p | stories |\n| --- | --- | ---: | ---: |")
    for row in compare(stories(args.before, args.row), stories(args.after, args.row)):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
