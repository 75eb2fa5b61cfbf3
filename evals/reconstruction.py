"""Reconstruction quality of the hybrid tokenizer: discrete-only vs hybrid vs continuous (issue 9).

    python evals/reconstruction.py                      # the embedded default model's tokenizer
    python evals/reconstruction.py --model PATH         # a saved HartVLM folder
    python evals/reconstruction.py --tokenizer PATH     # a HybridTokenizer folder (own or official HART)

Three decodings of every image, each scored with PSNR and SSIM (torchmetrics, RGB in [0, 1],
data range 1, per image, then averaged):
  discrete-only   decode(codes of all scales)                   = decoder(f_hat)
  hybrid          decode(codes, residual=residual tokens)       = decoder(f_hat + residual)
  continuous      decode_latent(encoding.latent)                = decoder(f), the autoencoder itself
HART's claim (HART §3.1, Table 5: reconstruction FID 1.09 discrete-only vs 0.30 hybrid) is that the
residual tokens close most of the gap between discrete-only and the continuous autoencoder. With
HART's exact token extraction f_hat + residual == f, so hybrid equals continuous by construction
(up to float rounding, reported as `hybrid_vs_continuous_max_abs`); what the table measures is how
large the discrete-only gap is that the residual tokens (and, in generation, the residual diffusion
head) have to close.

On the assembly renders each decoding also gets the assembly checker's part IoU (the colour
segmentation that evals/assembly_bench.py scores generated pictures with) against the render itself,
and its material check: the share of pictures drawn in the guide's material ("material", with how
many pictures showed enough furniture to read one). Both are the most a generated picture decoded
by this tokenizer can score there.
`--baseline PATH` evaluates a second tokenizer (a tokenizer folder, a saved HartVLM folder or
`default`) on the same images in the same run, e.g. the tokenizer before a decoder-only phase.

Image sets:
  assembly_heldout  `--num` renders of held-out assembly guides (guide i, step i mod its step count)
  photos            the RGB photos bundled in scikit-image's wheel, each as its centre crop and the
                    nine half-side crops of a 3 x 3 grid, resized to the tokenizer's image size
                    (at most `--num` of them)
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hart_vlm.scripts import load_script, write_json

HERE = Path(__file__).resolve().parent
DECODINGS = ("discrete", "hybrid", "continuous")
DECODING_LABELS = {"discrete": "discrete-only", "hybrid": "hybrid (discrete + residual)",
                   "continuous": "continuous (decode_latent(latent))"}
# RGB photos of skimage.data that ship inside the wheel (no download); `cat` is the same photo as
# `chelsea`, and colorwheel / logo are drawings, so they are left out.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def _load_speed():
    """evals/speed.py (machine description, RESULTS.md sections), registered as speed.py registers
    its siblings."""
    return load_script(HERE / "speed.py", "evals_speed")


# ------------------------------------------------------------------------------------------------
# 1. shared by the evals that score a trained model: what to evaluate, the RESULTS.md section
# ------------------------------------------------------------------------------------------------
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="a packaged model's name (tiny, smollm2) or a saved HartVLM folder "
                             "(default: the default model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "auto"),
                        help="the model's dtype ('auto': load_default's choice, bf16 on a GPU that supports it; "
                             "float32 weights on a CPU, with bf16 products in many-row passes where they pay; "
                             "the residual heads stay float32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="default evals/results/<eval>_<model>.json")
    parser.add_argument("--plot", type=Path, default=None,
                        help="default: beside --json with the suffix .png, else evals/results/<eval>_<model>.png")
    parser.add_argument("--results-md", type=Path, default=None,
                        help="write this run's section there (default: evals/RESULTS.md when the embedded default "
                             "model was evaluated, nowhere otherwise)")


def add_image_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """The image-sampling flags the generation evals share (read back with `image_sampling`)."""
    parser.add_argument("--image-top-k", type=int, nargs=2, default=None, metavar=("EARLY", "LATE"),
                        help="image-token top-k on the early and the late scales, 0 = off "
                             "(default: SamplingConfig's, HART's (600, 300))")
    parser.add_argument("--image-top-k-switch", type=int, default=None, metavar="N",
                        help="the first N scales use the EARLY top-k, the rest the LATE one (default: SamplingConfig's)")
    parser.add_argument("--diffusion-cfg", type=float, default=None,
                        help="guidance of the residual head (default: SamplingConfig's, 0 = unguided)")
    parser.add_argument("--diffusion-temperature", type=float, default=None,
                        help="scale of the noise the residual head injects per step, 0 = none "
                             "(default: SamplingConfig's)")


def image_sampling(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The SamplingConfig fields set by `add_image_sampling_arguments`' flags; exits with status 2 on a
    negative value."""
    if args.image_top_k is not None and min(args.image_top_k) < 0:
        parser.error(f"--image-top-k values must be >= 0, got {args.image_top_k}")
    for flag, value in (("--diffusion-cfg", args.diffusion_cfg), ("--diffusion-temperature", args.diffusion_temperature)):
        if value is not None and value < 0:
            parser.error(f"{flag} must be >= 0, got {value}")
    if args.image_top_k_switch is not None and args.image_top_k_switch < 0:
        parser.error(f"--image-top-k-switch must be >= 0, got {args.image_top_k_switch}")
    return {k: v for k, v in (("image_top_k", args.image_top_k), ("image_top_k_switch", args.image_top_k_switch),
                              ("diffusion_cfg", args.diffusion_cfg),
                              ("diffusion_temperature", args.diffusion_temperature)) if v is not None}


