"""Where do the generated pictures go wrong? Scale forcing on held-out guides (issue 8).

    python evals/scale_forcing.py                      # the embedded default model, 20 guides
    python evals/scale_forcing.py --model PATH --num 50 --forced 0 2 4 6
    python evals/scale_forcing.py --forced 6 --diffusion-temperature 0   # the residual head alone
    python evals/scale_forcing.py --forced 0 --context own   # earlier steps show the model's own pictures

The assembly benchmark (evals/assembly_bench.py) scores pictures drawn after the model's own text and
its own earlier pictures. This eval takes text and context out of the question: for step j of held-out
guide i the model is given the true conversation up to that step (the request, the overview line when
`--overview`, steps 1..j-1 with their rendered pictures, step j's text) and draws step j's picture by
next-scale prediction (hart_vlm/generation.py, CFG `--cfg`, SamplingConfig's sampling unless a flag
sets it), except that the codes of the first F scales are not sampled but copied from the render's own codes
(`HybridTokenizer.encode`). F = 0 is the model alone; F = K (all scales) leaves only the residual head
to the model. All values of F in `--forced` are drawn as one batch from the same cached context, and
the residual head on and off from the same codes (the head samples after the last scale).
`--context own` puts the model's own earlier pictures (of the row with the fewest copied scales, re-encoded
by the tokenizer as any picture in a prompt is) where the renders were: the step from here to the
assembly benchmark, where every earlier picture is the model's.
Two reference rows decode the render's own codes, with its true residual ("hybrid") and without
("discrete"): the most a picture decoded by this tokenizer can score.

Each picture is scored by `AssemblyChecker().score(guide, [(true text, picture) ...])`, so against the
render of the state the true texts describe: part IoU (colour segmentation), PSNR and the share of
pictures drawn in the requested material (`material_accuracy`), mean per story then over stories.
"code match" is the fraction of a scale's sampled codes equal to the render's codes (F = 0 row; CFG
changes which code wins, so it is no accuracy of the model's argmax).

Reading it: if copying the first one or two scales (the layout: 1x1, 2x2) lifts IoU most of the way to
the reference, the model's coarse decisions are what the pictures lack; if IoU only rises with the last
scales, it is the detail.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hart_vlm.scripts import load_script

HERE = Path(__file__).resolve().parent


def _load_reconstruction():
    """evals/reconstruction.py, for the model loading and the RESULTS.md section writer it shares."""
    return load_script(HERE / "reconstruction.py", "evals_reconstruction")


def forcing_generator(model, sampling, generator: torch.Generator, forced_scales: list[int]):
    """A picture drawer whose batch row b copies the true codes of the first `forced_scales[b]`
    scales (set `true_codes` before drawing) and records what it drew (`drawn`)."""
    from hart_vlm.generation import DecodeState, PictureDrawer
    from hart_vlm.generation.pictures import finish
    from hart_vlm.layout import TEXT_BLOCK

    class ScaleForcingDrawer(PictureDrawer):
        def __init__(self):
            n = len(forced_scales)
            guided = sampling.cfg > 0 or (sampling.use_residual and sampling.head_cfg > 0)
            super().__init__(model, sampling, DecodeState(model, n, guided), generator)
            self.forced = torch.tensor(forced_scales, device=model.device)
            self.true_codes: list[torch.Tensor] = []  # K x (pn_k²,) long
            self.drawn: list[torch.Tensor] = []  # K x (n, pn_k²), filled by sample_codes

        def sample_codes(self, h, k):
            codes = super().sample_codes(h, k)
            copy = self.forced > k
            codes[copy] = self.true_codes[k].to(codes.device)
            self.drawn.append(codes.clone())
            return codes

        def draw_all(self, input_ids, pixel_values):
            """Pictures for the prompt `input_ids` (1, L) (ending just before an <|image_start|>),
            one per row of `forced_scales`, all from one cached context."""
            state, n = self.state, len(forced_scales)
            self.drawn = []
            embeds, blocks, _, _ = model.embed_inputs(input_ids, pixel_values)
            state.B = 1
            state.prefill(embeds, torch.ones_like(input_ids), blocks)
            # one cached context for every row: cond rows 0..n-1, unconditional twins n..2n-1
            idx = torch.tensor([0] * n + ([1] * n if state.guided else []), device=input_ids.device)
            state.cache.reorder_cache(idx)
            state.mask, state.blocks, state.next_pos = state.mask[idx], state.blocks[idx], state.next_pos[idx]
            state.B, rows_of_context = n, idx.shape[0]
            ids = torch.full((rows_of_context, 1), model.vocab.image_start_id, device=input_ids.device)
            rows = torch.arange(n, device=input_ids.device)
            state.hide_context(rows)  # the unconditional twins see only the picture (as in generation)
            hidden = state.feed(model.embed_ids(ids), torch.ones_like(ids, dtype=torch.bool), torch.full_like(ids, TEXT_BLOCK))
            images, _ = finish(self.draw(rows, hidden[:, -1]))  # previews dropped
            return images

    return ScaleForcingDrawer()


def _score(checker, guide, images, resolution) -> dict:
    score = checker.score(guide, [(step.text, image) for step, image in zip(guide.steps, images)], resolution)
    return {"iou": score.mean_iou, "psnr": score.mean_psnr, "material": score.material_accuracy}


def evaluate(model, guides, forced: list[int], cfg: float, seed: int, overview: bool, sampling: dict | None = None,
             context: str = "true") -> dict:
    """Scores of every (F, residual head) row and of the two references, per story. `context`: the
    pictures of the earlier steps are the renders ("true") or the model's own pictures of the row with
    the fewest copied scales, with the same residual-head setting ("own")."""
    from hart_vlm.data.assembly import AssemblyChecker
    from hart_vlm.sampling import SamplingConfig

    checker, resolution = AssemblyChecker(), model.config.image_size
    tok = model.image_tokenizer
    K = model.layout.num_scales
    rows = {(f, head): [] for f in forced for head in (True, False)}
    refs = {"hybrid": [], "discrete": []}
    matches = [[] for _ in range(K)]  # F = 0 row: fraction of codes equal to the render's, per scale
    for i, guide in enumerate(guides):
        start = time.perf_counter()
        batch = model.processor(guide.to_messages(overview=overview)).to(model.device)
        input_ids, pixels = batch["input_ids"], batch["pixel_values"]
        starts = (input_ids[0] == model.vocab.image_start_id).nonzero()[:, 0].tolist()
        with torch.no_grad():
            enc = tok.encode(pixels.to(tok.quantize.embedding.weight.dtype))
            refs["hybrid"].append(_score(checker, guide, _pil(tok.decode(enc.indices, enc.residual)), resolution))
            refs["discrete"].append(_score(checker, guide, _pil(tok.decode(enc.indices)), resolution))
        drawn = {key: [] for key in rows}
        for head in (True, False):
            for j, s in enumerate(starts):
                if context == "own" and j:
                    seen = torch.stack([model.processor.load_image(p) for p in drawn[(forced[0], head)]])
                else:
                    seen = pixels[:j]
                generator = torch.Generator(device=model.device).manual_seed(seed + 1000 * i + j)
                config = SamplingConfig.from_kwargs(**(sampling or {}), cfg=cfg, use_residual=head)
                gen = forcing_generator(model, config, generator, forced)
                gen.true_codes = [codes[j] for codes in enc.indices]
                with torch.no_grad():
                    images = gen.draw_all(input_ids[:, :s], seen.to(model.device) if j else None)
                for f, image in zip(forced, images):
                    drawn[(f, head)].append(image)
                if head and 0 in forced:
                    row = forced.index(0)
                    for k in range(K):
                        matches[k].append(float((gen.drawn[k][row] == gen.true_codes[k]).float().mean()))
        for key, images in drawn.items():
            rows[key].append(_score(checker, guide, images, resolution))
        print(f"[scale_forcing] guide {i + 1}/{len(guides)}: {len(starts)} steps, {time.perf_counter() - start:.1f} s",
              file=sys.stderr, flush=True)
    return {"rows": [{"forced_scales": f, "use_residual": head, **_mean(rows[(f, head)]), "per_story": rows[(f, head)]}
                     for f in forced for head in (True, False)],
            "references": {name: {**_mean(stories), "per_story": stories} for name, stories in refs.items()},
            "code_match_free": [float(np.mean(m)) if m else None for m in matches]}


def _pil(images):
    from hart.images import tensor_to_pil

    return [tensor_to_pil(image) for image in images]


def _mean(stories: list[dict]) -> dict:
    out = {}
    for key in ("iou", "psnr", "material"):
        values = [s[key] for s in stories if s.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _scale_names(model) -> list[str]:
    return [f"{pn}x{pn}" for pn in model.layout.v_patch_nums]


def table(result: dict) -> str:
    names = result["scales"]
    lines = ["| scales copied from the render | residual head | part IoU | PSNR (dB) | material |",
             "| --- | --- | ---: | ---: | ---: |"]
    for r in result["rows"]:
        f = r["forced_scales"]
        copied = "none (the model draws all)" if f == 0 else f"first {f} ({', '.join(names[:f])})"
        lines.append(f"| {copied} | {'on' if r['use_residual'] else 'off'} | {r['iou']:.3f} | {r['psnr']:.2f} | "
                     f"{_fmt(r.get('material'))} |")
    for name, ref in result["references"].items():
        label = "render's codes + true residual" if name == "hybrid" else "render's codes, no residual"
        lines.append(f"| reference: {label} | - | {ref['iou']:.3f} | {ref['psnr']:.2f} | {_fmt(ref.get('material'))} |")
    match = result["code_match_free"]
    lines += ["", "| scale | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names),
              "| sampled codes equal to the render's (nothing copied, head on) | "
              + " | ".join("n/a" if m is None else f"{m:.2f}" for m in match) + " |"]
    return "\n".join(lines)


def save_plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = [("iou", "part IoU"), ("psnr", "PSNR (dB)"), ("material", "material (share of pictures)")]
    panels = [(key, title) for key, title in panels if result["references"]["hybrid"].get(key) is not None]
    fig = Figure(figsize=(4 * len(panels), 3))
    for p, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for head in (True, False):
            rows = [r for r in result["rows"] if r["use_residual"] == head]
            rows = [r for r in rows if r.get(key) is not None]
            ax.plot([r["forced_scales"] for r in rows], [r[key] for r in rows], marker="o",
                    linestyle="-" if head else "--", label=f"residual head {'on' if head else 'off'}")
        for name, style in (("hybrid", ":"), ("discrete", "-.")):
            ax.axhline(result["references"][name][key], color="gray", linestyle=style, label=f"render's codes ({name})")
        ax.set_xlabel("scales copied from the render")
        ax.set_title(title, fontsize=9)
    fig.axes[0].legend(fontsize=6)
    fig.suptitle(f"scale forcing, {result['source']} model, {result['setup']['num']} held-out guides, "
                 f"CFG {result['setup']['cfg']:g}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def results_section(result: dict, json_path: Path, plot_path: Path, md_path: Path) -> list[str]:
    rec = _load_reconstruction()
    s = result["setup"]
    seen = "the model's own pictures" if s.get("context") == "own" else "the renders"
    return [f"## Scale forcing: {result['source']} model", "", f"`{result['command']}`", "",
            f"- machine: {rec.machine_line(result['machine'])}, {result['date']}",
            f"- {s['num']} held-out guides (seed {s['seed']}), every step's picture drawn after the true texts up to its "
            f"own{' (with the overview line)' if s['overview'] else ''} and, for the earlier steps, "
            f"{seen}, CFG {s['cfg']:g}, "
            f"sampling {s['sampling'] or 'SamplingConfig defaults'}, picture seed = seed + 1000 i + j; "
            f"{result['seconds']:.0f} s",
            "", table(result), "", f"Files: `{rec.relative(json_path)}`, `{rec.relative(plot_path)}`", "",
            f"![scale forcing]({os.path.relpath(plot_path, md_path.parent)})", ""]


def main(argv: list[str] | None = None) -> dict:
    rec = _load_reconstruction()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_model_arguments(parser)
    parser.add_argument("--num", type=int, default=20, help="held-out guides")
    parser.add_argument("--forced", type=int, nargs="+", default=None,
                        help="numbers of leading scales copied from the render (default: 0 to K, every one)")
    parser.add_argument("--cfg", type=float, default=4.5, help="classifier-free guidance (4.5: HART's, as in the records of evals/results/scale_forcing/; generate_story's default is now 3)")
    parser.add_argument("--overview", action=argparse.BooleanOptionalAction, default=True,
                        help="open the true answer with the overview line, as models trained with guide_overview "
                             "write it (default: on, as the embedded default model was trained)")
    parser.add_argument("--context", choices=("true", "own"), default="true",
                        help="the earlier steps' pictures in the context: the renders (default) or the model's own, "
                             "drawn with the fewest copied scales in --forced (exposure to its own errors)")
    rec.add_image_sampling_arguments(parser)
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be >= 1, got {args.num}")
    if args.cfg < 0:
        parser.error(f"--cfg must be >= 0, got {args.cfg}")
    sampling = rec.image_sampling(parser, args)
    device = torch.device(args.device)
    model, source, is_default = rec.load_model(parser, args.model, device, args.dtype)
    K = model.layout.num_scales
    forced = sorted(set(args.forced if args.forced is not None else range(K + 1)))
    if forced[0] < 0 or forced[-1] > K:
        parser.error(f"--forced values must be in [0, {K}] (the model's {K} scales), got {args.forced}")

    from hart_vlm.data.assembly import generate_guide

    guides = [generate_guide(i, "heldout", args.seed, model.config.image_size) for i in range(args.num)]
    start = time.perf_counter()
    measured = evaluate(model, guides, forced, args.cfg, args.seed, args.overview, sampling, args.context)
    result = {
        "machine": rec._load_speed().machine(device),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python evals/scale_forcing.py", *(argv if argv is not None else sys.argv[1:])]),
        "source": source,
        "image_size": model.config.image_size,
        "scales": _scale_names(model),
        "setup": {"num": args.num, "seed": args.seed, "cfg": args.cfg, "forced": forced, "overview": args.overview,
                  "context": args.context, "sampling": sampling},
        "seconds": time.perf_counter() - start,
        **measured,
    }
    print(table(result))
    rec.write_outputs(args, "scale_forcing", result, is_default, lambda path: save_plot(result, path),
                      lambda *paths: results_section(result, *paths))
    return result


if __name__ == "__main__":
    main()
