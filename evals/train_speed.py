"""Tokens per second of a training step, side by side in one run (issue "A real LLM inside", point 2).

    OMP_WAIT_POLICY=PASSIVE python evals/train_speed.py [--llm smollm2] [--batches 3] [--batch-size 4]

The model of training/configs/vlm_smollm2_cpu.yaml (LoRA rank 32 on SmolLM2-135M-Instruct, bridge,
residual head and token rows trained fully) takes a forward and backward pass over the same batches of
the procedural mixture (guides, pictures, questions, text; batch 4, grouped by length as in training)
in three precisions:

  float32           every weight and activation in float32
  bf16 autocast     float32 weights, matrix products in bf16 under torch.autocast
  bf16 weights      the recipes' setting: frozen weights stored in bf16, trainable ones float32, under
                    autocast, LoRA inputs left to autocast (hart_vlm.lora.autocast_adapter_inputs)

Tokens are real (not padding) positions; the time is the median over the batches of one forward and
backward (no optimizer step) after one warm-up batch. The last table gives where the bf16-weights step
spends its time (torch.profiler, self CPU time by operator family).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def batches(model, num: int, batch_size: int, seed: int = 0) -> list:
    from hart_vlm.training.batching import ChatCollator, GroupedBatchSampler
    from hart_vlm.training.data import AssemblyMixture

    weights = {"guide": 0.4, "caption": 0.15, "question": 0.15, "text": 0.1}
    mixture = AssemblyMixture(1000, "train", seed, model.config.image_size, weights,
                              model.config.layout.num_positions, overview=True, wording="varied")
    collate = ChatCollator(model.processor)
    sampler = GroupedBatchSampler(len(mixture), batch_size, num + 1, seed, mixture.length)
    return [collate([mixture[i] for i in idx]) for idx in sampler]


def build(llm: str, precision: str):
    from hart_vlm import HartVLM
    from hart_vlm.default_model import load_image_tokenizer
    from hart_vlm.lora import apply_lora, autocast_adapter_inputs

    torch.manual_seed(0)
    model = HartVLM.from_components(llm, load_image_tokenizer("default"), diffusion_head_config=dict(width=256, depth=3))
    model = apply_lora(model, r=32).train()
    if precision == "bf16 weights":
        for name, param in model.named_parameters():
            if not param.requires_grad and "image_tokenizer" not in name:
                param.data = param.data.to(torch.bfloat16)
        autocast_adapter_inputs(model)
    return model


def step(model, batch, precision: str) -> None:
    from hart_vlm.training.batching import ChatLosses

    losses = ChatLosses(model.get_base_model().config.image_start_token_id, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "float32"):
        out = losses(model, batch, torch.Generator().manual_seed(0), 0)
    out["loss"].backward()
    model.zero_grad(set_to_none=True)


def measure(model, data, precision: str) -> dict:
    step(model, data[0], precision)  # warm-up
    seconds, tokens = [], []
    for batch in data[1:]:
        start = time.perf_counter()
        step(model, batch, precision)
        seconds.append(time.perf_counter() - start)
        tokens.append(int(batch["attention_mask"].sum()))
    rates = [t / s for t, s in zip(tokens, seconds)]
    return {"seconds": statistics.median(seconds), "tokens": statistics.median(tokens),
            "tokens_per_s": statistics.median(rates)}


def profile(model, batch, precision: str) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile as run_profile

    with run_profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, batch, precision)
    families = {"matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
                "copies and casts": ("aten::copy_", "aten::to", "aten::_to_copy"), "fills": ("aten::fill_", "aten::zero_")}
    totals = dict.fromkeys(["attention", *families, "other"], 0.0)
    others: dict[str, float] = {}
    for event in prof.key_averages():
        key = event.key
        if "scaled_dot_product" in key.lower() or "scaleddotproduct" in key.lower():  # forward and backward kernels
            family = "attention"
        else:
            family = next((f for f, names in families.items() if key in names), "other")
        totals[family] += event.self_cpu_time_total
        if family == "other":
            others[key] = others.get(key, 0.0) + event.self_cpu_time_total
    whole = sum(totals.values())
    shares = {k: v / whole for k, v in totals.items()}
    for key, value in sorted(others.items(), key=lambda kv: -kv[1])[:4]:  # the largest of "other", by name
        shares[f"other: {key}"] = value / whole
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--batches", type=int, default=3, help="timed batches (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    base = build(args.llm, "float32")
    data = batches(base, args.batches, args.batch_size)
    rows = {"float32": measure(base, data, "float32")}
    del base  # one model in memory at a time
    for precision in ("bf16 autocast", "bf16 weights"):
        model = build(args.llm, precision)
        rows[precision] = measure(model, data, precision)
    shares = profile(model, data[1], "bf16 weights")
    from hart_vlm.precision import cpu_has_bf16

    print(f"training step of {args.llm} + LoRA r=32, batch {args.batch_size} of the mixture; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"bf16 units: {cpu_has_bf16()}, torch {torch.__version__}")
    print("| precision | tokens / batch | s / step | tokens / s |\n| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['tokens']:.0f} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} |")
    print("\n| where the bf16-weights step goes | share of CPU time |\n| --- | ---: |")
    for name, share in shares.items():
        print(f"| {name} | {share:.0%} |")


if __name__ == "__main__":
    main()
