"""Image-generation speed side by side, on one machine with one LLM backbone (issue 9).

    python evals/speed.py --quick                       # the default preset (128 px) on the CPU
    python evals/speed.py --preset hart_0_7b_1024px --device cuda --dtype bfloat16

Methods (all weights random: speed does not depend on the values of dense weights):
  (a) next-scale: one backbone pass per scale, the residual head (8 steps) on the last scale, the
      hybrid decoder (HART §3); (a') the same without the image context block, which the raster
      method does not feed either;
  (b) raster: the same backbone writing the last scale's codes one per forward pass (the
      Chameleon / Liquid / Emu3 way), discrete-only;
  (c) diffusion: a DiT (evals/dit_baseline.py) with the backbone's parameter count over the same
      latent, 30 DDIM steps (diffusers' DDIMScheduler), the same decoder;
  (d) next-scale with the residual head at 1, 4 and 8 steps, and with no head (discrete only).
Both AR methods and the DiT use classifier-free guidance 4.5 (the batch is doubled), as HART does.

What is timed: one call of the public `HartVLM.chat` per batch: the prompt is tokenized and
prefilled, one text token is sampled (greedy), the image is forced (`force_image_after="^"`,
`max_images=1`) and drawn, its context block and `<|image_end|>` are fed, the PIL images are made.
The DiT: tokenize, pool the prompt, 30 guided steps, decode, PIL. Median wall-clock of `repeats`
calls after `warmup` untimed ones; images/s = batch / median latency.

Stage shares come from timers around `HartVLM.run_backbone` (every LLM pass, prefill included),
`ResidualDiffusionHead.sample`, `HybridTokenizer.decode_latent` and the DiT's forward, set as
instance attributes for the run and removed after (the library is not changed). FLOPs per image:
one batch-1 call under `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions and
attention, 2 FLOPs per multiply-add; elementwise ops are not counted). Each method runs in its
own subprocess so that its peak RSS is its own. The last line printed is the throughput ratio at
the largest batch: `next-scale vs raster: X.Xx; vs diffusion: Y.Yx`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from hart_vlm.scripts import load_script, write_json

HERE = Path(__file__).resolve().parent
STAGES = ("transformer", "head", "decoder", "other")
CONVERSATION = [{"role": "user", "content": [{"type": "text", "text": "How do I assemble a two-shelf white bookcase?"}]}]


def _load_sibling(name: str):
    """A module of evals/ by file (evals/ is a folder of scripts, not a package)."""
    return load_script(HERE / f"{name}.py", f"evals_{name}")


# ------------------------------------------------------------------------------------------------
# 1. methods and settings
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    name: str
    label: str
    family: str  # "ar" (HartVLM.chat) or "diffusion" (the DiT baseline)
    sampling: dict = field(default_factory=dict)  # SamplingConfig fields of an AR method
    model: dict = field(default_factory=dict)  # HartVLMConfig overrides of an AR method
    raster: bool = False  # an AR method that writes the last scale's codes one per pass (RasterDrawer)


METHODS = (
    Method("next_scale", "(a) next-scale, head 8 steps", "ar", {"diffusion_steps": 8}),
    Method("next_scale_no_context", "(a') next-scale, head 8 steps, no context block", "ar",
           {"diffusion_steps": 8}, {"image_context_block": False}),
    Method("next_scale_head4", "(d) next-scale, head 4 steps", "ar", {"diffusion_steps": 4}),
    Method("next_scale_head1", "(d) next-scale, head 1 step", "ar", {"diffusion_steps": 1}),
    Method("next_scale_discrete", "(d) next-scale, no head (discrete)", "ar", {"use_residual": False}),
    Method("raster", "(b) raster, one code per pass", "ar", {"use_residual": False}, raster=True),
    Method("diffusion", "(c) DiT, DDIM", "diffusion"),
)
METHODS_BY_NAME = {m.name: m for m in METHODS}


@dataclass
class Settings:
    preset: str = "default"
    device: str = "cpu"
    dtype: str = "float32"
    batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 2
    repeats: int = 5
    cfg: float = 4.5
    dit_steps: int = 30
    threads: int | None = None
    seed: int = 0
    llm: str | None = None  # a known LLM's name or a causal-LM folder as the backbone, instead of the preset's

    def __post_init__(self) -> None:
        self.batch_sizes = tuple(int(b) for b in self.batch_sizes)
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive ints, got {self.batch_sizes}")
        if self.repeats < 1 or self.warmup < 0 or self.dit_steps < 1 or self.cfg < 0:
            raise ValueError("need repeats >= 1, warmup >= 0, dit_steps >= 1 and cfg >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")


# ------------------------------------------------------------------------------------------------
# 2. instrumentation: stage timers and FLOPs
# ------------------------------------------------------------------------------------------------
def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode knows the CUDA attention kernels; the CPU one has the same cost formula.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return FlopCounterMode(display=False, custom_mapping={cpu_attention: _sdpa_cpu_flops})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def watch_stages(targets: list[tuple[object, str, str]], device: torch.device,
                 counter: FlopCounterMode | None = None) -> Iterator[dict]:
    """Times every call of the methods `(object, method name, stage)` and, under `counter`, the
    FLOPs they run; yields {"seconds", "calls", "flops"} per stage. The methods are shadowed by
    instance attributes while the block runs and restored after."""
    record = {"seconds": defaultdict(float), "calls": Counter(), "flops": defaultdict(int)}
    saved = []
    for obj, name, stage in targets:
        saved.append((obj, name, vars(obj).get(name)))
        original = getattr(obj, name)

        def timed(*args, _original=original, _stage=stage, **kwargs):
            flops0 = counter.get_total_flops() if counter is not None else 0
            _sync(device)
            start = time.perf_counter()
            out = _original(*args, **kwargs)
            _sync(device)
            record["seconds"][_stage] += time.perf_counter() - start
            record["calls"][_stage] += 1
            if counter is not None:
                record["flops"][_stage] += counter.get_total_flops() - flops0
            return out

        setattr(obj, name, timed)
    try:
        yield record
    finally:
        for obj, name, previous in reversed(saved):
            if previous is None:
                delattr(obj, name)
            else:
                setattr(obj, name, previous)


# ------------------------------------------------------------------------------------------------
# 3. the generators under test
# ------------------------------------------------------------------------------------------------
def backbone_parameters(text_config) -> int:
    """Parameters of the backbone a config describes (built on the meta device: no memory)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return sum(p.numel() for p in AutoModelForCausalLM.from_config(text_config).parameters())


