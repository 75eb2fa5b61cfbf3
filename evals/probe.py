"""What the LLM itself carries of a picture: linear probes of its hidden states, layer by layer, against
the same probe on the raw HART codes (issue 44; Image GPT, Chen et al. 2020, §3: linear probes of
mean-pooled features).

    OMP_WAIT_POLICY=PASSIVE python evals/probe.py                       # the default model
    python evals/probe.py --model tiny --train 200 --test 60 --json /tmp/probe.json

Pictures: every step's render of `--train` training-split guides (fit) and `--test` held-out guides
(scored; kinds, materials and sizes combined as training never saw). The model is frozen and reads each
picture as a user turn ("Describe the furniture in this image."); the features of a picture at layer l
are the hidden states after layer l (0: the embeddings) averaged over the picture's positions. The
baseline is the same average over the raw codes: the histogram of the picture's HART codes over every
scale (the mean of their one-hot vectors).

Probes (one per feature set, logistic regression in torch: standardised features, L2 1e-3, L-BFGS):
  kind       which furniture kind (multinomial)
  material   which material (multinomial)
  parts      for each part of the piece's kind, whether it is in place (one binary output per part
             name, scored only on pictures of kinds that have that part)
Held-out accuracy is printed per layer (material over the held-out pictures whose material training has);
the "majority" row is the most frequent training answer.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

from hart_vlm.scripts import load_script, write_json

HERE = Path(__file__).resolve().parent
QUESTION = "Describe the furniture in this image."


def pictures(split: str, num: int, seed: int, resolution: int) -> list[dict]:
    from hart_vlm.data.assembly import generate_guide

    out = []
    for i in range(num):
        guide = generate_guide(i, split, seed, resolution)
        for step in guide.steps:
            out.append({"image": step.image, "kind": guide.kind, "material": guide.plan.material,
                        "parts": set(step.state), "part_names": tuple(guide.furniture.part_names)})
    return out


@torch.no_grad()
def features(model, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, layers + 1, D) mean-pooled hidden states over each picture's positions, (N, V) code histograms."""
    layers = model.backbone.model.layers
    captured: list[torch.Tensor] = []
    hooks = [layers[0].register_forward_pre_hook(lambda m, args, kwargs: captured.append(
        (kwargs.get("hidden_states") if kwargs.get("hidden_states") is not None else args[0]).float()),
        with_kwargs=True)]
    hooks += [layer.register_forward_hook(lambda m, args, out: captured.append(
        (out[0] if isinstance(out, tuple) else out).float())) for layer in layers]
    placeholder = model.config.image_placeholder_token_id
    vocab = model.config.image_tokenizer.vocab_size
    hidden, codes = [], []
    try:
        for item in items:
            messages = [{"role": "user", "content": [{"type": "image", "image": item["image"]},
                                                     {"type": "text", "text": QUESTION}]}]
            inputs = model.processor([messages], add_generation_prompt=True)
            captured.clear()
            model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                  pixel_values=inputs["pixel_values"].to(model.dtype))
            where = inputs["input_ids"][0] == placeholder  # the picture's positions
            hidden.append(torch.stack([h[0, where].mean(0) for h in captured]))
            encoding = model.image_tokenizer.encode(inputs["pixel_values"].float())
            all_codes = torch.cat([idx.flatten() for idx in encoding.indices])
            codes.append(torch.bincount(all_codes, minlength=vocab).float() / all_codes.numel())
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(hidden), torch.stack(codes)


