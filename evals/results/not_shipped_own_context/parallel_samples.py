"""How good are the pictures that own-context training puts in the context (training/README.md,
"The model's own pictures in the training context")? For held-out guides, draw every step's codes
as HartVLM._own_codes does (one pass over the true sequence; each scale sampled given the render's
coarser scales; no guidance) and score their discrete decode with the checker's part IoU, against
the render's own codes decoded the same way. Every step but the last (the ones a later step reads).

    python evals/results/not_shipped_own_context/parallel_samples.py MODEL NUM SEED OUT.json
"""
import json
import sys

import numpy as np
import torch
from hart_vlm import HartVLM
from hart_vlm.data.assembly import AssemblyChecker, generate_guide
from hart.images import tensor_to_pil

model_path, num, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = HartVLM.from_pretrained(model_path).float()
tok = model.image_tokenizer
checker = AssemblyChecker()
variants = {"top-k 600, temperature 1 (training)": 600, "top-k 1 (argmax)": 1}
scores = {name: [] for name in [*variants, "render's codes"]}
for i in range(num):
    guide = generate_guide(i, "heldout", seed, model.config.image_size)
    batch = model.processor(guide.to_messages(overview=True))
    ids, mask, pixels = batch["input_ids"], batch["attention_mask"], batch["pixel_values"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        embeds, blocks, starts, enc = model.embed_inputs(ids, pixels)
    is_target = torch.ones(len(starts), dtype=torch.bool)  # every picture of a guide is the answer's
    n = len(starts)
    drawn = {"render's codes": [c for c in enc.indices]}
    for name, k in variants.items():
        model.config.own_context_prob, model.config.own_context_top_k = 1.0, k
        g = torch.Generator().manual_seed(1000 * seed + i)
        # every picture but the last is chosen (read by a later one); the last is drawn the same way below
        with torch.no_grad():
            own = model._own_codes(embeds, mask, blocks, positions, starts, is_target, g)
        drawn[name] = own.codes
    for name, codes in drawn.items():
        with torch.no_grad():
            images = [tensor_to_pil(x) for x in tok.decode([c[: n - 1] for c in codes])]
        steps = [(s.text, im) for s, im in zip(guide.steps[: n - 1], images)] + [(s.text, None) for s in guide.steps[n - 1 :]]
        score = checker.score(guide, steps, model.config.image_size)
        scores[name].append(score.mean_iou)
for name, v in scores.items():
    print(f"{name}: part IoU {np.mean(v):.3f} over {len(v)} guides (steps 1..n-1)")
json.dump({"command": " ".join(["python", *sys.argv]), "model": model_path, "num": num, "seed": seed,
           "mean": {k: float(np.mean(v)) for k, v in scores.items()}, "per_story": scores}, open(out, "w"), indent=1)