def raster_drawer():
    """A picture drawer the Chameleon / Liquid / Emu3 way, for comparison: the last scale's codes
    one per forward pass in raster order, each position fed word_embed of the previous code plus
    its 2-D position embedding; discrete-only, no context block."""
    from hart.images import tensor_to_pil
    from hart_vlm.generation import PictureDrawer

    class RasterDrawer(PictureDrawer):
        def draw(self, rows, h_start):  # a generator, as PictureDrawer.draw; it has no previews to yield
            yield from ()
            model, layout, state = self.model, self.layout, self.state
            n, K = rows.shape[0], layout.num_scales
            pn = layout.v_patch_nums[-1]
            pos_LD = model.bridge.position_embeddings()[layout.input_block(K - 1)]  # the last scale's grid
            h = h_start[:, None]
            codes = []
            for i in range(pn * pn):
                code = self.sample_codes(h, K - 1)[:, 0]  # (n,)
                codes.append(code)
                if i == pn * pn - 1:
                    break
                embeds = (model.bridge.word_embed(model.codebook()[code].to(h.dtype)) + pos_LD[i])[:, None]
                h = state.feed_rows(rows, embeds)
            latent = model.codebook()[torch.stack(codes, dim=1)].reshape(n, pn, pn, -1).permute(0, 3, 1, 2)
            images = [tensor_to_pil(image) for image in self.tok.decode_latent(latent)]
            end_ids = torch.full((n, 1), model.vocab.image_end_id, device=h.device)
            h_end = state.feed_rows(rows, model.embed_ids(end_ids), twins=False)[:, -1]
            return images, h_end

    return RasterDrawer


