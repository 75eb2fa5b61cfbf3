"""Natural-language side of the guides: step texts, user prompts, captions and descriptions.

Every noun phrase that names a part comes from the kind's closed vocabulary (kinds.VOCABULARY),
and every template keeps the part being added out of prepositional phrases while the parts it
is fixed to follow a preposition ("to", "onto", "between", ...): the checker's parser
(parsing.py) relies on exactly that, and a test checks that it reads back every generated step.
"""

from __future__ import annotations

import numpy as np

from .furniture import Furniture
from .kinds import GROUP_PHRASES, VOCABULARY
from .wordings import MORE_PROMPTS, UNSEEN_PROMPTS, UNSEEN_VIEW_REQUESTS

# {part}: the part(s) added, with determiner; {target}: what they are fixed to; {hw}: hardware
# (may be empty); {pron}/{they}/{s}/{its}: pronoun forms that agree with {part}.
ACTIONS: dict[str, tuple[str, ...]] = {
    "place_first": (
        "Start by laying {part} flat on a soft, clean surface.",
        "Begin by placing {part} on the floor where you will build.",
        "Unpack {part} and set {pron} down in front of you.",
        "First, put {part} in position.",
        "Lay out {part} on a blanket so the finish does not get scratched.",
        "Take {part} and stand {pron} upright to begin.",
    ),
    "place": (
        "Next, stand {part} upright.",
        "Set {part} in position as well.",
        "Now place {part} beside what you have built so far.",
        "Put {part} in place.",
        "Take {part} and stand {pron} up.",
    ),
    "attach": (
        "Attach {part} to {target}{hw}.",
        "Fix {part} onto {target}{hw}.",
        "Take {part} and fasten {pron} to {target}{hw}.",
        "Line {part} up with {target} and secure {pron}{hw}.",
        "Join {part} to {target}{hw}.",
        "With {target} in place, attach {part}{hw}.",
    ),
    "insert": (
        "Slide {part} between {target} and rest {pron} on the support pins.",
        "Insert {part} between {target}{hw}.",
        "Push {part} into place between {target}.",
        "Fit {part} between {target}{hw}, level with the marks.",
        "Set {part} on the pins inside {target}.",
    ),
    "lay": (
        "Lay {part} on top of {target}{hw}.",
        "Place {part} on {target} and fix {pron}{hw}.",
        "Rest {part} across {target}{hw}.",
        "Lower {part} onto {target}{hw}.",
        "Put {part} on {target} and press {pron} down firmly.",
    ),
    "nail": (
        "Nail {part} to the back of {target}{hw}.",
        "Slide {part} into the grooves of {target}{hw}.",
        "Fit {part} against the back of {target}{hw}.",
        "Secure {part} across the back of {target}{hw}.",
        "Position {part} behind {target} and fix {pron}{hw}.",
    ),
    "hang": (
        "Hang {part} on {target}{hw}.",
        "Mount {part} onto {target}{hw}.",
        "Fit {part} to {target}{hw}, then open and close {pron} to test the hinges.",
        "Attach {part} to {target}{hw}.",
        "Take {part} and screw {pron} onto {target}{hw}.",
    ),
    "fit": (
        "Slide {part} into {target}{hw}.",
        "Push {part} into {target} all the way.",
        "Insert {part} into {target}{hw}.",
        "Fit {part} into {target}{hw}.",
        "Put {part} into {target} and check that {they} slide{s} smoothly.",
    ),
}
HARDWARE: dict[str, tuple[str, ...]] = {
    "cam": (" with the cam bolts", " using the cam locks", " with four cam fittings",
            " using the cam bolts and an Allen key"),
    "screws": (" with the long screws", " using the supplied screws", " with four bolts and the Allen key",
               " with the wood screws"),
    "dowels": (" with the wooden dowels and a little glue", " using the dowels", " with the dowels and two screws"),
    "pins": (" on the support pins", " at the marked holes", " on the four metal pins"),
    "nails": (" with the small nails", " using the panel nails", " with the short nails and a hammer"),
    "hinges": (" with the hinges", " using the hinge screws", " with the clip-on hinges"),
    "brackets": (" with the metal brackets", " using the corner brackets", " with the brackets and bolts"),
    "runners": (" on {its} runners", " along the metal runners", " on the runners"),
    "strips": (" with the hook-and-loop strips", " using the fastening strips"),
    "none": ("",),
}
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
NO_DRAWERS = "without drawers"
COUNTED = ("legs", "front legs", "back legs", "rungs", "slats")
# "{size} {material} {kind}" unless a kind words it differently.
NOUN_FORMS = {
    ("bed frame", "small"): "single {material} bed frame",
    ("bed frame", "medium"): "double {material} bed frame",
    ("bed frame", "large"): "king-size {material} bed frame",
    ("stool", "small"): "low {material} stool",
    ("stool", "medium"): "counter-height {material} stool",
    ("stool", "large"): "{material} bar stool",
}
# Other names users give the kinds ("bookshelf" for "bookcase"); only varied_description uses them.
KIND_SYNONYMS = {"bookcase": ("bookshelf", "shelving unit"), "bed frame": ("bed",), "nightstand": ("bedside table",),
                 "cabinet": ("cupboard",), "wardrobe": ("closet",), "desk": ("writing desk",)}