def fit_probe(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, multilabel: bool, l2: float = 1e-3):
    """A linear probe on standardised features; returns a function features -> logits."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    out = y.shape[1] if multilabel else int(y.max()) + 1
    w = torch.zeros(x.shape[1], out, requires_grad=True)
    b = torch.zeros(out, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = z @ w + b
        if multilabel:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=mask)
        else:
            loss = torch.nn.functional.cross_entropy(logits, y)
        loss = loss + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda xs: ((xs - mean) / std) @ w.detach() + b.detach()


def labels(items: list[dict], kinds: list[str], materials: list[str], parts: list[str]):
    kind = torch.tensor([kinds.index(i["kind"]) for i in items])
    material = torch.tensor([materials.index(i["material"]) if i["material"] in materials else -1 for i in items])
    present = torch.tensor([[float(p in i["parts"]) for p in parts] for i in items])
    applies = torch.tensor([[float(p in i["part_names"]) for p in parts] for i in items])
    return kind, material, present, applies


def probe_scores(x_tr, x_te, y_tr, y_te) -> dict:
    (k_tr, m_tr, p_tr, a_tr), (k_te, m_te, p_te, a_te) = y_tr, y_te
    kind = fit_probe(x_tr, k_tr, None, False)(x_te).argmax(1)
    known = m_te >= 0
    material = fit_probe(x_tr, m_tr, None, False)(x_te).argmax(1)
    parts = fit_probe(x_tr, p_tr, a_tr, True)(x_te) > 0
    return {"kind": float((kind == k_te).float().mean()),
            "material": float((material[known] == m_te[known]).float().mean()) if known.any() else None,
            "parts": float(((parts == p_te.bool()).float() * a_te).sum() / a_te.sum())}


def main(argv: list[str] | None = None) -> dict:
    rec = load_script(HERE / "reconstruction.py", "evals_reconstruction")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_model_arguments(parser)
    parser.add_argument("--train", type=int, default=200, help="training-split guides whose renders fit the probes")
    parser.add_argument("--test", type=int, default=60, help="held-out guides whose renders score them")
    args = parser.parse_args(argv)
    if args.train < 1 or args.test < 1:
        parser.error("--train and --test must be >= 1")
    model, source, _ = rec.load_model(parser, args.model, torch.device(args.device), args.dtype)
    size = model.config.image_size
    train, test = pictures("train", args.train, args.seed, size), pictures("heldout", args.test, args.seed, size)
    kinds = sorted({i["kind"] for i in train + test})
    materials = sorted({i["material"] for i in train})
    parts = sorted({p for i in train + test for p in i["part_names"]})
    y_tr, y_te = labels(train, kinds, materials, parts), labels(test, kinds, materials, parts)
    (h_tr, c_tr), (h_te, c_te) = features(model, train), features(model, test)

    rows = [{"features": "majority", **_majority(y_tr, y_te)},
            {"features": "raw HART codes (histogram)", **probe_scores(c_tr, c_te, y_tr, y_te)}]
    for layer in range(h_tr.shape[1]):
        rows.append({"features": f"LLM layer {layer}" + (" (embeddings)" if layer == 0 else ""),
                     **probe_scores(h_tr[:, layer], h_te[:, layer], y_tr, y_te)})
    speed = load_script(HERE / "speed.py", "evals_speed")
    result = {"machine": speed.machine(torch.device(args.device)),
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": " ".join(["python evals/probe.py", *(argv if argv is not None else sys.argv[1:])]),
              "source": source, "pictures": {"train": len(train), "test": len(test)}, "rows": rows}
    table = ["| features | kind | material | parts in place |", "| --- | ---: | ---: | ---: |"]
    table += ["| " + " | ".join([r["features"]] + [f"{r[k]:.3f}" if r[k] is not None else "n/a"
                                                  for k in ("kind", "material", "parts")]) + " |" for r in rows]
    print(f"{len(train)} training pictures, {len(test)} held-out pictures; held-out accuracy")
    print("\n".join(table))
    json_path = args.json or HERE / "results" / f"probe_{source}.json"
    write_json(json_path, result)
    if args.results_md is not None:
        speed.write_results_section(args.results_md, f"probe:{source}", [
            f"## Linear probes of what the {source} model carries of a picture", "", f"`{result['command']}`", "",
            f"{len(train)} training renders, {len(test)} held-out renders; held-out accuracy", "", *table])
    print(f"wrote {json_path}")
    return result


def _majority(y_tr, y_te) -> dict:
    (k_tr, m_tr, p_tr, a_tr), (k_te, m_te, p_te, a_te) = y_tr, y_te
    known = m_te >= 0
    part_rate = (p_tr * a_tr).sum(0) / a_tr.sum(0).clamp_min(1)  # how often each part is in place in training
    guess = (part_rate >= 0.5).float().expand_as(p_te)
    return {"kind": float((k_te == k_tr.mode().values).float().mean()),
            "material": float((m_te[known] == m_tr.mode().values).float().mean()) if known.any() else None,
            "parts": float(((guess == p_te).float() * a_te).sum() / a_te.sum())}


if __name__ == "__main__":
    main()
