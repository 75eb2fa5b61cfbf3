"""Train the text tokenizer that ships in hart_vlm/assets/text_tokenizer/.

A flat recipe: build the corpus (the procedural assembly generator's texts plus general English
that ships with Python), train a SentencePiece BPE model with byte fallback, wrap it as a
transformers fast tokenizer with the hart-vlm special tokens and chat template, save it, and
write a README that records how it was made.

    python training/train_text_tokenizer.py --num-guides 2000 --vocab-size 4096 --seed 0 \
        --out hart_vlm/assets/text_tokenizer

Runs in seconds on one CPU core; the result is deterministic for a given Python version (the
general English is CPython's own documentation, see `general_english_texts`).
"""

from __future__ import annotations

import argparse
import ast
import codecs
import hashlib
import importlib.util
import io
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydoc_data.topics
import sentencepiece as spm
import transformers
from transformers import PreTrainedTokenizerFast

from hart_vlm.data.assembly import corpus_texts
from hart_vlm.special_tokens import ALL_SPECIAL_TOKENS
from hart_vlm.text_tokenizer import build_text_tokenizer

SENTENCEPIECE_FILE = "sentencepiece.model"


@dataclass
class TextTokenizerTrainingConfig:
    out: str = "hart_vlm/assets/text_tokenizer"
    num_guides: int = 2000  # assembly guides whose texts enter the corpus (all splits)
    seed: int = 0  # seed of the assembly generator and of SentencePiece's random generator
    vocab_size: int = 4096  # T: every text id, the hart-vlm special tokens included
    character_coverage: float = 0.9995  # rarer characters are left to the byte fallback
    general_english: bool = True  # add CPython's help topics and the Zen of Python

    def __post_init__(self) -> None:
        if self.num_guides < 0:
            raise ValueError(f"num_guides must be >= 0, got {self.num_guides}")
        if not self.general_english and self.num_guides == 0:
            raise ValueError("the corpus is empty: set num_guides > 0 or general_english=True")
        # SentencePiece needs room for <unk>, the 256 byte pieces and the corpus's characters.
        minimum = 512 + len(ALL_SPECIAL_TOKENS)
        if self.vocab_size < minimum:
            raise ValueError(f"vocab_size must be >= {minimum}, got {self.vocab_size}")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise ValueError(f"character_coverage must be in [0.9, 1], got {self.character_coverage}")

    @property
    def sentencepiece_vocab_size(self) -> int:
        return self.vocab_size - len(ALL_SPECIAL_TOKENS)

    def command(self) -> str:
        flags = f"--num-guides {self.num_guides} --vocab-size {self.vocab_size} --seed {self.seed}"
        flags += f" --character-coverage {self.character_coverage}"
        if not self.general_english:
            flags += " --no-general-english"
        return f"python training/train_text_tokenizer.py {flags} --out {self.out}"


# --- 1. Corpus -------------------------------------------------------------------------------


def _is_rule(line: str) -> bool:
    """reStructuredText heading underlines ("*****", "=====") teach the tokenizer nothing."""
    return len(set(line)) == 1 and line[0] in "*=-~^#"


def zen_of_python() -> str:
    """PEP 20, read from the `this` module's source (importing `this` would print it)."""
    source = Path(importlib.util.find_spec("this").origin).read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "s":
            return codecs.decode(ast.literal_eval(node.value), "rot13")
    raise RuntimeError("the `this` module holds no string `s`; cannot read the Zen of Python")


def general_english_texts() -> list[str]:
    """English that every CPython install ships: the Zen of Python and `pydoc_data.topics`.

    `pydoc_data.topics.topics` is the text of the language reference that `help()` shows
    (~465k characters on CPython 3.11). Topics are taken in sorted key order and split into
    paragraphs; hard-wrapped lines are joined with spaces.
    """
    texts = [zen_of_python()]
    for key in sorted(pydoc_data.topics.topics):
        for paragraph in pydoc_data.topics.topics[key].split("\n\n"):
            lines = [line.strip() for line in paragraph.splitlines()]
            joined = " ".join(line for line in lines if line and not _is_rule(line))
            if joined:
                texts.append(joined)
    return texts


def sentences(texts: Iterable[str]) -> Iterator[str]:
    """One SentencePiece sentence per non-empty line (newlines go to the byte fallback)."""
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def build_corpus(cfg: TextTokenizerTrainingConfig) -> dict[str, list[str]]:
    corpus = {"assembly": list(sentences(corpus_texts(cfg.num_guides, seed=cfg.seed)))}
    if cfg.general_english:
        corpus["general_english"] = list(sentences(general_english_texts()))
    return corpus


# --- 2. SentencePiece ------------------------------------------------------------------------


