"""What interleaved generation returns: `ChatResponse`, `Step` and `Story` (the streaming
events are in `hart_vlm.events`).

Nothing here depends on the model. A `ChatResponse` is the assistant's answer as an ordered
list of text and PIL images. A `Story` is an
answer cut into numbered steps (one image each) and saved as a self-contained web page, a
storyboard image, one PNG per step and a JSON file that `Story.load` reads back.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Union

from PIL import Image, ImageDraw, ImageFont

Part = Union[str, Image.Image]

# -- helpers: parts, files, pages -------------------------------------------------------------


def _normalize_parts(parts: Iterable[Part], name: str = "parts") -> list[Part]:
    """Checks the parts and merges consecutive strings; empty strings are dropped."""
    if isinstance(parts, (str, Image.Image)) or not isinstance(parts, Iterable):
        raise TypeError(f"{name} must be a list of str and PIL.Image.Image, got {type(parts).__name__}")
    merged: list[Part] = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            if not part:
                continue
            if merged and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        elif isinstance(part, Image.Image):
            merged.append(part)
        else:
            raise TypeError(f"{name}[{i}] must be a str or a PIL.Image.Image, got {type(part).__name__}")
    return merged


def _prepare_dir(dir: str | os.PathLike) -> Path:
    if not isinstance(dir, (str, os.PathLike)):
        raise TypeError(f"dir must be a str or os.PathLike folder path, got {type(dir).__name__}")
    folder = Path(dir)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"dir must be a folder (it is created if missing), but {str(folder)!r} is a file")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def atomic_write(path: Path, data: bytes) -> None:
    """Writes to a temporary file in the same folder, then renames it over `path`, so a reader
    never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; saved pages and images are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _png_bytes(image: Image.Image) -> bytes:
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGB")  # modes PNG cannot store (CMYK, YCbCr, F, ...)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _read_json(folder: Path, name: str, kind: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: dir must be a folder written by {kind}.save")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("format") != f"hart-vlm-{kind.lower()}":
        raise ValueError(f"{str(path)!r} is not a hart-vlm {kind} file (format={data.get('format')!r})")
    return data


