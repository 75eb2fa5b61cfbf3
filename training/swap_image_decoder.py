"""Puts a retrained HART decoder into a trained HartVLM, leaving everything else as it was.

    python training/swap_image_decoder.py --model default --tokenizer runs/tokenizer_decoder/model \
        --out runs/vlm_decoder/model

`--tokenizer` is a tokenizer whose decoder alone trained on from the model's own image tokenizer
(training/configs/tokenizer_default_cpu_decoder.yaml: HART's hybrid stage from step 0, so the
encoder, quant_conv and codebook stay frozen). It must code images exactly as the model's tokenizer
does (`HybridTokenizer.load_decoder_from` checks this, tensor by tensor): then the codes the LLM
writes and the residuals the diffusion head predicts mean what they meant, and only the pixels the
decoder makes of them change. `--model` is a saved HartVLM folder or `default` (the embedded model).
The result is written into a temporary folder beside `--out` and renamed onto it when complete.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from hart.tokenizer import HybridTokenizer
from hart_vlm.default_model import load_default, load_model


def swap_image_decoder(model: str | Path, tokenizer: str | Path, out: str | Path) -> Path:
    """Writes `model` with the decoder of `tokenizer` to `out` (see the module docstring)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"out: {str(out)!r} exists and is not an empty folder; pick a new folder")
    vlm = load_default() if str(model) == "default" else load_model(model)  # float32 on the CPU
    new = HybridTokenizer.from_pretrained(tokenizer)
    vlm.image_tokenizer.load_decoder_from(new)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        vlm.save_pretrained(tmp)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved HartVLM folder, or `default` (the embedded model)")
    parser.add_argument("--tokenizer", required=True, type=Path,
                        help="a HybridTokenizer folder whose decoder trained on from the model's tokenizer")
    parser.add_argument("--out", required=True, type=Path, help="the new HartVLM folder (must not exist, or be empty)")
    args = parser.parse_args(argv)
    if args.model != "default" and not (Path(args.model) / "config.json").is_file():
        parser.error(f"--model {args.model}: not a saved HartVLM folder (no config.json) and not `default`")
    try:
        out = swap_image_decoder(args.model, args.tokenizer, args.out)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"wrote {out}: {args.model} with the decoder of {args.tokenizer}")
    return out


if __name__ == "__main__":
    main()