def load_model(parser: argparse.ArgumentParser, spec: str | None, device: torch.device, dtype: str = "float32"):
    """(model, name, is_default): the packaged model named `spec`, the saved model in folder
    `spec`, else the default model, in `dtype` (a torch dtype's name or "auto"); exits with status 2
    (argparse's usage error) when there is neither."""
    from hart_vlm import default_model

    dtype = dtype if dtype == "auto" else getattr(torch, dtype)

    if spec is not None and spec not in default_model.PACKAGED_MODELS:
        path = Path(spec)
        if not (path / "config.json").is_file():
            parser.error(f"--model {spec}: neither a packaged model's name {default_model.PACKAGED_MODELS} "
                         "nor a saved HartVLM folder (no config.json)")
        return default_model.load_model(path, device, dtype), path.resolve().name, False
    name = spec or default_model.DEFAULT_MODEL
    if not default_model.has_default_model(name):
        parser.error(f"no model to evaluate: the packaged model {name!r} is not in this installation "
                     f"(looked in {default_model.default_model_path(name)}); pass --model PATH (a saved HartVLM folder)")
    return default_model.load_default(name, device=device, dtype=dtype), name, name == default_model.DEFAULT_MODEL


def load_baseline(parser: argparse.ArgumentParser, spec: str, device: torch.device):
    """(tokenizer in float32 eval mode, its name) for `--baseline`: a tokenizer folder, a saved HartVLM
    folder or `default`; exits with status 2 when it is none of them."""
    from hart_vlm.default_model import load_image_tokenizer

    try:
        tokenizer = load_image_tokenizer(spec, device)
    except FileNotFoundError as error:
        parser.error(f"--baseline {spec}: {error}")
    return tokenizer.eval(), "default" if spec == "default" else Path(spec).resolve().name


def machine_line(machine: dict) -> str:
    return (f"{machine['cpu']}, {machine['logical_cores']} logical cores, torch {machine['torch']} "
            f"({machine['torch_threads']} threads), transformers {machine['transformers']}, device {machine['device']}"
            + (f" ({machine['gpu']})" if "gpu" in machine else ""))


def write_results_section(path: Path, key: str, lines: list[str]) -> None:
    _load_speed().write_results_section(path, key, lines)