class ARRunner:
    """HartVLM.chat with the image forced after the first text token."""

    def __init__(self, method: Method, settings: Settings, device: torch.device, dtype: torch.dtype):
        from hart_vlm import HartVLM

        torch.manual_seed(settings.seed)
        if settings.llm is not None:  # a pretrained backbone with the preset's HART tokenizer (random bridge and head)
            from hart_vlm import HartVLMConfig

            preset = HartVLMConfig.from_preset(settings.preset)
            head = {k: preset.diffusion_head_config[k] for k in ("width", "depth")}  # the preset's head size
            model = HartVLM.from_components(settings.llm, hart_tokenizer=preset.image_tokenizer,
                                            diffusion_head_config=head, **method.model)
        else:
            model = HartVLM.from_preset(settings.preset, **method.model)
        self.model = model.to(device=device, dtype=dtype).eval()
        self.sampling = dict(cfg=settings.cfg, temperature=0.0, force_image_after="^", max_images=1,
                             max_new_tokens=4, **method.sampling)
        self.raster = method.raster
        m = self.model
        self.stages = [(m, "run_backbone", "transformer"), (m.diffusion_head, "sample", "head"),
                       (m.image_tokenizer, "decode_latent", "decoder")]
        count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
        self.parameters = {"backbone": count(m.backbone), "bridge": count(m.bridge),
                           "diffusion_head": count(m.diffusion_head), "image_tokenizer": count(m.image_tokenizer)}

    def generate(self, batch: int, seed: int) -> list:
        from hart_vlm.generation import PictureDrawer, chat

        responses = chat(self.model, [CONVERSATION] * batch, seed=seed,
                         drawer=raster_drawer() if self.raster else PictureDrawer, **self.sampling)
        counts = [len(r.images) for r in responses]
        if counts != [1] * batch:
            raise RuntimeError(f"expected one image per prompt, got {counts} (text {responses[0].text!r})")
        return [r.images[0] for r in responses]


class DiTRunner:
    """The DiT baseline with the backbone's parameter count, decoded by the same HART decoder."""

    def __init__(self, settings: Settings, device: torch.device, dtype: torch.dtype):
        from hart.tokenizer import HybridTokenizer
        from hart_vlm import HartVLMConfig, HartVLMProcessor
        from hart_vlm.text_tokenizer import load_text_tokenizer

        dit = _load_sibling("dit_baseline")
        text_tokenizer = load_text_tokenizer()
        config = HartVLMConfig.from_preset(settings.preset, tokenizer=text_tokenizer)
        self.processor = HartVLMProcessor(text_tokenizer, config)
        tok_cfg, text_cfg = config.image_tokenizer, config.text_config
        if settings.llm is not None:  # sized like the pretrained backbone
            from transformers import AutoConfig

            from hart_vlm.llms import KNOWN_LLMS, llm_folder

            text_cfg = AutoConfig.from_pretrained(llm_folder(settings.llm) if settings.llm in KNOWN_LLMS else settings.llm)
        target = backbone_parameters(text_cfg)
        self.dit_config = dit.matched_config(
            target, latent_channels=tok_cfg.z_channels, latent_size=tok_cfg.latent_size,
            text_vocab_size=text_cfg.vocab_size, hidden_size=text_cfg.hidden_size, num_heads=text_cfg.num_attention_heads,
        )
        torch.manual_seed(settings.seed)
        self.tokenizer = HybridTokenizer(tok_cfg).to(device=device, dtype=dtype).eval()
        self.dit = dit.TextConditionedDiT(self.dit_config).to(device=device, dtype=dtype).eval()
        self.device, self.num_steps, self.cfg = device, settings.dit_steps, settings.cfg
        self.stages = [(self.dit, "forward", "transformer"), (self.tokenizer, "decode_latent", "decoder")]
        self.parameters = {"dit": sum(p.numel() for p in self.dit.parameters()), "backbone_matched": target,
                           "image_tokenizer": sum(p.numel() for p in self.tokenizer.parameters()),
                           "dit_depth": self.dit_config.depth, "dit_width": self.dit_config.hidden_size,
                           "dit_mlp_ratio": self.dit_config.mlp_ratio}

    @torch.no_grad()
    def generate(self, batch: int, seed: int) -> list:
        from hart.images import tensor_to_pil

        inputs = self.processor([CONVERSATION] * batch, add_generation_prompt=True, padding_side="left")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        cond = self.dit.embed_text(inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device))
        latent = self.dit.sample(cond, num_steps=self.num_steps, cfg=self.cfg, generator=generator)
        return tensor_to_pil(self.tokenizer.decode_latent(latent))


