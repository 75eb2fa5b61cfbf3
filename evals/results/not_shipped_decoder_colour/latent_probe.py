"""Does the frozen encoder keep the colour? A linear probe (logistic regression) on the mean continuous latent
(and on the mean f_hat) over the furniture cells: trained on training-guide renders, tested on held-out renders.
Usage: python evals/results/not_shipped_decoder_colour/latent_probe.py MODEL [N_TRAIN] [N_TEST]
MODEL: a saved HartVLM folder, a tokenizer folder or `default` (hart_vlm.default_model.load_image_tokenizer)
(run from the repository root; the output of "runs/vlm_longer5k_d2/model 1200 150", the shipped model in fp32, is in
latent_probe.txt beside it; pixels: the median colour of the furniture pixels, the same probe)."""
import sys
import numpy as np, torch
from hart_vlm.default_model import load_image_tokenizer
from hart_vlm.data.assembly import generate_guide, MATERIALS

tok = load_image_tokenizer(sys.argv[1]).float().eval()
n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 400
n_test = int(sys.argv[3]) if len(sys.argv) > 3 else 100
names = list(MATERIALS)

def features(split, n):
    X = {"latent": [], "f_hat": [], "pixels": []}; y = []
    for i in range(n):
        g = generate_guide(i, split, seed=7)
        step = g.steps[-1]
        img = np.asarray(step.image)
        fg = torch.from_numpy(g.steps[-1].frame.part_map >= 0).float()[None, None]  # (1, 1, 128, 128)
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            enc = tok.encode(x)
        for key, lat in (("latent", enc.latent), ("f_hat", enc.f_hat)):
            w = torch.nn.functional.adaptive_avg_pool2d(fg, lat.shape[-1])  # furniture share of each cell
            X[key].append(((lat * w).sum((2, 3)) / w.sum()).numpy()[0])
        X["pixels"].append(np.median(img[g.steps[-1].frame.part_map >= 0], 0))
        y.append(names.index(g.plan.material))
    return {k: np.array(v) for k, v in X.items()}, np.array(y)

Xtr, ytr = features("train", n_train)
Xte, yte = features("heldout", n_test)
def fit(X, y):
    X = torch.tensor(X, dtype=torch.float64); y = torch.tensor(y)
    W = torch.zeros(X.shape[1], len(names), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(names), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=500)
    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W + b, y) + 1e-3 * (W ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return lambda Z: (torch.tensor(Z, dtype=torch.float64) @ W + b).argmax(1).numpy()

for key in Xtr:
    mu, sd = Xtr[key].mean(0), Xtr[key].std(0) + 1e-6
    predict = fit((Xtr[key] - mu) / sd, ytr)
    pred = predict((Xte[key] - mu) / sd)
    train_acc = (predict((Xtr[key] - mu) / sd) == ytr).mean()
    per = {names[m]: round(float((pred[yte == m] == m).mean()), 2) for m in np.unique(yte)}
    print(f"{key:7s} train {train_acc:.3f} held-out {(pred == yte).mean():.3f}  {per}")
