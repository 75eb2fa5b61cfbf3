"""Packages a trained HartVLM as the embedded default model (DESIGN.md §6): fp16 safetensors in
shards of at most 15 MB, 32 MB in all, with a model card that says how to retrain it.

    python training/package_default.py --model runs/vlm_default/model --card-info card.yaml
    python training/package_default.py --model runs/vlm_default/model --out DIR --max-shard-size 15MB \
        --training-commands "python training/train_vlm.py --config training/configs/vlm_default.yaml" \
        --configs training/configs/vlm_default.yaml --data-seed 0 --hardware "1x H100 80GB" \
        --training-time "3 h 10 min" --eval-results evals/results/assembly_bench.json

`--card-info FILE.yaml` holds the model-card facts (training_commands, configs, data_seed,
hardware, training_time, eval_results); a flag given on the command line replaces the file's value.
Everything is written into a temporary folder beside `--out` (default: the package's
hart_vlm/default_model/): the fp16 weights, the processor, MODEL_CARD.md; the shard and total sizes
are checked and the folder is loaded back in float32 and its logits compared with the fp32 model's.
Only then is it renamed onto `--out`, so a failed run leaves an existing folder as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import platform
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers.utils.hub import convert_file_size_to_int

from hart_vlm import HartVLM, HartVLMConfig
from hart_vlm.default_model import default_model_path, load_default
from hart_vlm.processing_hart_vlm import PROCESSOR_CONFIG
from hart_vlm.training.config import config_from_dict, option, run_cli

CARD_NAME = "MODEL_CARD.md"
# The prompt whose logits the verification compares (text logits and image-code logits).
VERIFY_MESSAGES = [{"role": "user", "content": "How do I assemble a two-shelf white bookcase? Show each step."}]
PRESETS = ("tiny", "default", "hart_0_7b_1024px")
BACKBONE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


@dataclass
class ModelCardFacts:
    """How the packaged model was made; every field but eval_results must be known to package."""

    training_commands: list[str] = option([], "the exact commands that trained the model, in order")
    configs: list[str] = option([], "the YAML configs those commands used (copied into the card)")
    data_seed: int | None = option(None, "seed of the procedural assembly data (default: the configs' data_seed)")
    hardware: str | None = option(None, "what it was trained on, e.g. '1x NVIDIA H100 80GB'")
    training_time: str | None = option(None, "wall-clock training time, e.g. '2 h 40 min (tokenizer 50 min)'")
    eval_results: list[str] = option([], "JSON files written by the evals (e.g. evals/assembly_bench.py)")
    limitations: str | None = option(None, "what users should know the model cannot do (a paragraph of the card)")


@dataclass
class PackageConfig(ModelCardFacts):
    model: str = option("", "a trained HartVLM folder (HartVLM.save_pretrained with its processor), e.g. runs/vlm_default/model")
    out: str | None = option(None, "folder to write (default: the package's hart_vlm/default_model)")
    max_shard_size: str = option("15MB", "largest safetensors file (MB = 10^6 bytes, MiB = 2^20)")
    max_total_size: str = option("32MB", "largest total of all weight files")
    card_info: str | None = option(None, "YAML file of the model-card facts (flags replace its values)")
    logits_tolerance: float = option(0.02, "largest |fp16 - fp32| logit difference, relative to max(1, max |fp32 logit|)")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must name a trained HartVLM folder (--model runs/vlm_default/model)")
        if not (Path(self.model) / "config.json").is_file():
            raise ValueError(f"model {self.model!r} is not a folder saved by HartVLM.save_pretrained (no config.json)")
        for name in ("max_shard_size", "max_total_size"):
            try:
                size = convert_file_size_to_int(getattr(self, name))
            except (ValueError, TypeError):
                size = 0
            if not isinstance(size, int) or size <= 0:
                raise ValueError(f"{name} must be a size such as '15MB', '300KB' or '20MiB', got {getattr(self, name)!r}")
        if self.card_info is not None and not Path(self.card_info).is_file():
            raise ValueError(f"card_info file not found: {self.card_info!r}")
        if not self.logits_tolerance > 0:
            raise ValueError(f"logits_tolerance must be > 0, got {self.logits_tolerance}")
        resolve_facts(self)  # fail before any work when the card would be incomplete


@dataclass
class PackageResult:
    out: Path
    shards: dict[str, int]  # weight file name -> bytes
    total_bytes: int
    max_logits_diff: float
    load_seconds: float


# ------------------------------------------------------------------------------------------------
# model-card facts: the --card-info file, then the flags
# ------------------------------------------------------------------------------------------------
def read_yaml(path: str) -> dict:
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"cannot parse {path!r}: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path!r} must hold a mapping of names to values")
    return values


def resolve_facts(cfg: PackageConfig) -> ModelCardFacts:
    """The facts of `cfg.card_info` with every flag that differs from its default put over them;
    the data seed from the configs when not given; missing facts are an error."""
    facts = ModelCardFacts()
    if cfg.card_info is not None:
        facts = config_from_dict(ModelCardFacts, read_yaml(cfg.card_info), source=cfg.card_info)
    for field in dataclasses.fields(ModelCardFacts):
        value = getattr(cfg, field.name)
        if value != getattr(ModelCardFacts(), field.name):
            setattr(facts, field.name, value)
    for path in facts.configs + facts.eval_results:
        if not Path(path).is_file():
            raise ValueError(f"model-card file not found: {path!r}")
    if facts.data_seed is None:
        seeds = {read_yaml(p).get("data_seed") for p in facts.configs} - {None}
        if len(seeds) == 1:
            facts.data_seed = int(seeds.pop())
    missing = [name for name in ("training_commands", "configs", "data_seed", "hardware", "training_time")
               if getattr(facts, name) in (None, [])]
    if missing:
        raise ValueError(
            f"the model card needs {', '.join(missing)}: give them in --card-info FILE.yaml or as flags "
            "(--training-commands, --configs, --data-seed, --hardware, --training-time)"
        )
    return facts


# ------------------------------------------------------------------------------------------------
# the steps of main
# ------------------------------------------------------------------------------------------------
def save_fp16(model: HartVLM, folder: Path, max_shard_bytes: int) -> None:
    """fp16 safetensors shards of at most `max_shard_bytes` bytes each, plus the processor."""
    half = copy.deepcopy(model).half()
    bad = [name for name, t in half.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"these tensors overflow fp16 (|x| > 65504): {', '.join(bad[:5])}")
    # transformers shards by tensor bytes; each file also holds a JSON header naming its tensors.
    # Bound the header by the whole state dict's and keep that much room in every shard.
    header_bound = 1024 + sum(len(name) + 160 for name in half.state_dict())
    budget = max_shard_bytes - header_bound
    if budget <= 0:
        raise ValueError(f"max_shard_size ({max_shard_bytes} bytes) leaves no room beside the safetensors header ({header_bound} bytes)")
    half.save_pretrained(folder, max_shard_size=budget)


def check_sizes(folder: Path, max_shard_bytes: int, max_total_bytes: int) -> dict[str, int]:
    shards = {p.name: p.stat().st_size for p in sorted(folder.glob("*.safetensors"))}
    if not shards or any(folder.glob("*.bin")):
        raise ValueError(f"expected safetensors weights only in {folder}, found {sorted(p.name for p in folder.iterdir())}")
    too_big = {name: size for name, size in shards.items() if size > max_shard_bytes}
    if too_big:
        listing = ", ".join(f"{name} {size / 1e6:.3f} MB" for name, size in too_big.items())
        raise ValueError(f"shards over the {max_shard_bytes / 1e6:.3f} MB limit: {listing} "
                         "(a single tensor larger than the limit cannot be split)")
    total = sum(shards.values())
    if total > max_total_bytes:
        raise ValueError(f"the weights take {total / 1e6:.3f} MB in {len(shards)} shards, over the "
                         f"{max_total_bytes / 1e6:.3f} MB limit")
    return shards


def verify(model: HartVLM, folder: Path, tolerance: float) -> tuple[float, float]:
    """Loads `folder` as load_default does, checks float32 weights equal to the fp32 model's rounded
    to fp16, and the fixed prompt's logits within `tolerance`. Returns (max |Δ logit|, load seconds)."""
    start = time.perf_counter()
    loaded = load_default(path=folder)
    seconds = time.perf_counter() - start
    ref, got = model.state_dict(), loaded.state_dict()
    if set(ref) != set(got):
        raise RuntimeError(f"the packaged model's tensors differ from the trained model's: {sorted(set(ref) ^ set(got))[:5]}")
    for name, tensor in ref.items():
        if tensor.is_floating_point():
            if got[name].dtype != torch.float32 or not torch.equal(tensor.half().float(), got[name]):
                raise RuntimeError(f"{name}: the packaged weights are not the trained ones rounded to fp16")
        elif not torch.equal(tensor, got[name]):
            raise RuntimeError(f"{name}: the packaged buffer differs from the trained one")
    if loaded.processor is None:
        raise RuntimeError("the packaged folder has no processor")
    inputs = loaded.processor([VERIFY_MESSAGES], add_generation_prompt=True)
    with torch.no_grad():
        ref_BLV = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        got_BLV = loaded(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    diff = (ref_BLV - got_BLV).abs().max().item()
    limit = tolerance * max(1.0, ref_BLV.abs().max().item())
    if not diff <= limit:
        raise RuntimeError(f"fp16 logits differ from fp32 by {diff:.4g}, more than {limit:.4g} (logits_tolerance {tolerance})")
    return diff, seconds


def replace_folder(src: Path, dst: Path) -> None:
    """Puts folder `src` at `dst` by renames on one file system: an existing `dst` is renamed aside,
    `src` renamed onto it and the old one removed; if the second rename fails the old one returns."""
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"out {str(dst)!r} exists and is not a folder")
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{secrets.token_hex(4)}")
        dst.replace(old)
    try:
        src.replace(dst)
    except OSError:
        if old is not None:
            old.replace(dst)
        raise
    if old is not None:
        shutil.rmtree(old)


