"""Keeping a generated guide's steps to the plan the model wrote first (plan-following decoding).

A guide answer opens with the model's own plan, "Overview: (1) bottom panel; (2) left side panel
and right side panel; ...", and then writes one "Step k: ..." sentence per item. A small model
plans well but may drift while writing the steps: it names one of the two parts of an item
("the long rails" for "long rails and short rails"), skips an item, or repeats one.
`PlanFollower` is a step check for `HartVLM.generate_story(step_check=...)`: when a step's
sentence is complete it reads the sentence with the checker's parser (parsing.parse_step) and
asks for another sample of that sentence unless it adds exactly the parts of the plan's next item
that are not in place yet; once every part of the plan is in place it ends the answer. What is in
place is read from the steps written so far, so a step that stood although it strayed (every
retry was rejected too) is counted as written, and the plan goes on from there.

It only enforces agreement between the model's plan and its steps. The plan itself (which parts,
in which order) is the model's own and is not corrected. Because it reads texts with the same
parser that evals/assembly_bench.py scores with, the bench reports it as a separate decoding
(`--decoding follow-plan`) beside free decoding.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .kinds import FURNITURE_KINDS, VOCABULARY
from .parsing import parse_overview, parse_step
from .phrasing import KIND_SYNONYMS

ACCEPT, RETRY, STOP = "accept", "retry", "stop"
_STEP_HEADER = re.compile(r"Step \d+:")


@lru_cache(maxsize=None)
def _kind_pattern() -> tuple[re.Pattern, dict[str, str]]:
    names = {kind: kind for kind in FURNITURE_KINDS}
    for kind, synonyms in KIND_SYNONYMS.items():
        names.update({s: kind for s in synonyms})
    names["bookshelves"] = "bookcase"  # the one plural that is not the name plus "s" or "es"
    # longest first, so "bedside table" is read before "table" and "bed frame" before "bed"
    phrases = sorted(names, key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    pattern = re.compile(rf"\b({alternatives})(?:s|es)?\b", re.IGNORECASE)
    return pattern, names


def detect_kind(prompt: str) -> str | None:
    """The furniture kind a request names ("a bookshelf" -> "bookcase"), or None when it names
    none or more than one kind."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    pattern, names = _kind_pattern()
    kinds = {names[" ".join(m.group(1).lower().split())] for m in pattern.finditer(prompt)}
    return kinds.pop() if len(kinds) == 1 else None


class PlanFollower:
    """Step check that keeps each "Step k: ..." to the next item of the answer's "Overview:" line.

    Called as `check(text_before, line)` with the answer's text before the current line and the
    line itself (ending in a complete "Step k: ..." sentence); returns "accept", "retry" (sample
    the line again) or "stop" (every part of the plan is in place: end the answer before this
    line). A step is accepted when it adds exactly the missing parts of the first plan item that
    is not complete yet, repeats no part and names no part outside the plan. An answer with no
    overview line, or one whose overview is not a usable plan (an item that names no part of the
    kind, or one that repeats a part), is accepted as written.
    """

    def __init__(self, kind: str):
        if kind not in VOCABULARY:
            raise ValueError(f"kind must be one of {sorted(VOCABULARY)}, got {kind!r}")
        self.kind = kind
        self._all_parts = tuple(sorted({name for names in VOCABULARY[kind].values() for name in names}))

    @classmethod
    def from_prompt(cls, prompt: str) -> "PlanFollower | None":
        """A follower for the kind the prompt asks about (detect_kind), or None when the prompt
        names no single furniture kind."""
        kind = detect_kind(prompt)
        return None if kind is None else cls(kind)

    def __repr__(self) -> str:
        return f"PlanFollower({self.kind!r})"

    def plan(self, text: str) -> list[tuple[str, ...]] | None:
        """The parts of each overview item in `text`, or None when it has no usable plan."""
        items = parse_overview(self.kind, text, self._all_parts)
        if not items or any(not item.added or item.repeated or item.unknown for item in items):
            return None
        return [tuple(item.added) for item in items]

    def __call__(self, text_before: str, line: str) -> str:
        headers = list(_STEP_HEADER.finditer(line))
        if not headers:
            return ACCEPT
        # the overview is normally a line of its own before "Step 1"; a model may also write it
        # on the step's line, so the text before the step header counts as well
        before = text_before + line[:headers[-1].start()]
        items = self.plan(before)
        if items is None:
            return ACCEPT
        plan_parts = tuple(name for item in items for name in item)
        present: set[str] = set()
        for step in _STEP_HEADER.split(before)[1:]:  # the steps written so far, in order
            present |= set(parse_step(self.kind, step, plan_parts, present).added)
        missing = next(([n for n in item if n not in present] for item in items if not set(item) <= present), None)
        if missing is None:
            return STOP
        parsed = parse_step(self.kind, line[headers[-1].end():], plan_parts, present)
        follows = set(parsed.added) == set(missing) and not parsed.repeated and not parsed.unknown
        return ACCEPT if follows else RETRY
