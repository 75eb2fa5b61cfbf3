"""The text tokenizer: a SentencePiece BPE model (byte fallback) as a transformers fast tokenizer.

DESIGN.md §2: the text tokenizer owns ids ``[0, T)``. Its own SentencePiece pieces come first
(``<unk>``, the 256 byte pieces, the merges and characters), then the strings of
:mod:`hart_vlm.special_tokens`, added as special tokens in the order of ``ALL_SPECIAL_TOKENS``.
The image codes follow at ``T`` (see :mod:`hart_vlm.vocab`).

Conventions of the shipped tokenizer (trained by ``training/train_text_tokenizer.py``):

- No normalisation, no dummy prefix, no whitespace folding: ``decode(encode(text)) == text``
  for every string, and any character outside the vocabulary falls back to its UTF-8 bytes.
- Nothing is added around a sequence (no BOS/EOS); the chat template writes the markers.
- ``eos_token`` is ``END_OF_TURN`` (generation stops at the end of a turn), ``pad_token`` is
  ``PAD``.
- Ordinary text never produces a special id. A special token string typed inside a message is
  read as that special token (the usual transformers behaviour) unless the chat is tokenized
  with ``apply_chat_template(..., sanitize_control_tokens=True)``.

Users who bring their own LLM call :func:`add_hart_special_tokens` on its tokenizer instead.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import SentencePieceExtractor

from hart_vlm.special_tokens import ALL_SPECIAL_TOKENS, ASSISTANT, END_OF_TURN, IMAGE_PLACEHOLDER, IMAGE_TOKENS, PAD, ROLE_TOKENS

# Where the shipped tokenizer lives inside the installed package.
DEFAULT_TOKENIZER_RESOURCE = "assets/text_tokenizer"

# SentencePiece marks a word start with U+2581; the fast tokenizer maps spaces to it and back.
_SPACE_MARK = "\u2581"


def _jinja_quote(text: str) -> str:
    """A Jinja string literal for `text` (the special tokens hold no quote or backslash)."""
    if "'" in text or "\\" in text:
        raise ValueError(f"cannot quote {text!r} into the chat template")
    return "'" + text + "'"


_ROLE_MAP = ", ".join(f"{_jinja_quote(role)}: {_jinja_quote(token)}" for role, token in ROLE_TOKENS.items())

# Each message renders as ROLE_TOKEN "\n" content END_OF_TURN "\n"; a text item is its text, an
# image item is IMAGE_PLACEHOLDER (one token, the processor expands it), items are joined with
# no separator; content None (dropped by transformers) renders empty. add_generation_prompt
# appends ASSISTANT "\n". The newlines are `\n` escapes inside Jinja string literals, so
# whitespace control never touches them.
CHAT_TEMPLATE = (
    "{%- set role_tokens = {" + _ROLE_MAP + "} -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in role_tokens -%}"
    "{{ raise_exception('Unknown message role ' ~ message['role'] ~ '; accepted: "
    + ", ".join(ROLE_TOKENS)
    + "') }}"
    "{%- endif -%}"
    "{{ role_tokens[message['role']] ~ '\\n' }}"
    "{%- if message['content'] is not defined -%}"
    "{%- elif message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- elif message['content'] is iterable and message['content'] is not mapping -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}"
    "{{ item['text'] }}"
    "{%- elif item['type'] == 'image' -%}"
    "{{ " + _jinja_quote(IMAGE_PLACEHOLDER) + " }}"
    "{%- else -%}"
    "{{ raise_exception('Unknown content item type ' ~ item['type'] ~ '; accepted: text, image') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- else -%}"
    "{{ raise_exception('Message content must be a string or a list of text/image items') }}"
    "{%- endif -%}"
    "{{ " + _jinja_quote(END_OF_TURN) + " ~ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ " + _jinja_quote(ASSISTANT) + " ~ '\\n' }}"
    "{%- endif -%}"
)


def add_hart_special_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the special tokens of :mod:`hart_vlm.special_tokens` that `tokenizer` lacks.

    Works on any transformers tokenizer (the one of a user's own LLM included). The image tokens
    are always added. A tokenizer with a chat template of its own keeps it, and its eos token
    keeps ending the turns; one without gets this library's role markers, :data:`CHAT_TEMPLATE`,
    ``END_OF_TURN`` as its eos token and ``PAD`` as its pad token. Tokens already in the
    vocabulary keep their ids and are marked special; new ones get the next ids, in the order of
    ``ALL_SPECIAL_TOKENS``.

    Returns:
        The number of tokens added to the vocabulary (resize the model's embeddings by it).
    """
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}")
    own_template = tokenizer.chat_template is not None
    wanted = IMAGE_TOKENS if own_template else ALL_SPECIAL_TOKENS
    # normalized=False: match the exact string even under a lower-casing or NFKC normaliser.
    tokens = [AddedToken(token, special=True, normalized=False) for token in wanted]
    num_added = tokenizer.add_special_tokens({"extra_special_tokens": tokens}, replace_extra_special_tokens=False)
    if not own_template:
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.eos_token = END_OF_TURN
    if tokenizer.pad_token is None:
        tokenizer.pad_token = PAD if PAD in wanted else tokenizer.eos_token
    return num_added