def _load_png(folder: Path, name: object) -> Image.Image:
    # names come from our own JSON; refuse anything that would leave the folder
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"image entry must be a file name inside {str(folder)!r}, got {name!r}")
    try:
        with Image.open(folder / name) as image:
            image.load()
            return image.copy()
    except (OSError, Image.UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {str(folder / name)!r}: {err}") from err


def _md_image(alt: str, name: str, image_dir: str | None) -> str:
    if image_dir is not None and not isinstance(image_dir, str):
        raise TypeError(f"image_dir must be a str or None, got {type(image_dir).__name__}")
    return f"![{alt}]({posixpath.join(image_dir, name) if image_dir else name})"


def _img_tag(image: Image.Image, alt: str) -> str:
    data = base64.b64encode(_png_bytes(image)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


_PAGE_CSS = """
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #1f2328;
       font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 860px; margin: 0 auto; padding: 36px 20px 48px; }
h1 { font-size: 1.7rem; line-height: 1.3; margin: 0 0 12px; }
.intro { color: #4b5563; margin: 0 0 24px; white-space: pre-wrap; }
ol.steps { list-style: none; margin: 0; padding: 0; }
.card { display: flex; gap: 20px; align-items: flex-start; background: #fff; border: 1px solid #dde1e6;
        border-radius: 12px; padding: 16px; margin: 0 0 16px; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
.card img, .answer img { width: 256px; max-width: 100%; height: auto; flex: none; border-radius: 8px;
        background: #e5e7eb; image-rendering: pixelated; }
.num { display: inline-block; font-size: .8rem; font-weight: 600; letter-spacing: .02em; color: #fff;
       background: #2563eb; border-radius: 999px; padding: 1px 10px; margin: 2px 0 8px; }
.text { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.answer .text { margin: 0 0 12px; }
.answer figure { margin: 0 0 16px; }
details { margin-top: 28px; color: #4b5563; font-size: .85rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0 0; }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 620px) { .card { flex-direction: column; } }
"""


def _html_page(title: str, body: str) -> str:
    """A self-contained page: inline CSS, no scripts, fonts or links; images are data URIs."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_PAGE_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


# -- chat response and streaming events ---------------------------------------------------------


@dataclass
class ChatResponse:
    """The assistant's answer: text and images in the order they were generated."""

    parts: list[Part] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parts = _normalize_parts(self.parts)

    @property
    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> list[Image.Image]:
        return [p for p in self.parts if isinstance(p, Image.Image)]

    @staticmethod
    def image_name(k: int) -> str:
        """The file name of the k-th image (1-based)."""
        return f"image_{k:02d}.png"

    def to_markdown(self, image_dir: str | None = None) -> str:
        """Text as it is; each image as a `![Image k](image_0k.png)` link (the names `save` writes)."""
        chunks, k = [], 0
        for part in self.parts:
            if isinstance(part, str):
                chunks.append(part)
            else:
                k += 1
                chunks.append(f"\n\n{_md_image(f'Image {k}', self.image_name(k), image_dir)}\n\n")
        return re.sub(r"\n{3,}", "\n\n", "".join(chunks)).strip() + "\n"

    def save(self, dir: str | os.PathLike) -> Path:
        """Writes `image_01.png`..., `response.json` (parts in the instruction-data format of
        DESIGN §7) and a self-contained `index.html` into `dir` (created). Returns the folder."""
        folder = _prepare_dir(dir)
        n_images = 0
        entries, body = [], ['<h1>Response</h1>\n<div class="answer">']
        for part in self.parts:
            if isinstance(part, str):
                entries.append({"type": "text", "text": part})
                body.append(f'<p class="text">{html.escape(part)}</p>')
            else:
                n_images += 1
                name = self.image_name(n_images)
                atomic_write(folder / name, _png_bytes(part))
                entries.append({"type": "image", "image": name})
                body.append(f"<figure>{_img_tag(part, name)}</figure>")
        body.append("</div>")
        record = {"format": "hart-vlm-response", "version": 1, "parts": entries}
        atomic_write(folder / "response.json", json.dumps(record, indent=2, ensure_ascii=False).encode())
        atomic_write(folder / "index.html", _html_page("Response", "\n".join(body)).encode())
        return folder

    @classmethod
    def load(cls, dir: str | os.PathLike) -> ChatResponse:
        folder = Path(dir)
        data = _read_json(folder, "response.json", "Response")
        parts: list[Part] = []
        for entry in data.get("parts", []):
            kind = entry.get("type") if isinstance(entry, dict) else None
            if kind not in ("text", "image"):
                raise ValueError(f"response.json in {str(folder)!r}: each part must have type 'text' or 'image', got {entry!r}")
            parts.append(entry.get("text", "") if kind == "text" else _load_png(folder, entry.get("image")))
        return cls(parts)


def _check_image(image: object, name: str = "image") -> None:
    if not isinstance(image, Image.Image):
        raise TypeError(f"{name} must be a PIL.Image.Image, got {type(image).__name__}")


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
        `dir` (created; each file written atomically). Returns the folder."""
        try:
            metadata_json = json.loads(json.dumps(self.metadata))
        except (TypeError, ValueError) as err:
            raise TypeError(f"metadata must hold only JSON values (str, int, float, bool, None, list, dict): {err}") from err
        folder = _prepare_dir(dir)
        steps_json = []
        for k, step in enumerate(self.steps, start=1):
            name = self.image_name(k) if step.image is not None else None
            if name:
                atomic_write(folder / name, _png_bytes(step.image))
            steps_json.append({"text": step.text, "image": name})
        record = {"format": "hart-vlm-story", "version": 1, "prompt": self.prompt, "intro": self.intro,
                  "steps": steps_json, "metadata": metadata_json}
        atomic_write(folder / "storyboard.png", _png_bytes(self.storyboard()))
        atomic_write(folder / "story.json", json.dumps(record, indent=2, ensure_ascii=False).encode())
        atomic_write(folder / "index.html", self.to_html().encode())
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