VIEW_WORDS = {"front-left": "front left", "front-right": "front right", "high front-left": "upper left"}

PROMPTS = (
    "How do I assemble {a_desc}?",
    "How do I put together {a_desc}?",
    "Show me step by step how to build {a_desc}.",
    "I bought {a_desc}. What do I do first?",
    "Can you walk me through assembling {a_desc}?",
    "Give me illustrated assembly instructions for {a_desc}.",
    "I just unpacked {a_desc} and need help putting it together.",
    "What are the steps to assemble {a_desc}?",
)
VIEW_REQUESTS = (
    "Show each step from the {view}.",
    "Draw the pictures from the {view}.",
    "I'd like to see it from the {view}.",
    "Please draw it as seen from the {view}.",
    "Use a view from the {view}.",
)
DRAW_FULL = (
    "Draw {a_desc} seen from the {view}.",
    "Show me a picture of {a_desc}, viewed from the {view}.",
    "Render {a_desc} from the {view}.",
    "What does {a_desc} look like from the {view}?",
    "Make an image of {a_desc} seen from the {view}.",
)
DRAW_PARTIAL = (
    "Draw {a_desc} under assembly, seen from the {view}: only {present} {be} in place.",
    "Show me {a_desc} from the {view}, partly built, with {present} fitted and nothing else.",
    "Render a half-built {desc} from the {view}. So far only {present} {be} assembled.",
    "Make an image of {a_desc} in progress, viewed from the {view}, showing just {present}.",
    "Picture {a_desc} from the {view} while it is being built: {present} {be} done.",
)
DESCRIBE_ASKS = (
    "Describe this picture.",
    "What is shown in this image?",
    "What do you see here?",
    "Describe the furniture in this image.",
    "Which parts are already assembled in this picture?",
)
DESCRIBE_FULL = (
    "{A_desc}, seen from the {view}, fully assembled: {present}.",
    "This is {a_desc} seen from the {view}. It is finished, with all its parts in place: {present}.",
    "A finished {desc} viewed from the {view}. You can see {present}.",
    "The picture shows {a_desc} from the {view}; every part is assembled: {present}.",
    "{A_desc} from the {view}, complete with {present}.",
)
DESCRIBE_PARTIAL = (
    "{A_desc} under assembly, seen from the {view}. In place: {present}. Still missing: {missing}.",
    "This is a half-built {desc} viewed from the {view}. So far {present} {be} assembled; "
    "{missing} {be_missing} not fitted yet.",
    "The picture shows {a_desc} from the {view} in progress: {present} {be} in place, "
    "while {missing} {be_missing} still to come.",
    "A partly assembled {desc} seen from the {view}, with {present}; {missing} {be_missing} missing.",
    "{A_desc} from the {view}, not finished yet: it has {present} but not {missing}.",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def join_words(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def overview_text(step_parts: list[list[str]]) -> str:
    """A one-line plan of the guide, one numbered item per step, with the canonical part names:
    'Overview: (1) bottom panel; (2) left side panel and right side panel; (3) top panel.'

    Put before "Step 1:", it lets a model write its plan first, next to the prompt, and then
    follow it step by step (a parts list up front, as printed assembly manuals have)."""
    if not step_parts or not all(step_parts):
        raise ValueError("step_parts must be a non-empty list of non-empty part lists")
    return "Overview: " + "; ".join(f"({k}) {join_words(names)}" for k, names in enumerate(step_parts, 1)) + "."


def _features(furniture: Furniture) -> list[tuple[str, str | None]]:
    """What a description counts, each as ("two shelves", "two-shelf"): the phrase after "with"
    and the compound adjective a user may put before the noun instead (None: no such adjective).
    Desks and nightstands without drawers have none (describe says "without drawers")."""
    p, kind = furniture.params, furniture.kind

    def counted(n: int, singular: str, plural: str, adjective: str | None = None) -> tuple[str, str]:
        return (f"{NUMBERS[n]} {singular if n == 1 else plural}",
                f"{'single' if n == 1 else NUMBERS[n]}-{adjective or singular}")

    if kind == "bookcase":
        return [counted(p["shelves"], "shelf", "shelves")]
    if kind == "table":
        legs = [(f"{NUMBERS[p['legs']]} legs", f"{NUMBERS[p['legs']]}-legged")] if p["legs"] != 4 else []
        return legs + ([("a lower shelf", None)] if p["lower_shelf"] else [])
    if kind == "chair":
        return [counted(p["backrest_slats"], "backrest slat", "backrest slats", "slat")]
    if kind == "stool":
        return [(f"{NUMBERS[p['legs']]} legs", f"{NUMBERS[p['legs']]}-legged")] + (
            [("a cushion", None)] if p["cushion"] else [])
    if kind == "bed frame":
        return [(f"{NUMBERS[p['slats']]} slats", None)]
    if kind in ("cabinet", "wardrobe"):
        return [counted(p["doors"], "door", "doors")]
    if kind in ("desk", "nightstand") and p["drawers"]:
        return [counted(p["drawers"], "drawer", "drawers")]
    return []


def _noun(furniture: Furniture, material: str, size: str | None, kind_word: str | None = None,
          adjectives: str = "") -> str:
    """'small white bookcase', 'double oak bed frame'; with size None, 'white bookcase'; with
    adjectives "two-shelf", 'small two-shelf white bookcase'."""
    kind = furniture.kind
    form = "{material} {kind}" if size is None else NOUN_FORMS.get((kind, size), "{size} {material} {kind}")
    if kind_word is not None:
        form = form.replace(kind, kind_word).replace("{kind}", kind_word)
    if adjectives:
        form = form.replace("{material}", adjectives + " {material}")
    return form.format(size="medium-sized" if size == "medium" else size, material=material, kind=kind)


def _without_drawers(furniture: Furniture) -> bool:
    return furniture.kind in ("desk", "nightstand") and furniture.params["drawers"] == 0


def _with(noun: str, furniture: Furniture, phrases: list[str]) -> str:
    if _without_drawers(furniture):
        return noun + " " + NO_DRAWERS
    return noun + (" with " + join_words(phrases) if phrases else "")


def count_phrases(furniture: Furniture) -> frozenset[str]:
    """Every phrase with which a description states this piece's counts: both forms of each
    feature ("two shelves", "two-shelf") and "without drawers"."""
    phrases = {phrase for pair in _features(furniture) for phrase in pair if phrase is not None}
    return frozenset(phrases | ({NO_DRAWERS} if _without_drawers(furniture) else set()))


def size_words(kind: str, size: str) -> tuple[str, ...]:
    """The words that give a piece's size in a description: ("single", "small") for a small bed
    frame (NOUN_FORMS), ("large",) for a large table, ("medium-sized", "medium") for a medium one."""
    form = NOUN_FORMS.get((kind, size))
    if form is None:
        return ("medium-sized", size) if size == "medium" else (size,)
    kind_words = set(kind.split())
    return (*[w for w in form.split() if w != "{material}" and w not in kind_words], size)


def describe(furniture: Furniture, material: str, size: str) -> str:
    """'small white bookcase with two shelves' (no article): the one wording of the held-out
    prompts, captions and descriptions."""
    return _with(_noun(furniture, material, size), furniture, [phrase for phrase, _ in _features(furniture)])


def varied_description(furniture: Furniture, material: str, size: str, rng: np.random.Generator) -> str:
    """Another way a user names the same piece: 'two-shelf white bookcase', 'large oak bookshelf
    with three shelves', ... Count adjectives stand in for "with N ...", the size may be left out
    and the kind may be a synonym (KIND_SYNONYMS); the material and every count stay, so the
    request still fixes what is built. One time in four it is `describe`'s wording."""
    if rng.random() < 0.25:
        return describe(furniture, material, size)
    synonyms = KIND_SYNONYMS.get(furniture.kind, ())
    kind_word = _pick(rng, synonyms) if synonyms and rng.random() < 0.4 else None
    size_word = size if rng.random() < 0.5 else None
    features = _features(furniture)
    compounds = [c for _, c in features if c is not None]
    if compounds and rng.random() < 0.7:
        noun = _noun(furniture, material, size_word, kind_word, " ".join(compounds))
        return _with(noun, furniture, [phrase for phrase, c in features if c is None])
    return _with(_noun(furniture, material, size_word, kind_word), furniture, [phrase for phrase, _ in features])


def part_phrase(furniture: Furniture, names: list[str], rng: np.random.Generator) -> str:
    """A noun phrase with determiner naming exactly `names` (one part or a whole group)."""
    vocab = VOCABULARY[furniture.kind]
    if len(names) > 1:
        group = furniture.part(names[0]).group
        phrase = GROUP_PHRASES.get(group or "", "")
        denoted = set(vocab.get(phrase, ())) & set(furniture.part_names)
        if denoted == set(names) and rng.random() < 0.6:
            if any(furniture.part(n).plural for n in names):  # "legs" = front legs + back legs
                return f"{_pick(rng, ['the', 'all the'])} {phrase}"
            quantifier = "both" if len(names) == 2 else "all the"
            return f"{_pick(rng, [quantifier, 'the', 'the ' + NUMBERS[len(names)]])} {phrase}"
        return join_words([part_phrase(furniture, [n], rng) for n in names])
    name = names[0]
    aliases = [a for a, parts in vocab.items() if parts == (name,) and a != name]
    noun = name if not aliases or rng.random() < 0.6 else _pick(rng, aliases)
    if name in COUNTED and rng.random() < 0.5:
        return f"the {NUMBERS[len(furniture.part(name).boxes)]} {noun}"
    return f"the {noun}"


def step_text(furniture: Furniture, names: list[str], present: set[str], first: bool, rng: np.random.Generator) -> str:
    """The instruction for a step that adds `names` to the parts already `present`."""
    part = furniture.part(names[0])
    plural = part.plural or len(names) > 1
    action = part.action
    if action == "place" and first:
        action = "place_first"
    target = ""
    if part.targets:
        usable = [phrase for phrase, needed in part.targets if set(needed) <= present]
        if not usable:
            raise ValueError(f"{part.name!r} is added before what it is fixed to; present: {sorted(present)}")
        target = "the " + _pick(rng, usable)
    hw = "" if rng.random() < 0.25 else _pick(rng, HARDWARE[part.hardware])
    text = _pick(rng, ACTIONS[action]).format(
        part=part_phrase(furniture, names, rng), target=target, hw=hw,
        pron="them" if plural else "it", they="they" if plural else "it", s="" if plural else "s",
    )
    return text.replace("{its}", "their" if plural else "its")


def prompt_text(desc: str, view: str, rng: np.random.Generator) -> str:
    """A user request for the whole guide, naming the furniture and the camera view."""
    ask = _pick(rng, PROMPTS).format(a_desc=_article(desc))
    return f"{ask} {_pick(rng, VIEW_REQUESTS).format(view=VIEW_WORDS[view])}"


WORDINGS = ("data", "varied", "unseen")


def varied_prompt_text(furniture: Furniture, material: str, size: str, view: str, rng: np.random.Generator,
                       wording: str = "varied") -> str:
    """A user request for the whole guide in the many ways users word one: the piece as
    `varied_description` names it and, three times in four, the camera view (when the request
    leaves it out, the guide's view is the model's choice). `wording` "varied" draws the request
    from PROMPTS and MORE_PROMPTS, "unseen" from the family no training example uses."""
    if wording not in ("varied", "unseen"):
        raise ValueError(f"wording must be 'varied' or 'unseen', got {wording!r}")
    desc = varied_description(furniture, material, size, rng)
    asks, views = (PROMPTS + MORE_PROMPTS, VIEW_REQUESTS) if wording == "varied" else (UNSEEN_PROMPTS, UNSEEN_VIEW_REQUESTS)
    ask = _pick(rng, asks).format(a_desc=_article(desc), desc=desc)
    if rng.random() < 0.25:
        return ask
    return f"{ask} {_pick(rng, views).format(view=VIEW_WORDS[view])}"


def _the_parts(furniture: Furniture, names: list[str], rng: np.random.Generator) -> str:
    return join_words([part_phrase(furniture, [n], rng) for n in names])


def draw_request(furniture: Furniture, desc: str, view: str, present: list[str], rng: np.random.Generator) -> str:
    """A user request for one picture of the furniture with exactly `present` assembled."""
    fields = dict(a_desc=_article(desc), desc=desc, view=VIEW_WORDS[view])
    if len(present) == len(furniture.parts):
        return _pick(rng, DRAW_FULL).format(**fields)
    be = "is" if len(present) == 1 and not furniture.part(present[0]).plural else "are"
    return _pick(rng, DRAW_PARTIAL).format(present=_the_parts(furniture, present, rng), be=be, **fields)


def draw_lead(desc: str, view: str) -> str:
    """The sentence a drawing answer opens with, before its picture (no random draw, so the rest of
    the data stays as it was)."""
    return f"Here is {_article(desc)}, seen from the {VIEW_WORDS[view]}."


def description(furniture: Furniture, desc: str, view: str, present: list[str], rng: np.random.Generator) -> str:
    """A description of a picture of the furniture with exactly `present` assembled."""
    a_desc = _article(desc)
    fields = dict(a_desc=a_desc, A_desc=a_desc[0].upper() + a_desc[1:], desc=desc, view=VIEW_WORDS[view],
                  present=_the_parts(furniture, present, rng))
    missing = [n for n in furniture.part_names if n not in present]
    if not missing:
        return _pick(rng, DESCRIBE_FULL).format(**fields)
    plural = len(present) > 1 or furniture.part(present[0]).plural
    plural_missing = len(missing) > 1 or furniture.part(missing[0]).plural
    return _pick(rng, DESCRIBE_PARTIAL).format(
        missing=_the_parts(furniture, missing, rng), be="are" if plural else "is",
        be_missing="are" if plural_missing else "is", **fields)


def answer_question(topic: str, furniture: Furniture, desc: str, material: str, present: list[str],
                    rng: np.random.Generator) -> str:
    """The answer to a QUESTIONS[topic] question about a picture of the furniture with exactly
    `present` assembled."""
    a_desc = _article(desc)
    missing = [n for n in furniture.part_names if n not in present]
    if topic == "kind":
        return f"This is {a_desc}."
    if topic == "material":
        return f"It is {material}: {a_desc}."
    plural = len(present) > 1 or furniture.part(present[0]).plural
    parts = _the_parts(furniture, present, rng)
    if topic == "parts":
        if not missing:
            return f"Every part is in place: {parts}."
        return f"So far {parts} {'are' if plural else 'is'} in place."
    if topic == "progress":
        if not missing:
            return f"Yes, {a_desc} is fully assembled."
        plural_missing = len(missing) > 1 or furniture.part(missing[0]).plural
        return (f"No, not yet: {_the_parts(furniture, missing, rng)} {'are' if plural_missing else 'is'} still missing.")
    raise ValueError(f"topic must be one of ['kind', 'material', 'parts', 'progress'], got {topic!r}")
