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

A step that adds the right parts can still count them wrong: "Fit the three shelves" for a
two-shelf bookcase, "the two doors" of a one-door cabinet, "the three rungs" of a four-legged
stool (`PlanFollower.miscounted`). Such a step is a near miss: it is sampled again, and if no try
is accepted, the first near miss stands rather than the first try, which may not follow the plan.

The plan itself is checked too when it is written (`line_pattern`: the generator hands the
overview line to the check as soon as the line ends): it must list the parts of a piece the
request allows, in an order that piece can be built in. What a request allows is read from the
words the data's own descriptions use (phrasing.count_phrases, phrasing.size_words): "a two-shelf
white bookcase" is a bookcase with a first and a second shelf, and "a single bed frame" has no
centre beam. A request that states no counts allows every piece of its kind. A plan that fails is
sampled again like a step; if every try fails, the first stands and the steps follow it.

Because it reads texts with the same parser that evals/assembly_bench.py scores with, the bench
reports it as a separate decoding (`--decoding follow-plan`) beside free decoding.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from hart_vlm.generation.lines import Verdict

from .furniture import SIZES, Furniture
from .kinds import BUILDERS, FURNITURE_KINDS, VOCABULARY
from .parsing import parse_overview, parse_step
from .phrasing import COUNTED, KIND_SYNONYMS, NUMBERS, count_phrases, size_words

ACCEPT, RETRY, NEAR_MISS, STOP = Verdict.ACCEPT, Verdict.RETRY, Verdict.NEAR_MISS, Verdict.STOP
_STEP_HEADER = re.compile(r"Step \d+:")
_NUMBER = re.compile(rf"\b({'|'.join(NUMBERS)}|\d+)\s+([a-z]+(?:\s+[a-z]+)?)", re.IGNORECASE)
_PIECE_SEEDS = 256  # every builder draws all its counts within far fewer seeds (tests/hart_vlm/data/test_follow.py)


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


@lru_cache(maxsize=None)
def all_pieces(kind: str) -> tuple[tuple[str, Furniture], ...]:
    """(size, piece) for every size of `kind` and every set of counts its builder draws."""
    if kind not in BUILDERS:
        raise ValueError(f"kind must be one of {sorted(BUILDERS)}, got {kind!r}")
    found: dict[tuple, tuple[str, Furniture]] = {}
    for size in SIZES:
        for seed in range(_PIECE_SEEDS):
            piece = BUILDERS[kind](size, np.random.default_rng(seed))
            found.setdefault((size, tuple(sorted(piece.params.items()))), (size, piece))
    return tuple(found.values())


def _says(prompt: str, phrase: str) -> bool:
    words = r"\s+".join(map(re.escape, phrase.split()))
    return re.search(rf"(?<![\w-]){words}(?![\w-])", prompt, re.IGNORECASE) is not None


