"""Which of N sampled pictures to keep? The measurement behind `SamplingConfig.image_candidates`.

    python evals/results/best_of_n/rules.py measure --seed 0 --out heldout_seed0.json   # about 8 min, 2-core CPU
    python evals/results/best_of_n/rules.py table heldout_seed0.json heldout_seed1.json

`measure`: for every step of 50 held-out guides (`generate_guide(i, "heldout", seed)`), the embedded default
model is given the true conversation up to that step's text, with the renders of the earlier steps (as
`evals/scale_forcing.py --forced 0` does), and draws 8 pictures of the step as one batch (CFG 4.5, residual
head on, SamplingConfig's defaults otherwise). Every picture is scored by the assembly checker (part IoU
against the render of the state the true texts describe) and by three rules, each summed over every code of
every scale: `cond`, the log-likelihood of the codes under the model with its full context and no guidance
(the rule `image_candidates` uses); `pmi`, cond minus their log-likelihood given the picture alone (the
unconditional branch of classifier-free guidance); `guided`, their log-likelihood under the guided
distribution they were sampled from.

`table`: the mean part IoU per story when each step keeps the picture a rule ranks first among the first N
(N = 2, 4, 8), against keeping the first picture (one draw, as without best of N), with a paired Wilcoxon
test over stories; "oracle" keeps the best picture by IoU, which no rule can know.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
CANDIDATES = 8


def measure(seed: int, num: int, out: Path) -> None:
    sys.path.insert(0, str(ROOT / "evals"))
    from scale_forcing import forcing_generator

    import hart_vlm
    from hart_vlm.data.assembly import AssemblyChecker, generate_guide
    from hart_vlm.sampling import SamplingConfig

    model = hart_vlm.load_default().eval()
    checker, size, K = AssemblyChecker(), model.config.image_size, model.layout.num_scales
    config = SamplingConfig(cfg=4.5)
    rows = []
    for i in range(num):
        guide = generate_guide(i, "heldout", seed, size)
        batch = model.processor(guide.to_messages(overview=True))
        ids, pixels = batch["input_ids"], batch["pixel_values"]
        with torch.no_grad():
            true_codes = model.image_tokenizer.encode(pixels).indices
        starts = (ids[0] == model.vocab.image_start_id).nonzero()[:, 0].tolist()
        pictures, feats = [[] for _ in range(CANDIDATES)], []
        for j, start in enumerate(starts):
            gen = forcing_generator(model, config, torch.Generator().manual_seed(seed * 100000 + 1000 * i + j),
                                    [0] * CANDIDATES)
            gen.true_codes = [codes[j] for codes in true_codes]
            scores = {"cond": 0, "pmi": 0, "guided": 0}
            plain = gen._sample_codes

            def scored(h, k, plain=plain, scores=scores):
                codes = plain(h, k)
                cond, uncond = model.image_logits(h).float().chunk(2)
                t = config.scale_guidance(k, K)
                lp = {"cond": cond.log_softmax(-1), "uncond": uncond.log_softmax(-1),
                      "guided": ((1 + t) * cond - t * uncond).log_softmax(-1)}
                ll = {name: v.gather(-1, codes[..., None])[..., 0].sum(-1) for name, v in lp.items()}
                scores["cond"] = scores["cond"] + ll["cond"]
                scores["pmi"] = scores["pmi"] + ll["cond"] - ll["uncond"]
                scores["guided"] = scores["guided"] + ll["guided"]
                return codes

            gen._sample_codes = scored
            with torch.no_grad():
                images = gen.draw(ids[:, :start], pixels[:j] if j else None)
            for c in range(CANDIDATES):
                pictures[c].append(images[c])
            feats.append({name: [round(float(v), 4) for v in value] for name, value in scores.items()})
        ious = []
        for c in range(CANDIDATES):
            score = checker.score(guide, [(step.text, image) for step, image in zip(guide.steps, pictures[c])], size)
            ious.append([None if s.iou is None else round(s.iou, 4) for s in score.steps])
        rows.append({"ious": ious, "feats": feats})
        print(f"guide {i + 1}/{num}", file=sys.stderr, flush=True)
    out.write_text(json.dumps({"guide_seed": seed, "candidates": CANDIDATES, "cfg": 4.5, "context": "true",
                               "model": "embedded default", "rows": rows}))


def table(paths: list[Path]) -> str:
    from scipy.stats import wilcoxon

    rows = [r for p in paths for r in json.loads(p.read_text())["rows"]]
    lines = ["| pictures drawn (N) | rule | part IoU | stories higher / lower than one draw | Wilcoxon p |",
             "| ---: | --- | ---: | --- | ---: |"]
    for n in (2, 4, 8):
        first = np.array([np.nanmean(np.array(r["ious"], float)[0]) for r in rows])
        picks = {"oracle (best IoU)": lambda I, f: I.argmax(0)}
        for rule, sign in (("cond", 1), ("pmi", 1), ("pmi", -1), ("guided", 1)):
            picks[f"{'highest' if sign > 0 else 'lowest'} {rule}"] = (
                lambda I, f, rule=rule, sign=sign: [int(np.argmax(sign * np.array(s[rule][:n]))) for s in f])
        for name, pick in picks.items():
            kept = []
            for r in rows:
                ious = np.array(r["ious"], float)[:n]
                chosen = pick(np.nan_to_num(ious, nan=-1.0), r["feats"])
                kept.append(np.nanmean([ious[c, j] for j, c in enumerate(chosen)]))
            kept = np.array(kept)
            p = wilcoxon(kept, first).pvalue
            lines.append(f"| {n} | {name} | {kept.mean():.3f} (one draw {first.mean():.3f}) | "
                         f"{int((kept > first).sum())} / {int((kept < first).sum())} | {p:.2g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--num", type=int, default=50)
    m.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("table")
    t.add_argument("paths", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "measure":
        measure(args.seed, args.num, args.out)
    else:
        print(table(args.paths))


if __name__ == "__main__":
    main()
