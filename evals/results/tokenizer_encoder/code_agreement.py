"""Share of codes equal between two tokenizers on 64 renders of training and of held-out guides, per scale.
Usage (from the repository root): python evals/results/tokenizer_encoder/code_agreement.py TOKENIZER_A TOKENIZER_B"""
import sys, torch
from hart_vlm.default_model import load_image_tokenizer
from hart_vlm.data.assembly import generate_guide
from hart.images import images_to_tensor
a, b = (load_image_tokenizer(s).float().eval() for s in sys.argv[1:3])
for split in ("train", "heldout"):
    imgs = []
    for i in range(64):
        g = generate_guide(i, split, seed=0); imgs.append(g.steps[i % len(g.steps)].image)
    x = images_to_tensor(imgs, 128)
    with torch.no_grad():
        ea, eb = a.encode(x), b.encode(x)
    print(split, [round(float((ia == ib).float().mean()), 3) for ia, ib in zip(ea.indices, eb.indices)])