def write_outputs(args: argparse.Namespace, eval_name: str, result: dict, is_default: bool, save_plot,
                  results_section) -> None:
    """Saves an eval's `result` as JSON, its plot (`save_plot(plot_path)`) and its RESULTS.md section
    (`results_section(json_path, plot_path, md_path)` -> lines) where `add_model_arguments`' flags say,
    by default evals/results/<eval>_<model>.json / .png and, for the embedded default model, evals/RESULTS.md.
    A --json without --plot puts the plot beside it, so that a run saved elsewhere never replaces the
    default run's plot."""
    json_path = args.json or HERE / "results" / f"{eval_name}_{result['source']}.json"
    plot_path = args.plot or json_path.with_suffix(".png")
    write_json(json_path, result)
    save_plot(plot_path)
    md_path = args.results_md or (HERE / "RESULTS.md" if is_default else None)
    if md_path is not None:
        # one section per JSON file: runs of one model under other settings (--json NAME) do not replace each other
        key = json_path.stem.removeprefix(f"{eval_name}_")
        write_results_section(md_path, f"{eval_name}:{key}", results_section(json_path, plot_path, md_path))
    print(f"wrote {json_path}, {plot_path}" + (f", {md_path}" if md_path else ""))


def relative(path: Path) -> str:
    return _load_speed()._relative(path)


# ------------------------------------------------------------------------------------------------
# 2. the images
# ------------------------------------------------------------------------------------------------
def assembly_images(num: int, size: int, seed: int) -> torch.Tensor:
    """Renders of held-out guides: guide i at step i mod its step count. # (num, 3, size, size)"""
    from hart.images import images_to_tensor
    from hart_vlm.data.assembly import generate_guide

    renders = []
    for i in range(num):
        guide = generate_guide(i, split="heldout", seed=seed, resolution=size)
        renders.append(guide.steps[i % len(guide.steps)].image)
    return images_to_tensor(renders, size)


def assembly_scorer(num: int, size: int, seed: int):
    """score(i, image) -> (part IoU, material right) of `image` against image i of
    `assembly_images(num, size, seed)`, scored as the assembly checker scores a step: the mean part
    IoU (None when no part is in place) and whether the picture is drawn in the guide's material
    (None when too little furniture shows to read one)."""
    from hart_vlm.data.assembly import AssemblyChecker, generate_guide

    checker = AssemblyChecker()
    guides = [generate_guide(i, split="heldout", seed=seed, resolution=size) for i in range(num)]

    def score(i: int, image: Image.Image) -> tuple[float | None, bool | None]:
        guide = guides[i]
        j = i % len(guide.steps)
        steps = [(step.text, None) for step in guide.steps[:j]] + [(guide.steps[j].text, image)]
        step = checker.score(guide, steps).steps[j]
        return step.iou, None if step.material is None else step.material == guide.plan.material

    return score


def photo_crops(photo_HW3: np.ndarray) -> list[Image.Image]:
    """The centre square of a photo, then the nine half-side crops of a 3 x 3 grid."""
    image = Image.fromarray(photo_HW3).convert("RGB")
    w, h = image.size
    side = min(w, h)
    crops = [image.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))]
    half = side // 2
    for y in np.linspace(0, h - half, 3).round().astype(int):
        for x in np.linspace(0, w - half, 3).round().astype(int):
            crops.append(image.crop((int(x), int(y), int(x) + half, int(y) + half)))
    return crops


def photo_images(num: int, size: int) -> torch.Tensor:
    """Up to `num` crops of scikit-image's bundled photos, photo by photo. # (<= num, 3, size, size)"""
    from skimage import data

    from hart.images import images_to_tensor

    crops = [crop for name in PHOTOS for crop in photo_crops(getattr(data, name)())]
    return images_to_tensor(crops[:num], size)


# ------------------------------------------------------------------------------------------------
# 3. reconstruction and metrics
# ------------------------------------------------------------------------------------------------
@dataclass
class SetResult:
    psnr: dict[str, torch.Tensor]  # decoding -> (N,) dB per image
    ssim: dict[str, torch.Tensor]  # decoding -> (N,)
    hybrid_vs_continuous_max_abs: float  # largest pixel difference between the two, in [0, 1] units
    examples: dict[str, torch.Tensor]  # "original" and every decoding -> (3, H, W) in [0, 1], first image
    iou: dict[str, torch.Tensor] | None = None  # decoding -> (N,) part IoU (NaN: no part in place), if scored
    material: dict[str, torch.Tensor] | None = None  # decoding -> (N,) 1 / 0: requested material or not (NaN: unread)


