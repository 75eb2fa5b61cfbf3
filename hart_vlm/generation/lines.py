"""Step checks and the line-retry policy of interleaved generation.

A step check (`StepCheck`, e.g. hart_vlm.data.assembly.PlanFollower) reads every line that is about
to get its forced image and, if it has a `line_pattern` (a regular expression), every line that
matches it as soon as the line ends with a newline (PlanFollower's overview line). It returns a
`Verdict`. When it rejects a line, the row takes the line back (its cache columns are masked out
and their positions reused, as for padding) and samples it again at `retry_temperature`, at most
`step_retries` times. "near-miss" rejects a line that is better than a plain "retry" (PlanFollower:
a step that adds the right parts but miscounts them). When every try is rejected, the first near
miss is fed again and stands, or the first try when there was none. "stop" ends the answer before
the line. With a step check the text streams one line at a time, so a rejected line is never shown.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch

from .state import DecodeState


class Verdict(str, enum.Enum):
    ACCEPT = "accept"
    RETRY = "retry"
    NEAR_MISS = "near-miss"
    STOP = "stop"


@runtime_checkable
class StepCheck(Protocol):
    """Reads a finished line: `check(text_before, line) -> Verdict`. `line_pattern`, if not
    None, is a regular expression: lines that match it are read as soon as they end."""

    line_pattern: str | None

    def __call__(self, text_before: str, line: str) -> Verdict: ...


def line_pattern(check) -> re.Pattern | None:
    """The compiled `line_pattern` of a step check (None: a plain function, or a check without
    one), after checking that the check can be called."""
    if not callable(check):
        raise TypeError(f"step_check must be callable (text_before, line) -> Verdict, got {type(check).__name__}")
    pattern = getattr(check, "line_pattern", None)
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"step_check.line_pattern must be a str (a regular expression) or None, "
                        f"got {type(pattern).__name__}")
    return re.compile(pattern, re.MULTILINE) if pattern is not None else None


@dataclass
class Line:
    """Where a row's current line began, so that a rejected line can be taken back."""

    start: int  # index of the line's first token in the row's segment
    history: int  # length of the row's history then
    column: int  # cache column of the line's first token
    positions: torch.Tensor  # position ids of that token, for the row and its twin
    hidden: torch.Tensor  # (D,) the hidden state the line's first token is sampled from
    tries: int = 0  # rejected tries so far
    first: list[int] | None = None  # the first try's token ids (greedy when the text is)
    near_miss: list[int] | None = None  # the first try rejected as a near miss; it stands before `first`
    checked: bool = False  # accepted, or out of tries
    broken: bool = False  # a retry ended (end of turn, newline, image) before its sentence did
    whole: bool = False  # checked when it ends (the check's line_pattern): a newline ends it, not a retry
    ended: bool = False  # a whole line that has ended and waits for its check

    @property
    def retrying(self) -> bool:
        return self.tries > 0 and not self.checked


