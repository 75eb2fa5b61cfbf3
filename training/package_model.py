"""Packages a trained model to ship inside hart_vlm (hart_vlm/models/<name>/, DESIGN.md §6): fp16
safetensors in shards of at most 15 MB, the processor and the model card.

    python training/package_model.py --model runs/vlm_default/model --name tiny --card CARD.md
    python training/package_model.py --model runs/vlm_smollm2/adapter --name smollm2 --card CARD.md

`--model` is a HartVLM folder (HartVLM.save_pretrained: every weight is packaged) or a LoRA package
(hart_vlm.lora.save_adapter_package, what train_vlm writes with lora_rank: only what training
changed is packaged; the base LLM's weights come from its own installed package at load time).
Everything is written into a temporary folder beside the destination; the shard and total sizes
are checked, the folder is loaded back and its logits compared with the float32 model's, and
only then is it renamed into place, so a failed run leaves an existing folder as it was.
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path

import torch

from hart_vlm import HartVLM
from hart_vlm.default_model import PACKAGED_MODELS, default_model_path, load_model, write_checksums
from hart_vlm.lora import load_adapter_package, save_adapter_package
from hart_vlm.training.checkpoint import folder_written_whole

CARD_NAME = "MODEL_CARD.md"
# The prompt whose logits the verification compares.
VERIFY_MESSAGES = [{"role": "user", "content": "How do I assemble a two-shelf white bookcase? Show each step."}]


def load_source(folder: Path):
    """(the model in float32, merged; the PeftModel around its base for a LoRA package, else None)."""
    if (folder / "adapter_config.json").is_file():
        peft_model = load_adapter_package(folder, merge=False)
        return copy.deepcopy(peft_model).merge_and_unload().eval(), peft_model
    return HartVLM.from_pretrained(folder, dtype=torch.float32).eval(), None


def save_fp16(model: HartVLM, folder: Path, max_shard_bytes: int) -> None:
    """Every weight in fp16 safetensors shards of at most `max_shard_bytes` bytes, plus the processor."""
    half = copy.deepcopy(model).half()
    bad = [name for name, t in half.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"these tensors overflow fp16 (|x| > 65504): {', '.join(bad[:5])}")
    # transformers shards by tensor bytes; each file also holds a JSON header naming its tensors
    header_bound = 1024 + sum(len(name) + 160 for name in half.state_dict())
    half.save_pretrained(folder, max_shard_size=max_shard_bytes - header_bound)


def check_sizes(folder: Path, max_shard_bytes: int) -> int:
    """Largest file under the limit; returns the total bytes of the weight files."""
    files = {p.name: p.stat().st_size for p in folder.glob("*.safetensors")}
    too_big = {name: size for name, size in files.items() if size > max_shard_bytes}
    if too_big:
        raise ValueError(f"files over the {max_shard_bytes / 1e6:.1f} MB limit: {too_big} "
                         "(a single tensor larger than the limit cannot be split)")
    return sum(files.values())


def verify(reference: HartVLM, folder: Path, tolerance: float) -> float:
    """Loads `folder` in float32 and compares the fixed prompt's logits with `reference`'s;
    returns the largest difference (relative to max(1, max |logit|))."""
    loaded = load_model(folder, "cpu", torch.float32)
    if loaded.processor is None:
        raise RuntimeError("the packaged folder has no processor")
    inputs = loaded.processor([VERIFY_MESSAGES], add_generation_prompt=True)
    with torch.no_grad():
        ref = reference(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        got = loaded(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    diff = (ref - got).abs().max().item() / max(1.0, ref.abs().max().item())
    if not diff <= tolerance:
        raise RuntimeError(f"fp16 logits differ from float32 by {diff:.4g} (relative), more than {tolerance}")
    return diff


def package(model_dir: Path, out: Path, card: Path, max_shard_bytes: int = 15_000_000,
            tolerance: float = 0.02) -> float:
    reference, peft_model = load_source(model_dir)
    with folder_written_whole(out) as tmp:
        if peft_model is not None:
            save_adapter_package(peft_model, tmp, dtype=torch.float16, max_shard_bytes=max_shard_bytes)
        else:
            save_fp16(reference, tmp, max_shard_bytes)
        total = check_sizes(tmp, max_shard_bytes)
        diff = verify(reference, tmp, tolerance)
        shutil.copyfile(card, tmp / CARD_NAME)
        write_checksums(tmp)
        for f in tmp.iterdir():
            f.chmod(0o644)  # a package is read by everyone
    print(f"packaged {model_dir} into {out}: {total / 1e6:.1f} MB of weights, fp16 logits within {diff:.2g} (relative)")
    return diff


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a HartVLM folder or a LoRA package")
    parser.add_argument("--name", choices=PACKAGED_MODELS, help="write hart_vlm/models/NAME")
    parser.add_argument("--out", type=Path, help="write this folder instead")
    parser.add_argument("--card", type=Path, required=True, help="the model card (Markdown), copied as MODEL_CARD.md")
    parser.add_argument("--max-shard-mb", type=float, default=15.0)
    args = parser.parse_args(argv)
    if (args.name is None) == (args.out is None):
        parser.error("give exactly one of --name and --out")
    if not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: not a HartVLM folder or LoRA package (no config.json)")
    if not args.card.is_file():
        parser.error(f"--card {args.card}: no such file")
    package(args.model, args.out or default_model_path(args.name), args.card, int(args.max_shard_mb * 1e6))


if __name__ == "__main__":
    main()
