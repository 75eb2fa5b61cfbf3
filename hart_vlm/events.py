"""The events of `chat(stream=True)`: `TextDelta`, `ImagePreview`, `ImageDone`, `Done`, and
`collect`, which folds a stream back into the `ChatResponse` that `chat()` returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from PIL import Image

from .story import ChatResponse, Part, _check_image


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
