"""Reading step texts back into parts, with the closed part vocabulary of each kind.

A mention is the longest vocabulary phrase at a position ("left side panel" before "side
panels"), matched case-insensitively on word boundaries. A mention is a *reference* (something
the part is fixed to) when the nearest word before it, skipping determiners and numbers, is a
preposition ("to the side panels", "on top of the legs"); a mention joined to the previous one
by "and"/"or"/a comma takes that mention's role; every other mention names a part being *added*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .kinds import VOCABULARY

PREPOSITIONS = frozenset(
    "to onto into on upon between against under underneath beneath below above over inside within from with "
    "behind across along of at through beside alongside near by toward towards".split())
MODIFIERS = frozenset(
    "the a an both two three four five six seven eight nine ten all each its their other remaining new "
    "matching assembled".split())
CONJUNCTIONS = frozenset("and or plus".split())
_WORD = re.compile(r"[a-z']+|,")
_SENTENCE_END = re.compile(r"[.!?;:\n]")


@dataclass(frozen=True)
class Mention:
    phrase: str  # as written in the text
    parts: tuple[str, ...]  # part names the phrase denotes (any furniture of the kind)
    added: bool  # False: the part is only referred to (what something is fixed to)
    start: int
    end: int


@lru_cache(maxsize=None)
def _pattern(kind: str) -> re.Pattern:
    phrases = sorted(VOCABULARY[kind], key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def find_mentions(kind: str, text: str) -> list[Mention]:
    """Every vocabulary phrase of `kind` in `text`, in order, marked added or reference."""
    if kind not in VOCABULARY:
        raise ValueError(f"kind must be one of {sorted(VOCABULARY)}, got {kind!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    vocab = VOCABULARY[kind]
    mentions: list[Mention] = []
    sentence_start = 0
    for match in _pattern(kind).finditer(text):
        ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, match.start())]
        sentence_start = ends[-1] if ends else 0
        previous = mentions[-1] if mentions and mentions[-1].end > sentence_start else None
        gap = text[previous.end if previous else sentence_start: match.start()].lower()
        words = [w for w in _WORD.findall(gap) if w not in MODIFIERS]
        if not words or words[-1] in CONJUNCTIONS or words[-1] == ",":
            added = previous.added if previous else True
        else:
            added = words[-1] not in PREPOSITIONS
        key = " ".join(match.group(0).lower().split())
        mentions.append(Mention(match.group(0), vocab[key], added, match.start(), match.end()))
    return mentions


@dataclass(frozen=True)
class StepParse:
    added: list[str]  # parts of this furniture that the step adds (not present before it)
    repeated: list[str]  # parts it names as added that were already present
    unknown: list[str]  # phrases naming parts of the kind that this furniture does not have

    @property
    def valid(self) -> bool:
        return bool(self.added)


def parse_step(kind: str, text: str, part_names: tuple[str, ...], present: set[str]) -> StepParse:
    """The parts a step text adds to a furniture with `part_names`, given the parts `present`."""
    added, repeated, unknown = [], [], []
    for mention in find_mentions(kind, text):
        if not mention.added:
            continue
        names = [n for n in mention.parts if n in part_names]
        if not names:
            unknown.append(mention.phrase)
        for name in names:
            target = repeated if name in present else added
            if name not in target:
                target.append(name)
    return StepParse(added, repeated, unknown)


_OVERVIEW_ITEM = re.compile(r"\(\d+\)\s*([^;]*)")


def parse_overview(kind: str, text: str, part_names: tuple[str, ...]) -> list[StepParse] | None:
    """The plan in the first "Overview: (1) ...; (2) ..." line of `text` (phrasing.overview_text),
    one StepParse per numbered item, each read like a step after the items before it; None when
    `text` has no such line."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    line = next((line for line in text.splitlines() if line.lstrip().startswith("Overview:")), None)
    if line is None:
        return None
    items, present = [], set()
    for item in _OVERVIEW_ITEM.findall(line):
        parsed = parse_step(kind, item.rstrip(". "), part_names, present)
        items.append(parsed)
        present |= set(parsed.added)
    return items
