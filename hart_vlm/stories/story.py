"""`Step` and `Story`: an answer cut into numbered steps (one image each), saved as a
self-contained web page, a storyboard image, one PNG per step and a JSON file that `Story.load`
reads back. Nothing here depends on the model."""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from hart_vlm.outputs import (Part, _check_image, _html_page, _img_tag, _load_png, _md_image, _normalize_parts,
                              _png_bytes, _prepare_dir, _read_json, atomic_write)


# -- story ----------------------------------------------------------------------------------


@dataclass
class Step:
    """One step of a story: its text and the image that shows the result (None if the model drew none)."""

    text: str
    image: Image.Image | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {type(self.text).__name__}")
        if self.image is not None:
            _check_image(self.image, "image (or None)")


# "Step 3:", "## Step 3.", "**Step 3:**" at a line start, or "Step 3:" right after a sentence.
_STEP_WORD_MARKER = re.compile(
    r"""(?: ^[ \t]* (?:[#>*_-]+[ \t]*)? step[ \t]*\d+[ \t]*[:.)\-–—]
          | (?<=[.!?])[ \t]+ step[ \t]*\d+[ \t]*:
        ) [ \t*_]*""",
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
# "3." / "3)" at a line start; used only when the answer has no "Step N" markers, so that a
# numbered list inside a step's text does not split it.
_NUMBERED_MARKER = re.compile(r"^[ \t]*(?:[#>*_-]+[ \t]*)?\d+[.)](?=\s|$)[ \t*_]*", re.MULTILINE)


_STEP_LABEL = re.compile(r"^\s*Step \d+:\s*")


def _split_items(parts: list[Part]) -> tuple[list[tuple[str, bool] | Image.Image], bool]:
    """Cuts the text parts at step markers: items are (text, starts_with_marker) or images."""
    texts = "\n".join(p for p in parts if isinstance(p, str))
    marker = _STEP_WORD_MARKER if _STEP_WORD_MARKER.search(texts) else _NUMBERED_MARKER
    items: list[tuple[str, bool] | Image.Image] = []
    found = False
    for part in parts:
        if isinstance(part, Image.Image):
            items.append(part)
            continue
        cuts = list(marker.finditer(part))
        found = found or bool(cuts)
        lead = part[: cuts[0].start()] if cuts else part
        if lead.strip():
            items.append((lead.strip(), False))
        for m, nxt in zip(cuts, cuts[1:] + [None]):
            items.append((part[m.end() : nxt.start() if nxt else len(part)].strip(), True))
    return items, found


def _image_follows(items: list, i: int) -> bool:
    """Whether an image comes after item i before the next marked text."""
    for item in items[i + 1 :]:
        if isinstance(item, Image.Image):
            return True
        if item[1]:
            return False
    return False


@dataclass
class Story:
    """A step-by-step answer to `prompt`: an optional `intro`, then steps with one image each.
    `metadata` records how it was made (seed, sampling settings, model name, timings...)."""

    prompt: str
    steps: list[Step] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    intro: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise TypeError(f"prompt must be a str, got {type(self.prompt).__name__}")
        if not isinstance(self.intro, str):
            raise TypeError(f"intro must be a str, got {type(self.intro).__name__}")
        if isinstance(self.steps, (str, Step)) or not isinstance(self.steps, Iterable):
            raise TypeError(f"steps must be a list of Step, got {type(self.steps).__name__}")
        self.steps = list(self.steps)
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise TypeError(f"steps[{i}] must be a Step, got {type(step).__name__}")
        if not isinstance(self.metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(self.metadata).__name__}")

    @classmethod
    def from_parts(cls, prompt: str, parts: Iterable[Part], metadata: dict | None = None) -> Story:
        """Builds the steps of an interleaved answer.

        Text is cut at "Step N:" markers (any case; "N." / "N)" at a line start when there is no
        "Step N"). Each step takes the first image after its text and before the next step's
        text. Text before the first marker is the intro. An image with no text before it gets a
        step with empty text. Without markers, each text + image pair is a step. Unmarked text
        after a step's image starts a new step if an image follows it, else it is appended to
        that step (a closing remark).
        """
        items, has_markers = _split_items(_normalize_parts(parts))
        intro: list[str] = []
        drafts: list[tuple[list[str], list[Image.Image]]] = []  # (texts, at most one image)
        for i, item in enumerate(items):
            if isinstance(item, Image.Image):
                if drafts and not drafts[-1][1]:
                    drafts[-1][1].append(item)
                else:
                    drafts.append(([], [item]))
                continue
            text, marked = item
            if marked or (not drafts and not has_markers) or (drafts and drafts[-1][1] and _image_follows(items, i)):
                drafts.append(([text], []))
            elif not drafts:
                intro.append(text)
            else:
                drafts[-1][0].append(text)
        steps = [Step("\n".join(t for t in texts if t), images[0] if images else None) for texts, images in drafts]
        return cls(prompt, steps, dict(metadata or {}), intro="\n".join(intro))

    @classmethod
    def from_pictured_steps(cls, prompt: str, parts: Iterable[Part], metadata: dict | None = None) -> Story:
        """Builds the steps of an answer whose pictures were forced at the end of each step's line
        (`generate_story`): each picture closes a step, and that step's text is the last line
        before it ("Step k: " taken off); the lines before the first step's line (the plan) are the
        intro, and text after the last picture is a step without a picture."""
        intro, steps, pending = "", [], ""
        for part in _normalize_parts(parts):
            if isinstance(part, str):
                pending += part
                continue
            head, _, line = pending.strip().rpartition("\n")
            if not steps:
                intro = head.strip()
            elif head.strip():  # text the picture does not belong to: a step of its own, as the model wrote it
                steps.append(Step(_STEP_LABEL.sub("", head.strip()), None))
            steps.append(Step(_STEP_LABEL.sub("", line.strip()), part))
            pending = ""
        if pending.strip():
            if not steps:
                return cls.from_parts(prompt, [pending], metadata)
            steps.append(Step(_STEP_LABEL.sub("", pending.strip()), None))
        return cls(prompt, steps, dict(metadata or {}), intro=intro)

    @staticmethod
    def image_name(k: int) -> str:
        """The file name of step k's image (1-based)."""
        return f"step_{k:02d}.png"

    def to_markdown(self, image_dir: str | None = None) -> str:
        lines = [f"# {self.prompt or 'Story'}", ""]
        if self.intro:
            lines += [self.intro, ""]
        for k, step in enumerate(self.steps, start=1):
            indent = " " * (len(str(k)) + 2)  # list-item continuation lines line up with the text
            text = step.text.replace("\n", "\n" + indent) if step.text else f"Step {k}"
            lines.append(f"{k}. {text}")
            if step.image is not None:
                lines += ["", indent + _md_image(f"Step {k}", self.image_name(k), image_dir)]
            lines.append("")
        return "\n".join(lines)

    def to_html(self) -> str:
        """The self-contained page that `save` writes as index.html."""
        body = [f"<h1>{html.escape(self.prompt)}</h1>"]
        if self.intro:
            body.append(f'<p class="intro">{html.escape(self.intro)}</p>')
        body.append('<ol class="steps">')
        for k, step in enumerate(self.steps, start=1):
            figure = _img_tag(step.image, f"Step {k}") if step.image is not None else ""
            body.append(
                f'<li class="card">{figure}<div><span class="num">Step {k}</span>'
                f'<p class="text">{html.escape(step.text)}</p></div></li>'
            )
        body.append("</ol>")
        if self.metadata:
            rows = "".join(
                f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(value if isinstance(value, str) else json.dumps(value))}</dd>"
                for key, value in self.metadata.items()
            )
            body.append(f"<details><summary>How this was generated</summary><dl>{rows}</dl></details>")
        return _html_page(self.prompt or "Story", "\n".join(body))

    def save(self, dir: str | os.PathLike) -> Path:
        """Writes step_01.png..., storyboard.png, story.json and a self-contained index.html into
        `dir` (created). Everything is rendered before the first file is written, so a failure
        leaves an earlier story there intact; each file is written atomically, story.json last, and
        the step pictures of an earlier, longer story are removed. Returns the folder."""
        try:
            metadata_json = json.loads(json.dumps(self.metadata, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise TypeError(f"metadata must hold only JSON values (str, int, finite float, bool, None, list, dict): "
                            f"{err}") from err
        folder = _prepare_dir(dir)
        files: dict[str, bytes] = {}
        steps_json = []
        for k, step in enumerate(self.steps, start=1):
            name = self.image_name(k) if step.image is not None else None
            if name:
                files[name] = _png_bytes(step.image)
            steps_json.append({"text": step.text, "image": name})
        record = {"format": "hart-vlm-story", "version": 1, "prompt": self.prompt, "intro": self.intro,
                  "steps": steps_json, "metadata": metadata_json}
        files["storyboard.png"] = _png_bytes(self.storyboard())
        files["index.html"] = self.to_html().encode()
        files["story.json"] = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False).encode()
        for name, data in files.items():
            atomic_write(folder / name, data)
        for stale in folder.glob("step_*.png"):  # an earlier story's steps beyond this one's
            if re.fullmatch(r"step_\d+\.png", stale.name) and stale.name not in files:
                stale.unlink()
        return folder

    @classmethod
    def load(cls, dir: str | os.PathLike) -> Story:
        folder = Path(dir)
        data = _read_json(folder, "story.json", "Story")
        steps = []
        for entry in data.get("steps", []):
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise ValueError(f"story.json in {str(folder)!r}: each step must have a 'text' string, got {entry!r}")
            image = entry.get("image")
            steps.append(Step(entry["text"], None if image is None else _load_png(folder, image)))
        return cls(data.get("prompt", ""), steps, data.get("metadata", {}), intro=data.get("intro", ""))

    def storyboard(self, columns: int = 3, min_cell: int = 256) -> Image.Image:
        """A captioned grid of the steps under the prompt as title (up to `columns` per row).
        Images are enlarged by an integer factor with nearest-neighbour to at least `min_cell`
        pixels wide, so small 128 px renders stay crisp."""
        if not isinstance(columns, int) or columns < 1:
            raise ValueError(f"columns must be an int >= 1, got {columns!r}")
        if not isinstance(min_cell, int) or min_cell < 16:
            raise ValueError(f"min_cell must be an int >= 16, got {min_cell!r}")
        pad, gap, max_caption_lines = 20, 16, 8
        caption_font, title_font = _font(15), _font(22)
        cells = []
        for step in self.steps:
            if step.image is None:
                cells.append(None)
                continue
            image = _to_rgb(step.image)
            factor = max(1, math.ceil(min_cell / image.width))
            cells.append(image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST))
        cell_w = max([min_cell] + [c.width for c in cells if c is not None])
        cell_h = max([c.height for c in cells if c is not None], default=min_cell)
        cols = max(1, min(columns, len(self.steps)))
        width = 2 * pad + cols * cell_w + (cols - 1) * gap
        title = _wrap(self.prompt, title_font, width - 2 * pad)
        title_lh, caption_lh = _line_height(title_font), _line_height(caption_font)
        captions = []
        for k, step in enumerate(self.steps, start=1):
            lines = _wrap(f"{k}. {step.text}".rstrip(), caption_font, cell_w)
            if len(lines) > max_caption_lines:
                lines = lines[: max_caption_lines - 1] + [lines[max_caption_lines - 1].rstrip() + " ..."]
            captions.append(lines)
        rows = [range(r, min(r + cols, len(self.steps))) for r in range(0, len(self.steps), cols)]
        row_h = [cell_h + 8 + caption_lh * max(len(captions[i]) for i in row) for row in rows]
        height = pad + title_lh * len(title) + sum(gap + h for h in row_h) + pad
        board = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(board)
        y = pad
        for line in title:
            draw.text((pad, y), line, fill=(17, 24, 39), font=title_font)
            y += title_lh
        for row, h in zip(rows, row_h):
            y += gap
            for j, i in enumerate(row):
                x = pad + j * (cell_w + gap)
                if cells[i] is None:
                    draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=(229, 231, 235))
                else:
                    board.paste(cells[i], (x + (cell_w - cells[i].width) // 2, y + (cell_h - cells[i].height) // 2))
                    draw.rectangle([x - 1, y - 1, x + cell_w, y + cell_h], outline=(209, 213, 219))
                for n, line in enumerate(captions[i]):
                    draw.text((x, y + cell_h + 8 + n * caption_lh), line, fill=(31, 35, 40), font=caption_font)
            y += h
        return board


# -- storyboard drawing helpers ------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable built-in font, Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()  # older Pillow: its fixed-size bitmap font


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    top, bottom = font.getbbox("Ag|")[1::2]
    return int(bottom - min(top, 0)) + 5


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, "white")
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; words longer than a line are cut."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while font.getlength(word) > width and len(word) > 1:
                cut = next(n for n in range(len(word), 0, -1) if font.getlength(word[:n]) <= width or n == 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines
