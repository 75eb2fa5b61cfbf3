"""Chat data for the unified model: validated JSONL files, `datasets` datasets and the procedural
assembly mixture.

Every dataset here returns, for an index, one conversation in the format of DESIGN.md §7 (a list
of messages whose image items hold a PIL image or an absolute file path), ready for
`HartVLMProcessor`, and can estimate an example's length in positions (`length(index)`) for
length bucketing without rendering or loading any image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from hart_vlm.data.assembly import (caption_messages, generate_caption_example, generate_guide, plan_caption,
                                    plan_guide, plan_question)
from hart_vlm.processing_hart_vlm import ROLES

CHARS_PER_TOKEN = 4  # a rough text length estimate; bucketing needs no more


# ------------------------------------------------------------------------------------------------
# JSONL instruction files
# ------------------------------------------------------------------------------------------------
@dataclass
class ChatExample:
    messages: list[dict]  # image items hold absolute paths
    source: str  # "FILE:LINE", for error messages
    num_chars: int  # characters of text, for the length estimate
    num_images: int


def read_chat_jsonl(path: str | os.PathLike, skip_bad_rows: bool = False,
                    images_outside: bool = False) -> tuple[list[ChatExample], list[str]]:
    """Read and check a JSONL instruction file (one `{"messages": [...]}` object per line, UTF-8,
    images by paths relative to the file's folder).

    A bad row (not UTF-8, broken JSON, wrong structure, unknown role or content type, missing or
    unreadable image, an image path outside the file's folder (absolute or through `..`) unless
    `images_outside`, no assistant message to learn from) raises ValueError("FILE:LINE: problem"),
    or, with `skip_bad_rows`, is left out and its problem returned in the second list. Blank lines
    are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file not found: {str(path)!r}")
    examples, problems = [], []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            source = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                line, decode_error = "", f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
            else:
                decode_error = None
            if decode_error is None and not line.strip():
                continue
            try:
                if decode_error is not None:
                    raise ValueError(decode_error)
                messages, num_chars, num_images = _check_row(line, path.parent, images_outside)
            except ValueError as err:
                if not skip_bad_rows:
                    raise ValueError(f"{source}: {err}") from None
                problems.append(f"{source}: {err}")
                continue
            examples.append(ChatExample(messages, source, num_chars, num_images))
    return examples, problems


def _check_row(line: str, base_dir: Path, images_outside: bool = False) -> tuple[list[dict], int, int]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"broken JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
        raise ValueError("a row must be a JSON object with a non-empty 'messages' list")
    messages, num_chars, num_images = [], 0, 0
    for i, message in enumerate(row["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, dict) else None
            raise ValueError(f"messages[{i}] has role {role!r}; accepted roles: {', '.join(ROLES)}")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise ValueError(f"messages[{i}]['content'] must be a string or a list of items")
        items = []
        for j, item in enumerate(content):
            kind = item.get("type") if isinstance(item, dict) else None
            where = f"messages[{i}]['content'][{j}]"
            if kind == "text" and isinstance(item.get("text"), str):
                items.append({"type": "text", "text": item["text"]})
                num_chars += len(item["text"])
            elif kind == "image" and isinstance(item.get("image"), str):
                image = Path(item["image"])
                if not images_outside and (image.is_absolute() or ".." in image.parts):
                    raise ValueError(f"{where}: the image path {item['image']!r} leaves the data file's folder; "
                                     "give it relative to that folder (or allow images_outside)")
                items.append({"type": "image", "image": str(_check_image(base_dir / image, where))})
                num_images += 1
            elif kind in ("text", "image"):
                raise ValueError(f"{where} is a {kind} item without a '{kind}' string")
            else:
                raise ValueError(f"{where} has type {kind!r}; accepted content types: 'text', 'image'")
        messages.append({"role": message["role"], "content": items})
    if messages[0]["role"] == "assistant":
        raise ValueError("the conversation starts with an assistant message; start with a system or user message")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant message (nothing to learn)")
    return messages, num_chars, num_images


def _check_image(path: Path, where: str) -> Path:
    """The image file exists and its header is readable (the pixels are read when training)."""
    if not path.is_file():
        raise ValueError(f"{where}: image file not found: {str(path)!r}")
    try:
        Image.open(path).close()  # opening reads and checks the header
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{where}: cannot read image file {str(path)!r}: {err}") from None
    return path.resolve()


class ChatDataset(Dataset):
    """Checked JSONL examples; `image_positions` (positions per image) feeds the length estimate."""

    def __init__(self, examples: list[ChatExample], image_positions: int):
        if not examples:
            raise ValueError("examples is empty: the data files hold no usable row")
        self.examples = examples
        self.image_positions = image_positions

    @classmethod
    def from_jsonl(cls, paths: list[str], image_positions: int, skip_bad_rows: bool = False,
                   images_outside: bool = False) -> tuple["ChatDataset", list[str]]:
        """All rows of `paths`, and the problems of the rows skipped (see `read_chat_jsonl`)."""
        if not paths:
            raise ValueError("paths must name at least one JSONL file")
        examples, problems = [], []
        for path in paths:
            rows, skipped = read_chat_jsonl(path, skip_bad_rows, images_outside)
            examples += rows
            problems += skipped
        return cls(examples, image_positions), problems

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> list[dict]:
        return self.examples[index].messages

    def length(self, index: int) -> int:
        example = self.examples[index]
        return example.num_chars // CHARS_PER_TOKEN + example.num_images * self.image_positions


# ------------------------------------------------------------------------------------------------
# `datasets` datasets
# ------------------------------------------------------------------------------------------------
def load_hf_dataset(name_or_path: str, split: str = "train", column: str = "messages"):
    """A folder written by `Dataset.save_to_disk` (or a DatasetDict's), else `load_dataset(name)`;
    it must have `column`."""
    import datasets

    if os.path.isdir(name_or_path) and any(
        os.path.isfile(os.path.join(name_or_path, f)) for f in ("dataset_info.json", "state.json", "dataset_dict.json")
    ):
        loaded = datasets.load_from_disk(name_or_path)
    else:
        loaded = datasets.load_dataset(name_or_path, split=split)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"dataset {name_or_path!r} has no split {split!r}; it has {sorted(loaded)}")
        loaded = loaded[split]
    if column not in loaded.column_names:
        raise ValueError(f"dataset {name_or_path!r} has no {column!r} column (columns: {loaded.column_names})")
    return loaded


class HFChatDataset(Dataset):
    """A `datasets.Dataset` with a "messages" column in the JSONL format (images as `datasets.Image`
    features, i.e. PIL images, or absolute paths), as `hart_vlm.data.assembly.to_hf_dataset` writes.
    Items may carry the unused key as None ({"type": "text", "text": ..., "image": None})."""

    def __init__(self, dataset: Any):
        if len(dataset) == 0:
            raise ValueError("the dataset is empty")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> list[dict]:
        messages = self.dataset[int(index)]["messages"]
        return [{"role": m["role"], "content": [{k: v for k, v in item.items() if v is not None} for item in m["content"]]}
                for m in messages]


# ------------------------------------------------------------------------------------------------
# The procedural assembly mixture
# ------------------------------------------------------------------------------------------------
MIXTURE_TASKS = ("guide", "caption", "question", "text", "chat")


class AssemblyMixture(Dataset):
    """`num_examples` conversations from the procedural assembly data of `split`, a pure function
    of (seed, index) (DESIGN.md §7), and from general chats:

    - "guide": a guide as an interleaved chat, each "Step k: ..." text followed by its picture;
    - "caption": a single picture, either drawn from a description (text -> image) or described
      (image -> text), half and half as the generator decides;
    - "question": a picture and a question about its kind, material, parts or progress
      (plan_question), answered in one sentence;
    - "text": a guide's steps as text only, one step per line;
    - "chat": a conversation of `chats` (e.g. general questions answered in text, so that a
      pretrained LLM keeps its manners), example `index` taking chat `index % len(chats)`.

    With `overview`, guide and text answers open with the guide's plan in one line
    (GuidePlan.overview: "Overview: (1) bottom panel; (2) ...") before "Step 1:". `wording` words
    the guide and text prompts (plan_guide: "data", "varied"; never "unseen", which is kept for
    evaluation).

    Example `index` is task `task(index)`, drawn with `weights`, of the example of that task with
    the same index.
    """

    def __init__(self, num_examples: int, split: str = "train", seed: int = 0, resolution: int = 128,
                 weights: dict[str, float] | None = None, image_positions: int = 0, overview: bool = False,
                 wording: str = "data", chats: ChatDataset | None = None):
        weights = dict(weights) if weights is not None else {"guide": 0.6, "caption": 0.3, "text": 0.1}
        unknown = sorted(set(weights) - set(MIXTURE_TASKS))
        if unknown:
            raise ValueError(f"weights has unknown task(s) {unknown}; accepted: {list(MIXTURE_TASKS)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}")
        if wording not in ("data", "varied"):
            raise ValueError(f"wording must be 'data' or 'varied' (the 'unseen' family is for evaluation), got {wording!r}")
        if weights.get("chat", 0) > 0 and chats is None:
            raise ValueError("the 'chat' task needs chats (the general conversations to mix in)")
        self.num_examples, self.split, self.seed, self.resolution = num_examples, split, seed, resolution
        self.image_positions = image_positions
        self.overview = bool(overview)
        self.wording = wording
        self.chats = chats
        self.tasks = [t for t in MIXTURE_TASKS if weights.get(t, 0) > 0]
        total = sum(weights[t] for t in self.tasks)
        self.cumulative = np.cumsum([weights[t] / total for t in self.tasks])

    def __len__(self) -> int:
        return self.num_examples

    def task(self, index: int) -> str:
        u = np.random.default_rng([self.seed, 0x6D6978, index]).random()  # 0x6D6978: "mix"
        return self.tasks[min(int(np.searchsorted(self.cumulative, u, side="right")), len(self.tasks) - 1)]

    def __getitem__(self, index: int) -> list[dict]:
        index = int(index)
        task = self.task(index)
        if task == "guide":
            guide = generate_guide(index, self.split, self.seed, self.resolution, self.wording)
            return guide.to_messages("pil", overview=self.overview)
        if task == "caption":
            return generate_caption_example(index, self.split, self.seed, self.resolution)["messages"]
        if task == "question":
            return caption_messages(plan_question(index, self.split, self.seed), self.resolution)["messages"]
        if task == "chat":
            return self.chats[index % len(self.chats)]
        plan = plan_guide(index, self.split, self.seed, self.wording)
        steps = "\n".join(plan.step_lines(self.overview))
        return [{"role": "user", "content": [{"type": "text", "text": plan.prompt}]},
                {"role": "assistant", "content": [{"type": "text", "text": steps}]}]

    def length(self, index: int) -> int:
        index = int(index)
        task = self.task(index)
        if task in ("caption", "question"):
            cap = (plan_caption if task == "caption" else plan_question)(index, self.split, self.seed)
            chars = len(cap.user_text) + len(cap.assistant_text or "")
            return chars // CHARS_PER_TOKEN + self.image_positions
        if task == "chat":
            return self.chats.length(index % len(self.chats))
        plan = plan_guide(index, self.split, self.seed, self.wording)
        chars = len(plan.prompt) + sum(len(t) + 1 for t in plan.step_lines(self.overview))  # + a newline
        images = len(plan.step_texts) if task == "guide" else 0
        return chars // CHARS_PER_TOKEN + images * self.image_positions
