"""Which material the checker reads in a tokenizer's decoding of renders (decode_latent(latent), equal to codes +
residual), by requested material, and the mean error of the median furniture colour (decoded - render, RGB).
Usage (from the repository root): python evals/results/tokenizer_encoder/colour_reading.py TOKENIZER [SPLIT] [N]
TOKENIZER: `default`, a saved HartVLM folder or a tokenizer folder; SPLIT: train or heldout (default); N: renders
(guide i of seed 0 at step i mod its step count; default 96). Outputs: README.md beside it."""
import sys, numpy as np, torch
from collections import Counter
from hart_vlm.default_model import load_image_tokenizer
from hart_vlm.data.assembly import generate_guide, MATERIALS, AssemblyChecker
from hart.images import images_to_tensor
from PIL import Image
tok = load_image_tokenizer(sys.argv[1]).float().eval()
split = sys.argv[2] if len(sys.argv) > 2 else "heldout"
checker = AssemblyChecker()
conf = Counter(); errs = {}
for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 96):
    g = generate_guide(i, split, seed=0)
    j = i % len(g.steps); step = g.steps[j]
    x = images_to_tensor([step.image], 128)
    with torch.no_grad():
        y = tok.decode_latent(tok.encode(x).latent)
    img = ((y[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    s = checker.score(g, [(st.text, None) for st in g.steps[:j]] + [(step.text, Image.fromarray(img))]).steps[j]
    fg = step.frame.part_map >= 0
    if fg.sum() < 20: continue
    o = np.median(np.asarray(step.image)[fg], 0); d = np.median(img[fg], 0)
    conf[(g.plan.material, s.material)] += 1
    errs.setdefault(g.plan.material, []).append(d - o)
for m in MATERIALS:
    row = {k[1]: v for k, v in conf.items() if k[0] == m}
    e = np.mean(errs.get(m, [np.zeros(3)]), 0)
    print(f"{m:7s} read as {row}  mean median-colour error {e.round(1)}")