def train_sentencepiece(lines: list[str], cfg: TextTokenizerTrainingConfig) -> bytes:
    """Train a BPE model that keeps every string recoverable: identity normalisation, no dummy
    prefix, no whitespace folding, byte fallback. Only <unk> is a SentencePiece special; the
    hart-vlm specials are added on the transformers side (`build_text_tokenizer`)."""
    spm.set_random_generator_seed(cfg.seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=cfg.sentencepiece_vocab_size,
        character_coverage=cfg.character_coverage,
        byte_fallback=True,
        split_digits=True,  # numbers as digit sequences: step counts and sizes generalise
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        input_sentence_size=0,  # use every sentence, no sampling
        max_sentence_length=1 << 16,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


# --- 3. Report -------------------------------------------------------------------------------


def corpus_sha256(corpus: dict[str, list[str]]) -> str:
    digest = hashlib.sha256()
    for name in sorted(corpus):
        for line in corpus[name]:
            digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def chars_per_token(tokenizer: PreTrainedTokenizerFast, lines: list[str]) -> float:
    text = "\n".join(lines)
    return len(text) / max(1, len(tokenizer(text, add_special_tokens=False)["input_ids"]))


def write_readme(
    cfg: TextTokenizerTrainingConfig, corpus: dict[str, list[str]], tokenizer: PreTrainedTokenizerFast, out: Path
) -> None:
    held_out = list(sentences(corpus_texts(max(1, cfg.num_guides // 10), seed=cfg.seed + 1)))
    rows = [f"| {name} | {len(lines)} | {sum(map(len, lines))} | {chars_per_token(tokenizer, lines):.2f} |"
            for name, lines in corpus.items()]
    rows.append(
        f"| assembly, seed {cfg.seed + 1} (not trained on) | {len(held_out)} | {sum(map(len, held_out))} "
        f"| {chars_per_token(tokenizer, held_out):.2f} |"
    )
    specials = "\n".join(f"- `{token}`: {tokenizer.convert_tokens_to_ids(token)}" for token in ALL_SPECIAL_TOKENS)
    corpus_table = "\n".join(rows)
    readme = f"""# hart-vlm text tokenizer

Made by `training/train_text_tokenizer.py`; do not edit by hand. Command (from the repository root):

```
{cfg.command()}
```

- SentencePiece {spm.__version__}: BPE, byte fallback, identity normalisation, no dummy
  prefix, no whitespace folding, digits split; {cfg.sentencepiece_vocab_size} pieces (`<unk>` = 0,
  bytes = 1-256), character coverage {cfg.character_coverage}, seed {cfg.seed}.
- Then the {len(ALL_SPECIAL_TOKENS)} hart-vlm special tokens, {len(tokenizer)} text ids in all.
  `eos_token` = `<|end|>`, `pad_token` = `<|pad|>`, no BOS; nothing is added around a sequence.
- Converted with transformers {transformers.__version__} under Python {sys.version.split()[0]}
  (the general English is CPython's own text, so it depends on the Python version).
- Corpus: the texts of `hart_vlm.data.assembly.corpus_texts({cfg.num_guides}, seed={cfg.seed})`
  and, as general English, the Zen of Python (the `this` module) and CPython's help topics
  (`pydoc_data.topics.topics`, sorted keys, paragraphs with wrapped lines joined). One sentence
  per non-empty line; sha256 of the corpus: `{corpus_sha256(corpus)}`.

| corpus part | lines | characters | characters per token |
| --- | --- | --- | --- |
{corpus_table}

Special token ids:

{specials}

Files: `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja` (load with
`hart_vlm.text_tokenizer.load_text_tokenizer()`), and `{SENTENCEPIECE_FILE}`, the SentencePiece
model they were converted from (reference only).
"""
    (out / "README.md").write_text(readme, encoding="utf-8")


# --- 4. Recipe -------------------------------------------------------------------------------


def main(cfg: TextTokenizerTrainingConfig) -> Path:
    out = Path(cfg.out)
    corpus = build_corpus(cfg)
    lines = [line for part in corpus.values() for line in part]
    model_bytes = train_sentencepiece(lines, cfg)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        model_file = Path(scratch) / SENTENCEPIECE_FILE
        model_file.write_bytes(model_bytes)
        tokenizer = build_text_tokenizer(model_file)
    tokenizer.save_pretrained(out)
    (out / SENTENCEPIECE_FILE).write_bytes(model_bytes)
    write_readme(cfg, corpus, tokenizer, out)
    print(f"saved a {len(tokenizer)}-id text tokenizer to {out} ({len(lines)} training lines)")
    return out


def parse_args(argv: list[str] | None = None) -> TextTokenizerTrainingConfig:
    defaults = TextTokenizerTrainingConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--num-guides", type=int, default=defaults.num_guides)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--character-coverage", type=float, default=defaults.character_coverage)
    parser.add_argument("--no-general-english", dest="general_english", action="store_false")
    return TextTokenizerTrainingConfig(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    main(parse_args())