class LineRetries:
    """The retry policy: one `Line` record per row, the check asked at the right moments, and the
    row taken back and fed again through the `DecodeState`."""

    def __init__(self, check: StepCheck, state: DecodeState, tokenizer, force_re: re.Pattern, step_retries: int,
                 max_images: int | None, ends_line: Callable[[int], bool]):
        self.check, self.state, self.tokenizer = check, state, tokenizer
        self.force_re, self.step_retries, self.max_images = force_re, step_retries, max_images
        self.ends_line = ends_line
        self.line_re = line_pattern(check)
        self.lines: list[Line] = []

    def start_line(self, b: int, hidden_D: torch.Tensor) -> None:
        """Row b's next token starts a line."""
        record = self.state.records[b]
        line = Line(len(record.segment), len(record.history), self.state.num_columns, self.state.positions_of(b),
                    hidden_D.clone())
        if b < len(self.lines):
            self.lines[b] = line
        else:
            self.lines.append(line)

    def shown(self, b: int) -> list[int]:
        """The tokens of row b's segment that may be streamed: only finished lines."""
        return self.state.records[b].segment[:self.lines[b].start]

    def breaks_retry(self, b: int, token: int, is_stop: bool, is_image: bool) -> bool:
        """A retried line that ends (end of turn, image, a newline before its sentence) is broken:
        it is taken back at the next check, never fed."""
        line = self.lines[b]
        if line.retrying and (is_stop or is_image or (self.ends_line(token) and not line.whole)):
            line.broken = True
            return True
        return False

    def line_ended(self, b: int, hidden_D: torch.Tensor) -> None:
        """Row b's line ended with a newline: a whole line waits for its check, else the next starts."""
        line = self.lines[b]
        if self.line_re is not None:
            # a retry of a whole line is read whatever it says
            text = self.tokenizer.decode(self.state.records[b].segment[line.start:], skip_special_tokens=True)
            line.whole = line.whole or bool(self.line_re.search(text))
            line.ended = line.whole
        if not line.ended:
            self.start_line(b, hidden_D)

    def _ask(self, b: int, line: Line) -> Verdict:
        record = self.state.records[b]
        before = "\n".join(p for p in record.parts if isinstance(p, str))
        head = self.tokenizer.decode(record.segment[:line.start], skip_special_tokens=True)
        before = f"{before}\n{head}" if before and head else before or head
        answer = self.check(before, self.tokenizer.decode(record.segment[line.start:], skip_special_tokens=True))
        try:
            return Verdict(answer)
        except ValueError:
            raise ValueError(f"step_check must return a Verdict ({', '.join(v.value for v in Verdict)}), "
                             f"got {answer!r}") from None

    def review(self, hidden: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Asks the check about every row whose line is about to get its forced image or is a
        whole line that has just ended, and takes rejected lines back. Returns the (possibly
        rewound) hidden states (R, 1, D) and the number of tokens taken back."""
        dropped, done = 0, self.state.done
        for b in range(self.state.B):
            line, record = self.lines[b], self.state.records[b]
            if done[b] or line.checked:
                continue
            if line.broken:  # a retry that could not be checked counts as rejected
                line.broken, verdict = False, Verdict.RETRY
            elif line.ended:
                verdict = self._ask(b, line)
            else:
                if len(record.segment) <= line.start or (self.max_images is not None and record.images >= self.max_images):
                    continue
                if not self.force_re.search(self.tokenizer.decode(record.segment, skip_special_tokens=True)):
                    continue
                verdict = self._ask(b, line)
            if verdict is Verdict.ACCEPT or (verdict in (Verdict.RETRY, Verdict.NEAR_MISS) and self.step_retries == 0):
                if line.ended:  # the next line starts after its newline
                    self.start_line(b, hidden[b, -1])
                else:
                    line.checked = True
                continue
            line.ended = False
            if line.first is None:
                line.first = record.segment[line.start:]
            if verdict is Verdict.NEAR_MISS and line.near_miss is None:
                line.near_miss = record.segment[line.start:]
            hidden = hidden.clone()
            dropped += self._take_back(b, line)
            hidden[b, -1] = line.hidden
            if verdict is Verdict.STOP:
                done[b] = True
            elif line.tries < self.step_retries:
                line.tries += 1
            else:  # out of tries: the first near miss stands, or else the first try
                stands = line.near_miss if line.near_miss is not None else line.first
                hidden[b, -1] = self._feed_text(b, stands)
                record.segment.extend(stands)
                record.history.extend(stands)
                dropped -= len(stands)
                if line.whole and self.ends_line(stands[-1]):  # it ended: the next line starts
                    self.start_line(b, hidden[b, -1])
                else:
                    line.checked = True
        return hidden, dropped

    def _take_back(self, b: int, line: Line) -> int:
        """Takes row b back to the start of `line`; returns how many tokens it dropped."""
        record = self.state.records[b]
        self.state.take_back(b, line.column, line.positions)
        dropped = len(record.segment) - line.start
        del record.history[line.history:]
        del record.segment[line.start:]
        return dropped

    def _feed_text(self, b: int, ids: list[int]) -> torch.Tensor:
        """Feeds the text `ids` to row b in one pass -> the hidden state (D,) after the last."""
        device = self.state.next_pos.device
        embeds = self.state.model.embed_ids(torch.tensor([ids], device=device))  # (1, q, D)
        return self.state.feed_rows(torch.tensor([b], device=device), embeds, twins=False)[0, -1]
