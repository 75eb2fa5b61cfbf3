"""Sampling speed of HART's residual diffusion head: time per 1,000 tokens at several step counts.

The head runs once per last-scale position of every generated image (a 256px image has 16 x 16 =
256 positions, a 1024px one 64 x 64 = 4,096), so its cost is reported per 1,000 tokens. The
weights are freshly initialised; the time of the dense layers does not depend on their values.

    python evals/head_speed.py                       # HART's head (W=1024, depth 6), CPU
    python evals/head_speed.py --preset tiny --cfg 4.5 --json results/head_speed_tiny.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import diffusers
import torch

from hart.diffusion_head import ResidualDiffusionHead, ResidualDiffusionHeadConfig
from hart_vlm.scripts import write_json


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    info = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def time_sampling(head, cond, uncond, num_steps, args, device) -> list[float]:
    """Wall-clock seconds of `repeats` sample() calls."""
    times = []
    for i in range(args.repeats):
        gen = torch.Generator(device=device).manual_seed(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        head.sample(cond, num_steps=num_steps, cfg=args.cfg, uncond_NC=uncond, generator=gen, sampler=args.sampler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    presets = sorted(ResidualDiffusionHeadConfig.PRESETS)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="hart", choices=presets)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 50])
    parser.add_argument("--tokens", type=int, default=1000, help="tokens per sample() call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per step count (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed 1-step calls before timing")
    parser.add_argument("--sampler", default="ddpm", choices=["ddpm", "ddim"])
    parser.add_argument("--cfg", type=float, default=0.0, help="> 0 doubles the batch (conditional + unconditional)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table and machine as JSON here")
    args = parser.parse_args(argv)
    if args.tokens < 1 or args.repeats < 1 or args.warmup < 0 or min(args.steps) < 1:
        parser.error("--tokens, --repeats and every --steps must be >= 1, --warmup >= 0")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    config = ResidualDiffusionHeadConfig.from_preset(args.preset)
    head = ResidualDiffusionHead(config).to(device=device, dtype=dtype).eval()
    n_params = sum(p.numel() for p in head.parameters())
    cond = torch.randn(args.tokens, config.cond_dim, device=device, dtype=dtype)
    uncond = torch.randn_like(cond) if args.cfg > 0 else None

    for _ in range(args.warmup):
        head.sample(cond, num_steps=1, cfg=args.cfg, uncond_NC=uncond, generator=torch.Generator(device=device))
    rows = []
    for num_steps in args.steps:
        seconds = time_sampling(head, cond, uncond, num_steps, args, device)
        ms_per_1000 = [s * 1000 * 1000 / args.tokens for s in seconds]
        median = statistics.median(ms_per_1000)
        rows.append({
            "num_steps": num_steps,
            "ms_per_1000_tokens": median,
            "ms_per_step_per_1000_tokens": median / num_steps,
            "ms_per_1000_tokens_all_repeats": ms_per_1000,
        })

    machine = machine_info(device)
    setup = {
        "preset": args.preset,
        "width": config.width,
        "depth": config.depth,
        "parameters": n_params,
        "tokens_per_call": args.tokens,
        "repeats": args.repeats,
        "sampler": args.sampler,
        "cfg": args.cfg,
        "dtype": args.dtype,
    }
    print(f"machine: {machine['cpu']}, {machine['logical_cores']} logical cores, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), diffusers {machine['diffusers']}, device {machine['device']}"
          + (f" ({machine['gpu']})" if "gpu" in machine else ""))
    print(f"head: preset {args.preset} (W={config.width}, depth {config.depth}, {n_params / 1e6:.2f}M params), "
          f"{args.sampler}, cfg {args.cfg}, {args.dtype}, {args.tokens} tokens per call, median of {args.repeats}")
    print()
    print("| steps | ms / 1,000 tokens | ms / step / 1,000 tokens |")
    print("| ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['num_steps']} | {row['ms_per_1000_tokens']:.1f} | {row['ms_per_step_per_1000_tokens']:.2f} |")

    command = " ".join(["evals/head_speed.py", *(argv if argv is not None else sys.argv[1:])])
    result = {"machine": machine, "setup": setup, "rows": rows, "command": command}
    if args.json is not None:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