def build_text_tokenizer(sentencepiece_model: str | os.PathLike) -> PreTrainedTokenizerFast:
    """Wrap a trained SentencePiece BPE model as a fast tokenizer with the hart-vlm specials.

    The model must be BPE with byte fallback, identity normalisation, no dummy prefix and no
    whitespace folding (what ``training/train_text_tokenizer.py`` trains): then the fast
    tokenizer gives SentencePiece's ids exactly and decodes every string back unchanged.
    """
    if not isinstance(sentencepiece_model, (str, os.PathLike)):
        raise TypeError(f"sentencepiece_model must be a path, got {type(sentencepiece_model).__name__}")
    model_file = Path(sentencepiece_model)
    if not model_file.is_file():
        raise FileNotFoundError(f"sentencepiece_model: no file at {model_file}")
    extractor = SentencePieceExtractor(str(model_file))
    trainer_spec, normalizer_spec = extractor.proto.trainer_spec, extractor.proto.normalizer_spec
    requirements = {
        "model_type=BPE": trainer_spec.model_type == trainer_spec.BPE,
        "byte_fallback=True": trainer_spec.byte_fallback,
        "normalization_rule_name='identity'": normalizer_spec.name == "identity",
        "add_dummy_prefix=False": not normalizer_spec.add_dummy_prefix,
        "remove_extra_whitespaces=False": not normalizer_spec.remove_extra_whitespaces,
    }
    unmet = [name for name, met in requirements.items() if not met]
    if unmet:
        raise ValueError(f"sentencepiece_model {model_file} must be trained with {', '.join(unmet)}")

    extracted = extractor.extract(models.BPE)
    unk_token = extractor.proto.pieces[trainer_spec.unk_id].piece
    backend = Tokenizer(
        models.BPE(
            vocab=extracted["vocab"],
            merges=extracted["merges"],
            unk_token=unk_token,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    # Spaces become the word-start mark, as in SentencePiece; split=False keeps one sequence so
    # the merges see exactly what SentencePiece saw.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE_MARK, prepend_scheme="never", split=False)
    backend.decoder = decoders.Sequence([decoders.Replace(_SPACE_MARK, " "), decoders.ByteFallback(), decoders.Fuse()])
    # SentencePiece user-defined and control pieces stay whole, as they do in SentencePiece.
    backend.add_tokens(extracted["additional_special_tokens"])

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token=unk_token, clean_up_tokenization_spaces=False
    )
    add_hart_special_tokens(tokenizer)
    tokenizer.eos_token = END_OF_TURN
    tokenizer.pad_token = PAD
    return tokenizer


def default_text_tokenizer_path() -> Path:
    """The folder of the tokenizer shipped inside the installed `hart_vlm` package."""
    resource = files("hart_vlm").joinpath(DEFAULT_TOKENIZER_RESOURCE)
    folder = Path(str(resource))
    if not folder.is_dir():
        raise FileNotFoundError(
            f"the shipped text tokenizer is missing from the installed package (looked in {resource}); "
            "reinstall hart-vlm or run training/train_text_tokenizer.py"
        )
    return folder


def load_text_tokenizer(path: str | os.PathLike | None = None) -> PreTrainedTokenizerFast:
    """Load a hart-vlm text tokenizer folder; `path=None` loads the one shipped in the package.

    Reads local files only. Raises ValueError when the folder's tokenizer lacks a hart-vlm
    special token (for a foreign tokenizer, call :func:`add_hart_special_tokens` instead).
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a folder path or None, got {type(path).__name__}")
    folder = default_text_tokenizer_path() if path is None else Path(path)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"path: no tokenizer.json in {folder}")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    special = set(tokenizer.all_special_tokens)
    missing = [token for token in ALL_SPECIAL_TOKENS if token not in special]
    if missing:
        raise ValueError(
            f"path: the tokenizer in {folder} lacks the special tokens {missing}; "
            "call hart_vlm.text_tokenizer.add_hart_special_tokens on it"
        )
    return tokenizer