# ------------------------------------------------------------------------------------------------
# 4. measuring one method (in a worker process)
# ------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _breakdown(record: dict, total: float) -> dict:
    seconds = {s: record["seconds"].get(s, 0.0) for s in STAGES[:-1]}
    seconds["other"] = max(total - sum(seconds.values()), 0.0)
    return {"seconds": seconds, "share": {s: v / total for s, v in seconds.items()}}


def measure_method(method: Method, settings: Settings) -> dict:
    device, dtype = torch.device(settings.device), getattr(torch, settings.dtype)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    runner = ARRunner(method, settings, device, dtype) if method.family == "ar" else DiTRunner(settings, device, dtype)
    rss_built = _rss_mb()
    # On the CPU the stage timers cost nothing (no synchronisation), so the timed calls carry them;
    # on a GPU they synchronise at every stage boundary, so the shares come from separate calls.
    timers_in_timed_calls = device.type == "cpu"

    def timed_call(batch: int, seed: int, instrumented: bool) -> tuple[float, dict | None]:
        with watch_stages(runner.stages if instrumented else [], device) as record:
            _sync(device)
            start = time.perf_counter()
            images = runner.generate(batch, seed)
            _sync(device)
            seconds = time.perf_counter() - start
        if len(images) != batch:
            raise RuntimeError(f"{method.name}: {len(images)} images for a batch of {batch}")
        return seconds, (_breakdown(record, seconds) if instrumented else None)

    batches = []
    for batch in settings.batch_sizes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(settings.warmup):
            timed_call(batch, settings.seed + i, instrumented=False)
        runs = [timed_call(batch, settings.seed + i, timers_in_timed_calls) for i in range(settings.repeats)]
        if not timers_in_timed_calls:
            runs_for_stages = [timed_call(batch, settings.seed + i, True) for i in range(settings.repeats)]
        else:
            runs_for_stages = runs
        latencies = [s for s, _ in runs]
        median = statistics.median(latencies)
        # the stage split of the call with the median duration (its parts add up to its total)
        by_duration = sorted(runs_for_stages, key=lambda run: run[0])
        stages = by_duration[(len(by_duration) - 1) // 2][1]
        batches.append({
            "batch": batch, "latency_s": median, "latency_s_runs": latencies, "images_per_s": batch / median,
            "stage_seconds": stages["seconds"], "stage_share": stages["share"],
            "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        })

    with flop_counter() as counter, watch_stages(runner.stages, device, counter) as record:
        runner.generate(1, settings.seed)
    total_flops = counter.get_total_flops()
    flops = {s: record["flops"].get(s, 0) for s in STAGES[:-1]}
    flops["other"] = total_flops - sum(flops.values())
    return {
        "method": method.name, "label": method.label, "family": method.family,
        "sampling": method.sampling, "model": method.model,
        "parameters": runner.parameters, "transformer_passes_per_image": record["calls"]["transformer"],
        "flops_per_image": total_flops, "flops_per_image_by_stage": flops, "batches": batches,
        "rss_after_build_mb": rss_built, "rss_isolated": True,
        # getrusage's high-water mark and psutil's RSS count slightly different pages: take the largest
        "peak_rss_mb": max(_peak_rss_mb(), rss_built, _rss_mb()),
    }


def run_worker(method: Method, settings: Settings) -> dict:
    """measure_method in a fresh interpreter, so that its peak RSS is its own. The child imports the
    same hart / hart_vlm as this process (their folder leads its PYTHONPATH)."""
    import hart_vlm

    library_root = str(Path(hart_vlm.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [library_root, os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "method.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", method.name, "--worker-out", str(out),
                   "--worker-settings", json.dumps(dataclasses.asdict(settings))]
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the {method.name} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------------
# 5. report: tables, JSON, plot, RESULTS.md
# ------------------------------------------------------------------------------------------------
def _fmt_count(n: float) -> str:
    return f"{n / 1e9:.2f}G" if n >= 1e9 else f"{n / 1e6:.2f}M"


def tables(result: dict) -> str:
    rows, sizes = result["methods"], result["setup"]["batch_sizes"]
    cuda = result["setup"]["device"].startswith("cuda")
    head = ["method", "transformer passes"]
    for b in sizes:
        head += [f"latency b{b} (s)", f"img/s b{b}"]
    head += ["GFLOPs / image", "RSS built / peak (MB)"] + (["peak CUDA b%d (MB)" % b for b in sizes] if cuda else [])
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for r in rows:
        cells = [r["label"], str(r["transformer_passes_per_image"])]
        for b in r["batches"]:
            cells += [f"{b['latency_s']:.3f}", f"{b['images_per_s']:.2f}"]
        cells += [f"{r['flops_per_image'] / 1e9:.2f}", f"{r['rss_after_build_mb']:.0f} / {r['peak_rss_mb']:.0f}"]
        cells += [f"{b['peak_cuda_mb']:.0f}" for b in r["batches"]] if cuda else []
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", "Share of each stage in the wall time of the median call:", "",
              "| method | batch | LLM / DiT passes | residual head | decoder | other | total (s) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        for b in r["batches"]:
            share = " | ".join(f"{100 * b['stage_share'][s]:.0f}%" for s in STAGES)
            lines.append(f"| {r['label']} | {b['batch']} | {share} | {sum(b['stage_seconds'].values()):.3f} |")
    peak = result.get("matmul_peak")
    if peak:
        lines += ["", f"Achieved GFLOP/s of the LLM / DiT passes (their FLOPs per image x batch / their seconds), against "
                      f"this machine's {peak['dtype']} matrix-product peak measured in the same run "
                      f"({peak['gflops']:.0f} GFLOP/s, {peak['size']}x{peak['size']} products):", "",
                  "| method | batch | GFLOP/s | of the peak |", "| --- | ---: | ---: | ---: |"]
        for r in rows:
            for b in r["batches"]:
                seconds = b["stage_seconds"].get("transformer", 0.0)
                if seconds > 0:
                    rate = r["flops_per_image_by_stage"]["transformer"] * b["batch"] / seconds / 1e9
                    lines.append(f"| {r['label']} | {b['batch']} | {rate:.1f} | {100 * rate / peak['gflops']:.0f}% |")
    lines += ["", "GFLOPs per image by stage (one batch-1 call, CFG rows included):", "",
              "| method | LLM / DiT passes | residual head | decoder | other | total |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        f = r["flops_per_image_by_stage"]
        lines.append(f"| {r['label']} | " + " | ".join(f"{f[s] / 1e9:.3f}" for s in STAGES)
                     + f" | {r['flops_per_image'] / 1e9:.3f} |")
    return "\n".join(lines)


def matmul_peak(dtype: str, device: torch.device, size: int = 2048, repeats: int = 10) -> dict:
    """GFLOP/s of square matrix products in `dtype` on `device` (the best of `repeats`), with the
    threads this process runs with: the ceiling the LLM passes are measured against."""
    a, b = (torch.randn(size, size, device=device).to(getattr(torch, dtype)) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return {"dtype": dtype, "size": size, "gflops": 2 * size**3 / best / 1e9}


def summary_line(result: dict) -> str | None:
    s = result["summary"]
    if s.get("next_scale_vs_raster") is None or s.get("next_scale_vs_diffusion") is None:
        return None
    return f"next-scale vs raster: {s['next_scale_vs_raster']:.1f}x; vs diffusion: {s['next_scale_vs_diffusion']:.1f}x"


def ratio_line(result: dict) -> str:
    parts = []
    for b, r in result["summary"]["by_batch"].items():
        if r["next_scale_vs_raster"] is not None and r["next_scale_vs_diffusion"] is not None:
            parts.append(f"batch {b}: {r['next_scale_vs_raster']:.1f}x vs raster, {r['next_scale_vs_diffusion']:.1f}x vs diffusion")
    return "throughput of (a) next-scale over the baselines: " + "; ".join(parts)


def header_lines(result: dict) -> list[str]:
    m, s, p = result["machine"], result["setup"], result["parameters"]
    lines = [
        f"machine: {m['cpu']}, {m['logical_cores']} logical cores ({m['usable_cores']} usable), torch {m['torch']} "
        f"({m['torch_threads']} threads: {s['threads_rule']}), transformers {m['transformers']}, diffusers {m['diffusers']}, "
        f"device {m['device']}" + (f" ({m['gpu']})" if "gpu" in m else "") + f", {result['date']}",
        f"load average (1 min) before / after: {result['load_average']['before'][0]:.2f} / "
        f"{result['load_average']['after'][0]:.2f}" + (" -- other processes were competing for the CPU; the "
                                                        "figures are noisier and slower than on an idle machine"
                                                        if result["load_average"]["busy"] else ""),
        f"preset {s['preset']} ({s['image_size']} px, scales {s['scales']}), {s['dtype']}, random weights, CFG {s['cfg']} "
        f"for every method, median of {s['repeats']} timed call(s) after {s['warmup']} warm-up call(s)",
    ]
    if p.get("backbone") is not None:
        lines.append(f"parameters: LLM backbone {_fmt_count(p['backbone'])}"
                     + (f", DiT {_fmt_count(p['dit'])} (depth {p['dit_depth']}, width {p['dit_width']}, "
                        f"MLP ratio {p['dit_mlp_ratio']:.2f})" if p.get("dit") else "")
                     + (f", residual head {_fmt_count(p['diffusion_head'])}" if p.get("diffusion_head") else "")
                     + (f", HART tokenizer {_fmt_count(p['image_tokenizer'])}" if p.get("image_tokenizer") else ""))
    return lines


def save_plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    rows, sizes = result["methods"], result["setup"]["batch_sizes"]
    fig = Figure(figsize=(8, 0.9 + 0.55 * len(rows) * len(sizes) / 2 + 0.5))
    ax = fig.add_subplot()
    height = 0.8 / len(sizes)
    for j, b in enumerate(sizes):
        values = [r["batches"][j]["images_per_s"] for r in rows]
        ys = [i + (j - (len(sizes) - 1) / 2) * height for i in range(len(rows))]
        bars = ax.barh(ys, values, height=height, label=f"batch {b}")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=7)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    rates = [b["images_per_s"] for r in rows for b in r["batches"]]
    if max(rates) / min(rates) > 20:  # several orders of magnitude: log axis, bars from a power of ten
        ax.set_xscale("log")
        ax.set_xlim(left=10 ** math.floor(math.log10(min(rates))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("images / s (log scale)")
    else:
        ax.set_xlabel("images / s")
    m, s = result["machine"], result["setup"]
    ax.set_title(f"{s['preset']} ({s['image_size']} px), {m.get('gpu', m['cpu'])}, {m['torch_threads']} CPU thread(s), "
                 f"{s['dtype']}, random weights, CFG {s['cfg']}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


RESULTS_HEADER = """# Evaluation results

Every figure here comes from a script in `evals/`, which prints it as a table and saves it as JSON
in `evals/results/`; each section names the command and the machine it ran on.
"""


def update_results_markdown(result: dict, path: Path, json_path: Path | None, plot_path: Path | None) -> None:
    """Writes this run's section of RESULTS.md, replacing the previous run of the same preset, backbone and device."""
    s = result["setup"]
    files = [f"`{_relative(p)}`" for p in (json_path, plot_path) if p is not None]
    name = s["preset"] if s.get("llm") is None else f"{s['preset']}_{Path(s['llm']).name}"
    title = s["preset"] if s.get("llm") is None else f"{s['preset']} preset with the {s['llm']} backbone"
    body = [f"## Speed: {title} on {s['device']}", "", f"`{result['command']}`", ""]
    body += [f"- {line}" for line in header_lines(result)]
    body += [f"- timed: {result['timed']}", "", tables(result), ""]
    if summary_line(result):
        body += [ratio_line(result), "", f"Last line of the script (largest batch): **{summary_line(result)}**", ""]
    if files:
        body += ["Files: " + ", ".join(files), ""]
    if plot_path is not None:
        body += [f"![throughput]({os.path.relpath(plot_path, path.parent)})", ""]
    write_results_section(path, f"speed:{name}:{s['device']}", body)


def write_results_section(path: Path, key: str, lines: list[str]) -> None:
    """Replaces the section between `<!-- key -->` and `<!-- /key -->` of RESULTS.md (appends it
    the first time); every eval script writes its sections through this."""
    begin, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    section = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else RESULTS_HEADER
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------------
# 6. main
# ------------------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict:
    import transformers

    info = _load_sibling("head_speed").machine_info(device)
    info["usable_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["transformers"] = transformers.__version__
    return info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=["tiny", "default", "hart_0_7b_1024px"])
    parser.add_argument("--llm", default=None,
                        help="a pretrained backbone (a known name such as smollm2, or a causal-LM folder) with the "
                             "preset's HART tokenizer; the DiT is sized like it")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--quick", action="store_true", help="1 warm-up call and 3 timed calls per batch size")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per batch size (default 2, --quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per batch size (default 5, --quick 3)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=[m.name for m in METHODS], choices=[m.name for m in METHODS])
    parser.add_argument("--cfg", type=float, default=4.5, help="classifier-free guidance of every method")
    parser.add_argument("--dit-steps", type=int, default=30, help="DDIM steps of the diffusion baseline")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default on the CPU: the idle cores, i.e. usable cores minus the 1-minute "
                             "load average, at least 1: threads that wait for a busy core stall every op)")
    parser.add_argument("--in-process", action="store_true", help="no subprocess per method (peak RSS then mixes)")
    parser.add_argument("--json", type=Path, default=None, help="default evals/results/speed_<preset>_<device>.json")
    parser.add_argument("--plot", type=Path, default=None, help="default evals/results/speed_<preset>.png")
    parser.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md", help="section written/replaced here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-settings", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        row = measure_method(METHODS_BY_NAME[args.worker], Settings(**json.loads(args.worker_settings)))
        args.worker_out.write_text(json.dumps(row))
        return row

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA build of torch and a GPU")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()
    threads = args.threads
    if threads is None and device.type == "cpu":
        threads = max(1, usable - round(load_before[0]))
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    try:
        settings = Settings(args.preset, args.device, args.dtype, tuple(args.batch_sizes), warmup, repeats,
                            args.cfg, args.dit_steps, threads, llm=args.llm)
    except ValueError as error:
        parser.error(str(error))
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        command = " ".join(["python evals/speed.py", *(argv if argv is not None else sys.argv[1:])])
        return _run(args, command, settings, device, usable, load_before)
    finally:
        torch.set_num_threads(previous_threads)  # main() may be called from a test or a notebook


def _run(args: argparse.Namespace, command: str, settings: Settings, device: torch.device, usable: int,
         load_before: tuple[float, float, float]) -> dict:
    """Measures every method, then prints and saves the report."""
    name = args.preset if args.llm is None else f"{args.preset}_{Path(args.llm).name}"
    json_path = args.json or HERE / "results" / f"speed_{name}_{device.type}.json"
    plot_path = args.plot or HERE / "results" / f"speed_{name}.png"

    from hart_vlm import HartVLMConfig

    config = HartVLMConfig.from_preset(args.preset)
    rows = []
    for name in args.methods:
        method = METHODS_BY_NAME[name]
        print(f"[speed] {method.label} ...", file=sys.stderr, flush=True)
        row = measure_method(method, settings) if args.in_process else run_worker(method, settings)
        row["rss_isolated"] = not args.in_process
        rows.append(row)
    load_after = os.getloadavg()

    by_name = {r["method"]: r for r in rows}
    batch = max(settings.batch_sizes)

    def ratio(a: str, b: str, size: int) -> float | None:
        """Throughput of method a over method b at one batch size."""
        if a not in by_name or b not in by_name:
            return None
        rate = {n: next(x["images_per_s"] for x in by_name[n]["batches"] if x["batch"] == size) for n in (a, b)}
        return rate[a] / rate[b]

    parameters = {}
    for r in rows:
        parameters.update({k: v for k, v in r["parameters"].items() if k not in parameters})
    parameters.setdefault("backbone", parameters.get("backbone_matched"))
    result = {
        "machine": machine(device),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "random_weights": True,
        "setup": {**dataclasses.asdict(settings), "device": str(device), "image_size": config.image_size,
                  "scales": list(config.image_tokenizer.v_patch_nums), "in_process": args.in_process,
                  "threads_rule": ("--threads" if args.threads else
                                   "idle cores at the start: usable cores - 1-min load average, >= 1"
                                   if device.type == "cpu" else "torch's default")},
        "timed": ("HartVLM.chat per batch: tokenize + prefill the prompt, 1 greedy text token, the forced image "
                  "(+ context block and <|image_end|>), PIL images; DiT: tokenize, pool the prompt, "
                  f"{settings.dit_steps} guided DDIM steps, decode, PIL"),
        "flops_method": "torch.utils.flop_counter.FlopCounterMode, one batch-1 call (CFG rows included): matmuls, "
                        "convolutions, attention (CPU sdpa with the CUDA kernels' formula); 2 FLOPs per multiply-add",
        "parameters": parameters,
        "load_average": {"before": list(load_before), "after": list(load_after), "usable_cores": usable,
                         "busy": max(load_before[0], load_before[1]) >= 0.5 * usable},
        "methods": rows,
        "matmul_peak": matmul_peak(settings.dtype, device),
        "summary": {"batch": batch, "next_scale_vs_raster": ratio("next_scale", "raster", batch),
                    "next_scale_vs_diffusion": ratio("next_scale", "diffusion", batch),
                    "by_batch": {str(b): {"next_scale_vs_raster": ratio("next_scale", "raster", b),
                                          "next_scale_vs_diffusion": ratio("next_scale", "diffusion", b)}
                                 for b in settings.batch_sizes}},
    }

    print("\n".join(header_lines(result)))
    print()
    print(tables(result))
    write_json(json_path, result)
    save_plot(result, plot_path)
    update_results_markdown(result, args.results_md, json_path, plot_path)
    print(f"\nwrote {json_path}, {plot_path}, {args.results_md}")
    line = summary_line(result)
    if line is not None:
        print(ratio_line(result))
        print(line)
    return result


if __name__ == "__main__":
    main()