def requested_pieces(kind: str, prompt: str) -> tuple[Furniture, ...]:
    """The pieces of `kind` that `prompt` allows: those whose size and counts agree with every size
    word and count phrase of the kind that the prompt uses ("two-shelf", "with three doors",
    "single", "without drawers"). Words the prompt does not use rule nothing out, so a prompt
    that states no counts allows every piece; one that states counts no piece has (a five-shelf
    bookcase) allows every piece too."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    candidates = all_pieces(kind)
    sizes = {size for size in SIZES if any(_says(prompt, w) for w in size_words(kind, size))}
    stated = {p for _, piece in candidates for p in count_phrases(piece) if _says(prompt, p)}
    allowed = tuple(piece for size, piece in candidates
                    if (not sizes or size in sizes) and stated <= count_phrases(piece))
    return allowed or tuple(piece for _, piece in candidates)


def miscounted(kind: str, step: str, parts: tuple[str, ...], pieces: tuple[Furniture, ...]) -> list[str]:
    """The counted phrases of a step's text that give a wrong number: "the three shelves" when
    `parts` has two shelves, "the six legs" for a table whose `pieces` all have four. A phrase for
    several parts ("shelves", "doors", "side panels") must count the parts of `parts` it names;
    one for a part made of several pieces (phrasing.COUNTED: "legs", "rungs", "slats") must count
    the pieces of that part in one of `pieces`."""
    vocab, wrong = VOCABULARY[kind], []
    for match in _NUMBER.finditer(step):
        word, noun = match.group(1).lower(), " ".join(match.group(2).lower().split())
        noun = next((n for n in (noun, noun.split()[0]) if n in vocab), None)
        if noun is None:
            continue
        n, names = int(word) if word.isdigit() else NUMBERS.index(word), vocab[noun]
        if len(names) == 1 and names[0] in COUNTED:  # the pieces of one part
            counts = {len(p.part(names[0]).boxes) for p in pieces if names[0] in p.part_names}
            right = not counts or n in counts
        elif len(names) > 1:  # parts; a group of plural parts ("legs": front and back legs) is not counted
            named = set(names) & set(parts)
            plural = any(p.part(name).plural for p in pieces for name in named & set(p.part_names))
            right = plural or not named or n == len(named)
        else:
            continue
        if not right:
            wrong.append(f"{match.group(1)} {noun}")
    return wrong


class PlanFollower:
    """Step check that keeps the answer's "Overview:" plan to the request and each "Step k: ..." to
    the plan's next item.

    Called as `check(text_before, line)` with the answer's text before the current line and the
    line itself; returns a Verdict: accept, retry (sample the line again), near-miss (sample it again,
    but keep this try rather than the first if none is accepted) or stop (every part of the plan
    is in place: end the answer before this line).

    - An overview line (one that matches `line_pattern`; the generator hands it over when it ends)
      is accepted when its plan fits the request (`fits`).
    - A step line (ending in a complete "Step k: ..." sentence) is accepted when it adds exactly
      the missing parts of the first plan item that is not complete yet, repeats no part and
      names no part outside the plan; when it does all that but counts wrong (`miscounted`) it
      is a near miss. An answer with no overview line, or one whose overview is not a usable
      plan (an item that names no part of the kind, or one that repeats a part), has its steps
      accepted as written.

    `request`, the user's prompt, says which pieces a plan may describe (`requested_pieces`);
    without it any piece of the kind fits.
    """

    line_pattern = r"^\s*Overview:"

    def __init__(self, kind: str, request: str | None = None):
        if kind not in VOCABULARY:
            raise ValueError(f"kind must be one of {sorted(VOCABULARY)}, got {kind!r}")
        if request is not None and not isinstance(request, str):
            raise TypeError(f"request must be a str or None, got {type(request).__name__}")
        self.kind = kind
        self.request = request
        self._all_parts = tuple(sorted({name for names in VOCABULARY[kind].values() for name in names}))
        self.pieces = requested_pieces(kind, request) if request is not None else tuple(p for _, p in all_pieces(kind))

    @classmethod
    def from_prompt(cls, prompt: str) -> "PlanFollower | None":
        """A follower for the kind the prompt asks about (detect_kind) and the pieces it allows,
        or None when the prompt names no single furniture kind."""
        kind = detect_kind(prompt)
        return None if kind is None else cls(kind, prompt)

    def __repr__(self) -> str:
        return f"PlanFollower({self.kind!r})"

    def plan(self, text: str) -> list[tuple[str, ...]] | None:
        """The parts of each overview item in `text`, or None when it has no usable plan."""
        items = parse_overview(self.kind, text, self._all_parts)
        if not items or any(not item.added or item.repeated or item.unknown for item in items):
            return None
        return [tuple(item.added) for item in items]

    def fits(self, text: str) -> bool:
        """Whether the overview in `text` is a usable plan with the parts of one of the requested
        pieces, in an order that piece can be built in."""
        items = self.plan(text)
        if items is None:
            return False
        parts = {name for item in items for name in item}
        return any(set(piece.part_names) == parts and piece.order_is_valid([list(i) for i in items])
                   for piece in self.pieces)

    def miscounted(self, step: str, plan_parts: tuple[str, ...]) -> list[str]:
        """The counted phrases of a step's text that give a wrong number for the plan's parts and
        the requested pieces (module function `miscounted`)."""
        return miscounted(self.kind, step, plan_parts, self.pieces)

    def __call__(self, text_before: str, line: str) -> Verdict:
        headers = list(_STEP_HEADER.finditer(line))
        if not headers:
            overview = re.search(self.line_pattern, line, re.MULTILINE) is not None
            return RETRY if overview and not self.fits(line) else ACCEPT
        # the overview is normally a line of its own before "Step 1"; a model may also write it
        # on the step's line, and then it is checked with the step
        head = line[:headers[-1].start()]
        if re.search(self.line_pattern, head, re.MULTILINE) and not self.fits(head):
            return RETRY
        before = text_before + head
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
        step = line[headers[-1].end():]
        parsed = parse_step(self.kind, step, plan_parts, present)
        if set(parsed.added) != set(missing) or parsed.repeated or parsed.unknown:
            return RETRY
        return NEAR_MISS if self.miscounted(step, plan_parts) else ACCEPT