@torch.no_grad()
def evaluate_set(tokenizer, images_B3HW: torch.Tensor, batch_size: int = 16, assembly_score=None) -> SetResult:
    """PSNR / SSIM of the three decodings of every image (RGB in [0, 1], data range 1), and the part
    IoU and material of each by `assembly_score(i, PIL image)` when given (see assembly_scorer)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if images_B3HW.shape[0] == 0:
        raise ValueError("images_B3HW must hold at least one image")
    device = tokenizer.quant_conv.weight.device
    psnr = {d: [] for d in DECODINGS}
    ssim = {d: [] for d in DECODINGS}
    iou = {d: [] for d in DECODINGS}
    material = {d: [] for d in DECODINGS}
    max_abs, examples = 0.0, {}
    for start in range(0, images_B3HW.shape[0], batch_size):
        batch = images_B3HW[start:start + batch_size].to(device)  # (b, 3, H, W) in [-1, 1]
        enc = tokenizer.encode(batch)
        decoded = {"discrete": tokenizer.decode(enc.indices),
                   "hybrid": tokenizer.decode(enc.indices, residual=enc.residual),
                   "continuous": tokenizer.decode_latent(enc.latent)}
        target = (batch.double() + 1) / 2  # (b, 3, H, W) in [0, 1]
        for name, images in decoded.items():
            pred = (images.double() + 1) / 2
            psnr[name].append(peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3)).cpu())
            ssim[name].append(structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none").cpu())
            if assembly_score is not None:
                pixels = (pred * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()  # (b, H, W, 3)
                for k, array in enumerate(pixels):
                    value, right = assembly_score(start + k, Image.fromarray(array))
                    iou[name].append(float("nan") if value is None else value)
                    material[name].append(float("nan") if right is None else float(right))
        max_abs = max(max_abs, float((decoded["hybrid"] - decoded["continuous"]).abs().max()) / 2)
        if not examples:
            examples = {"original": target[0].float().cpu(),
                        **{name: ((images[0].float() + 1) / 2).cpu() for name, images in decoded.items()}}
    def scored(values):
        return {d: torch.tensor(v, dtype=torch.float64) for d, v in values.items()} if assembly_score is not None else None

    return SetResult({d: torch.cat(v) for d, v in psnr.items()}, {d: torch.cat(v) for d, v in ssim.items()},
                     max_abs, examples, scored(iou), scored(material))


def summarize(name: str, result: SetResult) -> dict:
    """The JSON rows of one image set, and how much of the discrete-only PSNR / SSIM gap to the
    continuous autoencoder the hybrid decoding closes (1.0 when hybrid == continuous)."""
    rows = []
    for d in DECODINGS:
        rows.append({"images": name, "decoding": d, "count": int(result.psnr[d].numel()),
                     "psnr": float(result.psnr[d].mean()), "psnr_std": float(result.psnr[d].std(unbiased=False)),
                     "ssim": float(result.ssim[d].mean()), "ssim_std": float(result.ssim[d].std(unbiased=False))})
        if result.iou is not None:
            scored = result.iou[d][~result.iou[d].isnan()]
            rows[-1].update(iou=float(scored.mean()) if scored.numel() else None,
                            iou_std=float(scored.std(unbiased=False)) if scored.numel() else None,
                            iou_count=int(scored.numel()))
        if result.material is not None:
            read = result.material[d][~result.material[d].isnan()]
            rows[-1].update(material_accuracy=float(read.mean()) if read.numel() else None,
                            material_count=int(read.numel()))
    by = {r["decoding"]: r for r in rows}
    gap = {}
    for metric in ("psnr", "ssim"):
        full = by["continuous"][metric] - by["discrete"][metric]
        gap[metric] = (by["hybrid"][metric] - by["discrete"][metric]) / full if abs(full) > 1e-9 else None
    return {"rows": rows, "gap_closed": gap, "hybrid_vs_continuous_max_abs": result.hybrid_vs_continuous_max_abs}


# ------------------------------------------------------------------------------------------------
# 4. report: table, plot, RESULTS.md
# ------------------------------------------------------------------------------------------------
def evaluated_tokenizers(result: dict) -> list[tuple[str, dict]]:
    """(source, sets) of every tokenizer of a run: the baseline first when there is one."""
    runs = [(result["baseline"]["source"] + " (baseline)", result["baseline"]["sets"])] if result.get("baseline") else []
    return runs + [(result["source"], result["sets"])]


def table(result: dict) -> str:
    lines = ["| tokenizer | images | decoding | n | PSNR (dB) | SSIM | part IoU | material |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for source, sets in evaluated_tokenizers(result):
        for s in sets.values():
            for r in s["rows"]:
                iou = f"{r['iou']:.3f} ± {r['iou_std']:.3f}" if r.get("iou") is not None else "—"
                material = (f"{r['material_accuracy']:.2f} ({r['material_count']})"
                            if r.get("material_accuracy") is not None else "—")
                lines.append(f"| {source} | {r['images']} | {DECODING_LABELS[r['decoding']]} | {r['count']} | "
                             f"{r['psnr']:.2f} ± {r['psnr_std']:.2f} | {r['ssim']:.4f} ± {r['ssim_std']:.4f} | {iou} "
                             f"| {material} |")
    return "\n".join(lines)


def gap_lines(result: dict) -> list[str]:
    lines = []
    for source, sets in evaluated_tokenizers(result):
        lines += [f"{source}, {line}" for line in _gap_lines(sets)]
    return lines


def _gap_lines(sets: dict) -> list[str]:
    lines = []
    for name, s in sets.items():
        by = {r["decoding"]: r for r in s["rows"]}
        gap = s["gap_closed"]["psnr"]
        lines.append(f"{name}: discrete-only {by['discrete']['psnr']:.2f} dB, hybrid {by['hybrid']['psnr']:.2f} dB, "
                     f"continuous {by['continuous']['psnr']:.2f} dB; the residual closes "
                     + (f"{100 * gap:.1f}%" if gap is not None else "n/a (no gap)")
                     + f" of the PSNR gap; max |hybrid - continuous| = {s['hybrid_vs_continuous_max_abs']:.2e}")
    return lines


def save_plot(result: dict, examples: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    from matplotlib.figure import Figure

    sets = list(result["sets"])
    fig = Figure(figsize=(9, 3 + 2.2 * len(sets)))
    grid = fig.add_gridspec(1 + len(sets), 2, height_ratios=[1.3] + [1] * len(sets))
    width = 0.8 / len(DECODINGS)
    for col, metric in enumerate(("psnr", "ssim")):
        ax = fig.add_subplot(grid[0, col])
        for j, d in enumerate(DECODINGS):
            values = [next(r[metric] for r in result["sets"][s]["rows"] if r["decoding"] == d) for s in sets]
            bars = ax.bar([i + (j - 1) * width for i in range(len(sets))], values, width, label=DECODING_LABELS[d])
            ax.bar_label(bars, labels=[f"{v:.2f}" if metric == "psnr" else f"{v:.3f}" for v in values], fontsize=6)
        ax.set_xticks(range(len(sets)), sets, fontsize=8)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        if col == 0:
            ax.legend(fontsize=6)
    for row, s in enumerate(sets, start=1):
        ax = fig.add_subplot(grid[row, :])
        strip = torch.cat([examples[s][k] for k in ("original", *DECODINGS)], dim=2)  # (3, H, 4W)
        ax.imshow(strip.clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(f"{s}: original | discrete-only | hybrid | continuous", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"reconstruction, {result['source']} tokenizer ({result['image_size']} px)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def results_section(result: dict, json_path: Path, plot_path: Path, md_path: Path) -> list[str]:
    t = result["tokenizer"]
    return [f"## Reconstruction: {result['source']} tokenizer", "", f"`{result['command']}`", "",
            f"- machine: {machine_line(result['machine'])}, {result['date']}",
            f"- tokenizer: {result['image_size']} px, scales {t['v_patch_nums']}, codebook {t['vocab_size']}, "
            f"z {t['z_channels']}; PSNR / SSIM from torchmetrics on RGB in [0, 1], mean ± std over images; part IoU: "
            "the assembly checker's colour segmentation against the render, material: the share of pictures drawn "
            "in the guide's material (pictures read); both the ceiling of a generated picture's",
            f"- images: {result['image_sets']['assembly_heldout']}; {result['image_sets']['photos']}", "",
            table(result), "", *[f"- {line}" for line in gap_lines(result)], "",
            "With HART's exact token extraction f_hat + residual == latent, so hybrid equals continuous by "
            "construction; the discrete-only row is the gap that the residual tokens close.", "",
            f"Files: `{relative(json_path)}`, `{relative(plot_path)}`", "",
            f"![reconstruction]({os.path.relpath(plot_path, md_path.parent)})", ""]


# ------------------------------------------------------------------------------------------------
# 5. main
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--tokenizer", type=Path, default=None, help="a HybridTokenizer folder (instead of --model)")
    parser.add_argument("--num", type=int, default=64, help="images per set (photos: at most 70 crops)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--baseline", default=None,
                        help="also evaluate this tokenizer on the same images: a tokenizer folder, a saved HartVLM "
                             "folder or `default` (the embedded model's)")
    args = parser.parse_args(argv)
    if args.num < 1 or args.batch_size < 1:
        parser.error("--num and --batch-size must be >= 1")
    if args.model is not None and args.tokenizer is not None:
        parser.error("give --model or --tokenizer, not both")
    device = torch.device(args.device)

    from hart.tokenizer import HybridTokenizer

    if args.tokenizer is not None:
        if not (args.tokenizer / "config.json").is_file():
            parser.error(f"--tokenizer {args.tokenizer}: not a tokenizer folder (no config.json)")
        tokenizer = HybridTokenizer.from_pretrained(args.tokenizer, device)
        source, is_default = args.tokenizer.resolve().name, False
    else:
        model, source, is_default = load_model(parser, args.model, device, args.dtype)
        tokenizer = model.image_tokenizer
    tokenizer = tokenizer.float().eval()
    size = tokenizer.config.image_size
    baseline = None
    if args.baseline is not None:
        baseline, baseline_source = load_baseline(parser, args.baseline, device)
        if baseline.config.image_size != size:
            parser.error(f"--baseline {args.baseline}: {baseline.config.image_size} px images, the evaluated "
                         f"tokenizer's are {size} px")

    sets = {"assembly_heldout": assembly_images(args.num, size, args.seed), "photos": photo_images(args.num, size)}
    scorers = {"assembly_heldout": assembly_scorer(args.num, size, args.seed), "photos": None}

    def evaluate(tok):
        return {name: evaluate_set(tok, images, args.batch_size, scorers[name]) for name, images in sets.items()}

    evaluated = evaluate(tokenizer)
    result = {
        "machine": _load_speed().machine(device),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python evals/reconstruction.py", *(argv if argv is not None else sys.argv[1:])]),
        "source": source,
        "tokenizer": tokenizer.config.to_dict(),
        "image_size": size,
        "image_sets": {
            "assembly_heldout": f"{sets['assembly_heldout'].shape[0]} held-out assembly renders (seed {args.seed})",
            "photos": f"{sets['photos'].shape[0]} crops of scikit-image's photos {', '.join(PHOTOS)}",
        },
        "sets": {name: summarize(name, r) for name, r in evaluated.items()},
    }
    if baseline is not None:
        result["baseline"] = {"source": baseline_source, "argument": args.baseline, "tokenizer": baseline.config.to_dict(),
                              "sets": {name: summarize(name, r) for name, r in evaluate(baseline).items()}}
    print(table(result))
    print("\n".join(gap_lines(result)))
    write_outputs(args, "reconstruction", result, is_default,
                  lambda path: save_plot(result, {name: r.examples for name, r in evaluated.items()}, path),
                  lambda *paths: results_section(result, *paths))
    return result


if __name__ == "__main__":
    main()
