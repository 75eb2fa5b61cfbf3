"""What interleaved generation returns: `ChatResponse`, the assistant's answer as an ordered list
of text and PIL images, and the events of `chat(stream=True)` (`TextDelta`, `ImagePreview`,
`ImageDone`, `Done`), with `collect`, which folds a stream back into its response. Nothing here
depends on the model. The files and pages written here are shared with `hart_vlm.stories`.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Union

from PIL import Image

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
        DESIGN §7) and a self-contained `index.html` into `dir` (created). Everything is rendered
        before the first file is written; each file is written atomically, response.json last, and
        the pictures of an earlier, longer response are removed. Returns the folder."""
        folder = _prepare_dir(dir)
        files: dict[str, bytes] = {}
        entries, body = [], ['<h1>Response</h1>\n<div class="answer">']
        for part in self.parts:
            if isinstance(part, str):
                entries.append({"type": "text", "text": part})
                body.append(f'<p class="text">{html.escape(part)}</p>')
            else:
                name = self.image_name(len(files) + 1)
                files[name] = _png_bytes(part)
                entries.append({"type": "image", "image": name})
                body.append(f"<figure>{_img_tag(part, name)}</figure>")
        body.append("</div>")
        record = {"format": "hart-vlm-response", "version": 1, "parts": entries}
        files["index.html"] = _html_page("Response", "\n".join(body)).encode()
        files["response.json"] = json.dumps(record, indent=2, ensure_ascii=False).encode()
        for name, data in files.items():
            atomic_write(folder / name, data)
        for stale in folder.glob("image_*.png"):
            if re.fullmatch(r"image_\d+\.png", stale.name) and stale.name not in files:
                stale.unlink()
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


def _check_row(row: object) -> None:
    if not isinstance(row, int) or row < 0:
        raise ValueError(f"row must be an int >= 0 (the batch row), got {row!r}")


@dataclass
class TextDelta:
    """New text of batch row `row`, to append to what came before."""

    text: str
    row: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {type(self.text).__name__}")
        _check_row(self.row)


@dataclass
class ImagePreview:
    """A coarse decode of the image being drawn, after scale `scale_index` (0-based) of `num_scales`."""

    image: Image.Image
    scale_index: int
    num_scales: int
    row: int = 0

    def __post_init__(self) -> None:
        _check_image(self.image)
        if not isinstance(self.num_scales, int) or self.num_scales < 1:
            raise ValueError(f"num_scales must be an int >= 1, got {self.num_scales!r}")
        if not isinstance(self.scale_index, int) or not 0 <= self.scale_index < self.num_scales:
            raise ValueError(f"scale_index must be an int in [0, {self.num_scales}), got {self.scale_index!r}")
        _check_row(self.row)


@dataclass
class ImageDone:
    """The finished image; it is the next part of the answer."""

    image: Image.Image
    row: int = 0

    def __post_init__(self) -> None:
        _check_image(self.image)
        _check_row(self.row)


@dataclass
class Done:
    """The end of row `row`'s answer, with the whole response."""

    response: ChatResponse
    row: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.response, ChatResponse):
            raise TypeError(f"response must be a ChatResponse, got {type(self.response).__name__}")
        _check_row(self.row)


Event = Union[TextDelta, ImagePreview, ImageDone, Done]


def collect(events: Iterable[Event], row: int | None = None) -> ChatResponse:
    """Folds a stream into its response: texts concatenated in order, each `ImageDone` appended
    as an image, previews ignored. `row` picks one row of a batched stream (needed when the
    events hold several). A `Done` event in the stream must agree with the folded response."""
    parts: list[Part] = []
    rows: set[int] = set()
    final: ChatResponse | None = None
    for i, event in enumerate(events):
        if not isinstance(event, (TextDelta, ImagePreview, ImageDone, Done)):
            raise TypeError(f"events[{i}] must be TextDelta, ImagePreview, ImageDone or Done, got {type(event).__name__}")
        if row is not None and event.row != row:
            continue
        rows.add(event.row)
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, ImageDone):
            parts.append(event.image)
        elif isinstance(event, Done):
            if final is not None:
                raise ValueError(f"events hold two Done events for row {event.row}")
            final = event.response
    if len(rows) > 1:
        raise ValueError(f"events hold rows {sorted(rows)}; pass row= to collect one of them")
    response = ChatResponse(parts)
    if final is not None and final != response:
        raise ValueError("events are inconsistent: the Done response differs from the streamed deltas and images")
    return response