# ------------------------------------------------------------------------------------------------
# the model card
# ------------------------------------------------------------------------------------------------
def matching_preset(config: HartVLMConfig, tokenizer) -> str:
    """The HartVLMConfig preset whose backbone, image tokenizer and head the config has, else 'custom'."""
    for name in PRESETS:
        preset = HartVLMConfig.from_preset(name, tokenizer=tokenizer)
        same_backbone = all(getattr(preset.text_config, f) == getattr(config.text_config, f) for f in BACKBONE_FIELDS)
        same_images = preset.image_tokenizer.to_dict() == config.image_tokenizer.to_dict()
        if same_backbone and same_images and preset.head.to_dict() == config.head.to_dict():
            return name
    return "custom"


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Rows (dotted key, value) of a JSON document's scalar leaves; lists of records are left to
    `record_tables`."""
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if _is_records(value):
        return []
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return [row for i, v in enumerate(value) for row in flatten(v, f"{prefix}[{i}]")]
    return [(prefix or "value", json.dumps(value) if isinstance(value, list) else str(value))]


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def record_tables(value: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, markdown table) for every list of records in a JSON document, e.g. the rows of
    an eval's settings: one column per scalar field; a record's nested lists (such as per-story
    details) are left out."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in record_tables(v, f"{prefix}.{k}" if prefix else str(k))]
    if not _is_records(value):
        return []
    columns = [k for k in dict.fromkeys(k for record in value for k in record)
               if all(not isinstance(r.get(k), (dict, list)) for r in value)]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in columns) + " |" for r in value]
    return [(prefix or "records", lines)]


def limitations_section(text: str) -> list[str]:
    return ["## Limitations", "", text.strip(), ""]


def evaluation_section(paths: list[str]) -> list[str]:
    """The card's "## Evaluation" section: every JSON file's scalar fields, then its record tables."""
    lines = ["## Evaluation", ""]
    for path in paths:
        doc = json.loads(Path(path).read_text())
        lines += [f"`{path}`:", "", "| metric | value |", "| --- | --- |",
                  *(f"| {k} | {v} |" for k, v in flatten(doc)), ""]
        for key, table in record_tables(doc):
            lines += [f"`{key}`:", "", *table, ""]
    return lines


def model_card(model: HartVLM, facts: ModelCardFacts, shards: dict[str, int], diff: float, seconds: float,
               cfg: PackageConfig) -> str:
    c = model.config
    text, tok, head, layout = c.text_config, c.image_tokenizer, c.head, c.layout
    counts = {
        "backbone (LLM)": sum(p.numel() for p in model.backbone.parameters()),
        "image bridge": sum(p.numel() for p in model.bridge.parameters()),
        "residual diffusion head": sum(p.numel() for p in model.diffusion_head.parameters()),
        "HART tokenizer (frozen)": sum(p.numel() for p in model.image_tokenizer.parameters()),
    }
    total_params = sum(p.numel() for p in model.parameters())
    photo_crops = any(read_yaml(p).get("photo_crops", 0) for p in facts.configs)
    lines = [
        "# hart-vlm embedded default model",
        "",
        "The small model that `hart_vlm.load_default()` loads: one Llama-style LLM that reads and writes "
        "text and HART's multi-scale image codes (DESIGN.md §6). Weights: fp16 safetensors, loaded in float32.",
        "",
        "## Architecture",
        "",
        f"- HartVLMConfig preset: `{matching_preset(c, model.processor.tokenizer)}`",
        f"- backbone: {text.model_type}, hidden {text.hidden_size}, {text.num_hidden_layers} layers, "
        f"{text.num_attention_heads} heads ({text.num_key_value_heads} key/value), MLP {text.intermediate_size}, "
        f"context {text.max_position_embeddings}, tied embeddings: {bool(getattr(text, 'tie_word_embeddings', False))}",
        f"- text tokenizer: {len(model.processor.tokenizer)} tokens; shared vocabulary {c.vocabulary.text_vocab_size} text + "
        f"{c.vocabulary.image_vocab_size} image codes",
        f"- images: {tok.image_size} px, scales {list(layout.v_patch_nums)} ({layout.num_codes} codes, "
        f"{layout.num_positions} positions per image, context block: {layout.context_block})",
        f"- residual diffusion head: width {head.width}, depth {head.depth}",
        "",
        "## Parameters",
        "",
        "| part | parameters |",
        "| --- | ---: |",
        *(f"| {name} | {n:,} |" for name, n in counts.items()),
        f"| total | {total_params:,} |",
        "",
        "## Files",
        "",
        f"{len(shards)} weight shards, {sum(shards.values()) / 1e6:.3f} MB in all "
        f"(limits: {cfg.max_shard_size} per shard, {cfg.max_total_size} in all).",
        "",
        "| file | bytes |",
        "| --- | ---: |",
        *(f"| {name} | {size:,} |" for name, size in shards.items()),
        "",
        "## How it was trained",
        "",
        f"- data seed: {facts.data_seed}",
        f"- hardware: {facts.hardware}",
        f"- training time: {facts.training_time}",
        "",
        "Commands, run from the repository root:",
        "",
        "```bash",
        *facts.training_commands,
        "```",
        "",
    ]
    for path in facts.configs:
        lines += [f"`{path}`:", "", "```yaml", Path(path).read_text().rstrip(), "```", ""]
    if facts.limitations:
        lines += limitations_section(facts.limitations)
    if facts.eval_results:
        lines += evaluation_section(facts.eval_results)
    lines += [
        "## Packaging check",
        "",
        f"Loaded back in float32: every weight equals the trained one rounded to fp16; the logits of a fixed "
        f"prompt differ from the fp32 model's by at most {diff:.3g}. Load time {seconds:.2f} s "
        f"({platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}).",
        "",
        "## License and provenance",
        "",
        "Apache-2.0, as the hart-vlm project. Trained from random initialisation by this project's own recipes "
        "(training/) on its own procedurally generated furniture-assembly data (hart_vlm.data)"
        + (", the image tokenizer also on crops of scikit-image's bundled sample photographs" if photo_crops else "")
        + "; no third-party model weights.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
def main(cfg: PackageConfig) -> PackageResult:
    facts = resolve_facts(cfg)
    out = Path(cfg.out) if cfg.out is not None else default_model_path()
    max_shard = convert_file_size_to_int(cfg.max_shard_size)
    max_total = convert_file_size_to_int(cfg.max_total_size)

    # 1. the trained model in fp32, with its processor (load_default returns both)
    model = HartVLM.from_pretrained(cfg.model, dtype=torch.float32).eval()
    if model.processor is None:
        raise ValueError(f"{cfg.model!r} has no processor ({PROCESSOR_CONFIG}); save the model with its processor")

    # 2-4. everything in a temporary folder beside `out`, renamed onto it once checked
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the installed package is read by every user
    try:
        save_fp16(model, tmp, max_shard)
        shards = check_sizes(tmp, max_shard, max_total)
        diff, seconds = verify(model, tmp, cfg.logits_tolerance)
        (tmp / CARD_NAME).write_text(model_card(model, facts, shards, diff, seconds, cfg))
        for path in tmp.iterdir():
            path.chmod(0o644)  # safetensors' shards come out private
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    total = sum(shards.values())
    print(f"packaged {cfg.model} into {out}: {len(shards)} shards, {total / 1e6:.3f} MB; "
          f"max |Δ logit| {diff:.3g}; loads in {seconds:.2f} s")
    return PackageResult(out, shards, total, diff, seconds)


if __name__ == "__main__":
    run_cli(PackageConfig, main, description=__doc__.split("\n\n")[0])
