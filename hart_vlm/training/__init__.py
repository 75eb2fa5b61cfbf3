"""Reusable pieces of the training recipes in training/ (STYLE.md principle 10: the recipes stay
flat, `main(cfg)` readable in one pass; what they share lives here).

config      dataclass -> YAML -> `--full-word` overrides -> saved YAML
checkpoint  atomic accelerate checkpoints, exact resume
runtime     Accelerator, AdamW, LR schedule, per-step generators, evaluation, metrics.jsonl
loop        the optimisation loop: prepare, resume, accumulate, clip, step, log, evaluate, checkpoint
data        JSONL instruction files (checked row by row), `datasets` datasets, the assembly mixture
batching    deterministic length-grouped batch stream, the chat collator, the losses of a chat batch
images      image datasets for tokenizer training
tokenizer_objective  the tokenizer and its discriminator as one trainable module
tensor_files  safetensors files with a format tag, written atomically
"""
