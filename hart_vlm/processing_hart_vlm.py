"""`HartVLMProcessor`: chat messages with text and images -> model inputs.

The processor holds the text tokenizer and what it must know of the HART tokenizer to lay an
image out (image size, scale schedule, context block); the HART tokenizer's weights live in the
model, which encodes `pixel_values` itself on its own device. Each image item becomes
`<|image_start|>`, one `<|image|>` filler per input position, `<|image_end|>` (DESIGN.md §3).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin

from hart.images import load_image, pil_to_tensor, resize_center_crop

from . import special_tokens as st
from .layout import ImageLayout

IGNORE_INDEX = -100
PROCESSOR_CONFIG = "hart_vlm_processor.json"
ROLES = ("system", "user", "assistant")


class HartVLMProcessor(ProcessorMixin):
    """Turns conversations (DESIGN.md §7 format) into `input_ids`, `attention_mask`, `labels` and
    `pixel_values`, with labels only on assistant turns. A transformers `ProcessorMixin` whose one
    sub-processor is the text tokenizer (the HART tokenizer's weights live in the model).

    Args:
        tokenizer: a transformers tokenizer holding the special tokens of
            `hart_vlm.special_tokens` (see `text_tokenizer.add_hart_special_tokens`).
        config: a `HartVLMConfig` (image size, scale schedule and context block are read from it),
            or None with `image_size`, `v_patch_nums` and `image_context_block` given.
    """

    def __init__(self, tokenizer, config=None, *, image_size: int | None = None,
                 v_patch_nums: Iterable[int] | None = None, image_context_block: bool | None = None):
        if config is not None:
            image_size = config.image_size
            v_patch_nums = config.image_tokenizer.v_patch_nums
            image_context_block = config.image_context_block
        if image_size is None or v_patch_nums is None or image_context_block is None:
            raise ValueError("give either config or all of image_size, v_patch_nums and image_context_block")
        super().__init__(tokenizer)  # checks that it is a transformers tokenizer
        self.image_size = int(image_size)
        self.layout = ImageLayout(tuple(int(p) for p in v_patch_nums), bool(image_context_block))
        ids = {}
        for token in st.IMAGE_TOKENS:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or token_id == tokenizer.unk_token_id:
                raise ValueError(f"tokenizer lacks the special token {token!r}; call add_hart_special_tokens(tokenizer) first")
            ids[token] = token_id
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; call add_hart_special_tokens(tokenizer) first")
        self.image_start_id = ids[st.IMAGE_START]
        self.image_end_id = ids[st.IMAGE_END]
        self.image_id = ids[st.IMAGE_PLACEHOLDER]
        self.pad_id = tokenizer.pad_token_id

    # -- messages -> text or model inputs -------------------------------------------------------
    def apply_chat_template(self, conversation: list[dict] | list[list[dict]], add_generation_prompt: bool = False,
                            tokenize: bool = False, return_dict: bool = False, return_tensors: str | None = None,
                            padding_side: str = "left", **kwargs):
        """transformers' `apply_chat_template` for conversations with images.

        tokenize=False: the rendered text of one conversation (a list of them for a batch), each
        image item one `<|image|>` token. tokenize=True: the model inputs with every image laid
        out (its codes' positions); with return_dict, a `BatchFeature` (input_ids,
        attention_mask, labels, pixel_values) ready for `model(**inputs)`, padded on
        `padding_side` ("left", as generation wants); else the input ids. Tensors only ("pt" or
        None). Other keyword arguments of transformers' version are not supported."""
        if kwargs:
            raise TypeError(f"apply_chat_template got unsupported arguments {sorted(kwargs)}; accepted: "
                            "add_generation_prompt, tokenize, return_dict, return_tensors, padding_side")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        batched = isinstance(conversation, list) and bool(conversation) and isinstance(conversation[0], list)
        conversations = conversation if batched else [conversation]
        if not tokenize:
            texts = [self.tokenizer.apply_chat_template(_flatten_messages(c), tokenize=False,
                                                        add_generation_prompt=add_generation_prompt)
                     for c in conversations]
            return texts if batched else texts[0]
        inputs = self(conversations, add_generation_prompt=add_generation_prompt, padding_side=padding_side)
        if return_dict:
            return inputs
        ids = inputs["input_ids"]
        if return_tensors == "pt":
            return ids
        rows = [row[mask.bool()].tolist() for row, mask in zip(ids, inputs["attention_mask"])]
        return rows if batched else rows[0]

    def load_image(self, image: Any, base_dir: str | os.PathLike | None = None) -> torch.Tensor:
        """A PIL image or an image file path (relative paths against `base_dir`) -> (3, S, S) in
        [-1, 1], resized and centre-cropped to the model's image size."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(Path(base_dir or ".") / image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"an image item must hold a PIL.Image or a file path, got {type(image).__name__}")
        return pil_to_tensor(resize_center_crop(image, self.image_size))

    # -- conversations -> model inputs --------------------------------------------------------
    def encode_conversation(
        self, messages: list[dict], base_dir: str | os.PathLike | None = None, add_generation_prompt: bool = False
    ) -> dict[str, Any]:
        """One conversation -> dict(input_ids, labels, images): lists of ids and of (3, S, S) tensors.

        Each message is rendered as the difference between the chat template applied to the
        conversation up to it and up to the one before, so any tokenizer's own chat template
        works; assistant messages are labelled without their role header."""
        messages = validate_messages(messages)
        flat = _flatten_messages(messages)
        ids: list[int] = []
        labels: list[int] = []
        images: list[torch.Tensor] = []
        image_items = [item for m in messages for item in m["content"] if item["type"] == "image"]
        rendered = ""
        for i, message in enumerate(flat):
            if message["role"] == "assistant":
                if i == 0:
                    raise ValueError("a conversation must start with a system or user message, not an assistant one")
                header = self.tokenizer.apply_chat_template(flat[:i], tokenize=False, add_generation_prompt=True)
                head_text = header[len(rendered):]
            else:
                head_text = ""
            full = self.tokenizer.apply_chat_template(flat[: i + 1], tokenize=False)
            body_text = full[len(rendered) + len(head_text):]
            for text, learn in ((head_text, False), (body_text, message["role"] == "assistant")):
                piece = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
                ids.extend(piece)
                labels.extend(piece if learn else [IGNORE_INDEX] * len(piece))
            rendered = full
        if add_generation_prompt:
            tail = self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=True)[len(rendered):]
            piece = self.tokenizer(tail, add_special_tokens=False)["input_ids"]
            ids.extend(piece)
            labels.extend([IGNORE_INDEX] * len(piece))
        if self.tokenizer.bos_token_id is not None and (not ids or ids[0] != self.tokenizer.bos_token_id):
            ids.insert(0, self.tokenizer.bos_token_id)
            labels.insert(0, IGNORE_INDEX)
        # expand every <|image|> into the image's layout
        out_ids, out_labels = [], []
        n_img = 0
        for token, label in zip(ids, labels):
            if token != self.image_id:
                out_ids.append(token)
                out_labels.append(label)
                continue
            if n_img >= len(image_items):
                raise ValueError("the rendered text holds more <|image|> tokens than the messages hold images")
            item = image_items[n_img]
            images.append(self.load_image(item["image"], base_dir))
            span = [self.image_start_id] + [self.image_id] * self.layout.num_input_positions + [self.image_end_id]
            out_ids.extend(span)
            out_labels.extend(span if label != IGNORE_INDEX else [IGNORE_INDEX] * len(span))
            n_img += 1
        if n_img != len(image_items):
            raise ValueError(
                f"the messages hold {len(image_items)} images but the chat template rendered {n_img} <|image|> tokens"
            )
        return {"input_ids": out_ids, "labels": out_labels, "images": images}

    def __call__(
        self,
        conversations: list[list[dict]] | list[dict],
        base_dir: str | os.PathLike | None = None,
        add_generation_prompt: bool = False,
        padding_side: str = "right",
        max_length: int | None = None,
    ) -> BatchFeature:
        """A batch of conversations (or one) -> BatchFeature(input_ids, attention_mask, labels,
        pixel_values). Padding with `<|pad|>` on `padding_side`; `max_length` rejects longer samples."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if not isinstance(conversations, list) or not conversations:
            raise ValueError("conversations must be a non-empty list of conversations (each a list of messages)")
        if isinstance(conversations[0], dict):
            conversations = [conversations]
        encoded = [self.encode_conversation(c, base_dir, add_generation_prompt) for c in conversations]
        length = max(len(e["input_ids"]) for e in encoded)
        if max_length is not None and length > max_length:
            raise ValueError(f"a conversation needs {length} positions, more than max_length={max_length}")
        input_ids = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for b, e in enumerate(encoded):
            n = len(e["input_ids"])
            sl = slice(0, n) if padding_side == "right" else slice(length - n, length)
            input_ids[b, sl] = torch.tensor(e["input_ids"])
            labels[b, sl] = torch.tensor(e["labels"])
            attention_mask[b, sl] = 1
        images = [img for e in encoded for img in e["images"]]
        data = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if images:
            data["pixel_values"] = torch.stack(images)
        return BatchFeature(data)

    # -- saving -------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        os.makedirs(save_directory, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        cfg = {
            "processor_class": type(self).__name__,
            "image_size": self.image_size,
            "v_patch_nums": list(self.layout.v_patch_nums),
            "image_context_block": self.layout.context_block,
        }
        with open(os.path.join(save_directory, PROCESSOR_CONFIG), "w") as f:
            json.dump(cfg, f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> "HartVLMProcessor":
        cfg_path = os.path.join(path, PROCESSOR_CONFIG)
        if not os.path.isfile(cfg_path):
            raise ValueError(f"{str(path)!r} holds no {PROCESSOR_CONFIG}; it was not saved by HartVLMProcessor.save_pretrained")
        keys = ("image_size", "v_patch_nums", "image_context_block")
        try:
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
            if not isinstance(cfg, dict) or any(k not in cfg for k in keys):
                raise ValueError(f"a JSON object with {list(keys)} is expected")
        except ValueError as error:
            raise ValueError(f"{cfg_path}: not a valid processor config ({error})") from None
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer.model")):
            raise ValueError(f"{os.path.join(path, 'tokenizer.json')}: missing; the processor's text tokenizer is saved "
                             "there (HartVLMProcessor.save_pretrained)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: the text tokenizer could not be read ({str(error).splitlines()[0]})") from None
        return cls(tokenizer, image_size=cfg["image_size"], v_patch_nums=cfg["v_patch_nums"],
                   image_context_block=cfg["image_context_block"])


def validate_messages(messages: Any) -> list[dict]:
    """Checks one conversation's roles and content items (ValueError naming the item and what is
    accepted); normalises string content to one text item."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        if message["role"] not in ROLES:
            raise ValueError(f"messages[{i}]['role'] is {message['role']!r}; accepted roles: {', '.join(ROLES)}")
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise ValueError(f"messages[{i}]['content'] must be a string or a list of items")
        for j, item in enumerate(content):
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text":
                if not isinstance(item.get("text"), str):
                    raise ValueError(f"messages[{i}]['content'][{j}] is a text item without a 'text' string")
            elif kind == "image":
                if "image" not in item:
                    raise ValueError(f"messages[{i}]['content'][{j}] is an image item without an 'image'")
            else:
                raise ValueError(
                    f"messages[{i}]['content'][{j}] has type {kind!r}; accepted content types: 'text', 'image'"
                )
        if message["role"] == "user" and not any(
                item["type"] == "image" or item["text"].strip() for item in content):
            raise ValueError(f"messages[{i}] is a user message with no text and no image; there is nothing to answer")
        out.append({"role": message["role"], "content": content})
    return out


def _flatten_messages(messages: list[dict]) -> list[dict]:
    """Content lists -> strings, image items -> `<|image|>`, so that any chat template (ours or an
    LLM's own) renders them."""
    flat = []
    for message in validate_messages(messages):
        text = "".join(item["text"] if item["type"] == "text" else st.IMAGE_PLACEHOLDER for item in message["content"])
        flat.append({"role": message["role"], "content": text})
    return flat
