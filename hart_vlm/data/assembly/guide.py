"""Guides: planning (text and geometry, no pixels), splits, rendering, captions and the text corpus.

Everything is a pure function of (seed, split, index): guide i draws from its own numpy
Generator seeded with that triple, so it is the same whatever N is and workers can build
guides in parallel. The held-out split holds (kind, material, size) combinations that the
train and validation splits never contain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image

from . import phrasing, wordings
from .furniture import FINISHES, MATERIALS, SIZES, VIEWS, Furniture, plan_steps
from .kinds import BUILDERS, FURNITURE_KINDS
from .render import Frame, RenderConfig, SceneRenderer, fit_camera

SPLITS: tuple[str, ...] = ("train", "validation", "heldout")
_SPLIT_CODES = {"train": 0, "validation": 1, "heldout": 2}
_GUIDE_STREAM, _CAPTION_STREAM, _PROMPT_STREAM, _QUESTION_STREAM = 0, 1, 2, 3


def heldout_combinations() -> frozenset[tuple[str, str, str]]:
    """Three (kind, material, size) combinations per kind, one per size, with the material
    rotating across kinds so every material and size stays common in training."""
    materials = list(MATERIALS)
    return frozenset((kind, materials[(3 * k + 2 * j) % len(materials)], SIZES[j])
                     for k, kind in enumerate(FURNITURE_KINDS) for j in range(len(SIZES)))


HELDOUT = heldout_combinations()


def _check(index: int, split: str, seed: int) -> None:
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _rng(index: int, split: str, seed: int, stream: int) -> np.random.Generator:
    _check(index, split, seed)
    return np.random.default_rng([int(seed), _SPLIT_CODES[split], stream, int(index)])


def sample_combination(split: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """(kind, material, size) for `split`, by rejection: held-out combos only in "heldout"."""
    while True:
        combo = (FURNITURE_KINDS[int(rng.integers(len(FURNITURE_KINDS)))],
                 list(MATERIALS)[int(rng.integers(len(MATERIALS)))], SIZES[int(rng.integers(len(SIZES)))])
        if (combo in HELDOUT) == (split == "heldout"):
            return combo


@dataclass
class GuidePlan:
    """A guide without pixels: the furniture, the view, the prompt and the steps' texts."""

    index: int
    split: str
    seed: int
    furniture: Furniture
    material: str
    size: str
    view: str
    prompt: str
    step_parts: list[list[str]]
    step_texts: list[str]

    @property
    def kind(self) -> str:
        return self.furniture.kind

    @property
    def params(self) -> dict:
        return {"material": self.material, "size": self.size, "view": self.view, **self.furniture.params}

    @property
    def description(self) -> str:
        return phrasing.describe(self.furniture, self.material, self.size)

    @property
    def overview(self) -> str:
        """The guide's plan in one line, one numbered item per step (phrasing.overview_text)."""
        return phrasing.overview_text(self.step_parts)

    def step_lines(self, overview: bool = False) -> list[str]:
        """The assistant's texts: "Step k: ..." per step, the first one after the overview line
        when `overview` is true."""
        lines = [f"Step {k + 1}: {text}" for k, text in enumerate(self.step_texts)]
        if overview:
            lines[0] = f"{self.overview}\n{lines[0]}"
        return lines


def plan_guide(index: int, split: str = "train", seed: int = 0, wording: str = "data") -> GuidePlan:
    """The text and geometry of guide `index` of `split` (fast: no rendering).

    `wording` words the user prompt: "data" in the data's own templates (phrasing.prompt_text),
    "varied" in the many ways users word requests (phrasing.varied_prompt_text: "Hey, can you help
    me build a two-shelf white bookshelf?", a synonym, no size or no view), "unseen" in a family of
    wordings that no training example uses. The varied prompts come from a random stream of their
    own, so everything else in the guide is the same whatever the wording."""
    if wording not in phrasing.WORDINGS:
        raise ValueError(f"wording must be one of {phrasing.WORDINGS}, got {wording!r}")
    plan = _plan(_rng(index, split, seed, _GUIDE_STREAM), index, split, seed)
    if wording != "data":
        rng = _rng(index, split, seed, _PROMPT_STREAM)
        plan.prompt = phrasing.varied_prompt_text(plan.furniture, plan.material, plan.size, plan.view, rng, wording)
    return plan


def _plan(rng: np.random.Generator, index: int, split: str, seed: int) -> GuidePlan:
    kind, material, size = sample_combination(split, rng)
    furniture = BUILDERS[kind](size, rng)
    view = list(VIEWS)[int(rng.integers(len(VIEWS)))]
    steps = plan_steps(furniture, rng)
    texts, present = [], set()
    for k, names in enumerate(steps):
        texts.append(phrasing.step_text(furniture, names, present, k == 0, rng))
        present |= set(names)
    prompt = phrasing.prompt_text(phrasing.describe(furniture, material, size), view, rng)
    return GuidePlan(index, split, seed, furniture, material, size, view, prompt, steps, texts)


def make_renderer(furniture: Furniture, material: str | tuple[int, int, int], view: str, resolution: int = 128,
                  config: RenderConfig | None = None) -> SceneRenderer:
    """A renderer of `furniture` in `material` (a name of MATERIALS, or any sRGB colour as an
    (r, g, b) triple) from `view`, framed on the finished piece."""
    config = config or RenderConfig(resolution=resolution)
    if config.resolution != resolution:
        raise ValueError(f"resolution {resolution} disagrees with config.resolution {config.resolution}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {list(VIEWS)}, got {view!r}")
    boxes = [box for part in furniture.parts for box in part.boxes]
    box_parts = [p for p, part in enumerate(furniture.parts) for _ in part.boxes]
    yaw, pitch = VIEWS[view]
    camera = fit_camera(boxes, yaw, pitch + furniture.pitch_offset, resolution, config.margin)
    return SceneRenderer(boxes, box_parts, box_colors(furniture, material), camera, config)


def box_colors(furniture: Furniture, material: str | tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The base colour of every box of `furniture` (in the order of its parts and their boxes)
    when it is made of `material` (a name of MATERIALS or an sRGB triple): the material's colour,
    or the colour of the box's finish."""
    if isinstance(material, str):
        if material not in MATERIALS:
            raise ValueError(f"material must be one of {list(MATERIALS)} or an (r, g, b) triple, got {material!r}")
        color = MATERIALS[material]
    else:
        color = tuple(int(c) for c in material)
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ValueError(f"material must be one of {list(MATERIALS)} or an (r, g, b) triple in 0..255, "
                             f"got {material!r}")
    return [color if box.finish == "material" else FINISHES[box.finish] for part in furniture.parts for box in part.boxes]


@dataclass
class GuideStep:
    """One step: its text, the parts it adds, the render of the state after it and the state."""

    text: str
    parts_added: list[str]
    frame: Frame
    state: tuple[str, ...]  # every part present after this step, in assembly order
    part_names: tuple[str, ...]  # index -> name for frame.part_map

    @property
    def image(self) -> Image.Image:
        return self.frame.image

    @cached_property
    def masks(self) -> dict[str, np.ndarray]:
        """Part name -> (H, W) bool mask of the pixels where that part is visible."""
        return {name: self.frame.part_map == self.part_names.index(name) for name in self.state}


@dataclass
class AssemblyGuide:
    """A rendered guide: the user prompt and the illustrated steps, with the ground truth."""

    plan: GuidePlan
    steps: list[GuideStep]
    resolution: int

    @property
    def kind(self) -> str:
        return self.plan.kind

    @property
    def params(self) -> dict:
        return self.plan.params

    @property
    def prompt(self) -> str:
        return self.plan.prompt

    @property
    def furniture(self) -> Furniture:
        return self.plan.furniture

    @property
    def index(self) -> int:
        return self.plan.index

    @property
    def split(self) -> str:
        return self.plan.split

    def to_messages(self, image_format: str = "pil", image_paths: list[str] | None = None,
                    overview: bool = False) -> list[dict]:
        """The chat of DESIGN.md §7: the user prompt, then "Step k: ..." texts, each followed
        by its image (a PIL image, or the given relative paths with image_format="path").
        With `overview`, the answer opens with the plan's overview line (GuidePlan.overview)."""
        if image_format not in ("pil", "path"):
            raise ValueError(f"image_format must be 'pil' or 'path', got {image_format!r}")
        if image_format == "path" and (image_paths is None or len(image_paths) != len(self.steps)):
            raise ValueError(f"image_paths must list {len(self.steps)} paths when image_format='path'")
        content = []
        for k, (line, step) in enumerate(zip(self.plan.step_lines(overview), self.steps)):
            content.append({"type": "text", "text": line})
            content.append({"type": "image", "image": step.image if image_format == "pil" else image_paths[k]})
        return [{"role": "user", "content": [{"type": "text", "text": self.prompt}]},
                {"role": "assistant", "content": content}]


def render_plan(plan: GuidePlan, resolution: int = 128, config: RenderConfig | None = None) -> AssemblyGuide:
    """Render every step of a plan."""
    renderer = make_renderer(plan.furniture, plan.material, plan.view, resolution, config)
    names = plan.furniture.part_names
    frames = renderer.render_states([[names.index(n) for n in step] for step in plan.step_parts])
    steps, state = [], ()
    for text, added, frame in zip(plan.step_texts, plan.step_parts, frames):
        state = (*state, *added)
        steps.append(GuideStep(text, list(added), frame, state, names))
    return AssemblyGuide(plan, steps, resolution)


def generate_guide(index: int, split: str = "train", seed: int = 0, resolution: int = 128,
                   wording: str = "data") -> AssemblyGuide:
    """Guide `index` of `split`, rendered at `resolution` pixels (`wording`: plan_guide)."""
    return render_plan(plan_guide(index, split, seed, wording), resolution)


def iter_guides(num: int, split: str = "train", seed: int = 0, resolution: int = 128,
                start: int = 0) -> Iterator[AssemblyGuide]:
    """Guides start .. start + num - 1 of `split`."""
    if not isinstance(num, int) or num < 0:
        raise ValueError(f"num must be a non-negative int, got {num!r}")
    for index in range(start, start + num):
        yield generate_guide(index, split, seed, resolution)


@dataclass
class CaptionPlan:
    """A single-picture example: "draw" (text -> image) or "describe" (image -> text)."""

    guide: GuidePlan
    task: str
    num_steps: int  # the picture shows the state after this many steps
    user_text: str
    assistant_text: str | None  # the description, for task "describe"
    asked_step: int | None = None  # the step a "question:match" example quotes

    @property
    def present(self) -> list[str]:
        return [n for step in self.guide.step_parts[: self.num_steps] for n in step]


def plan_caption(index: int, split: str = "train", seed: int = 0) -> CaptionPlan:
    """Caption example `index` of `split` (its own random stream, independent of the guides)."""
    rng = _rng(index, split, seed, _CAPTION_STREAM)
    guide = _plan(rng, index, split, seed)
    total = len(guide.step_parts)
    num_steps = total if rng.random() < 0.5 else int(rng.integers(1, total))
    present = [n for step in guide.step_parts[:num_steps] for n in step]
    desc, furniture = guide.description, guide.furniture
    if rng.random() < 0.5:
        return CaptionPlan(guide, "draw", num_steps, phrasing.draw_request(furniture, desc, guide.view, present, rng), None)
    ask = phrasing.DESCRIBE_ASKS[int(rng.integers(len(phrasing.DESCRIBE_ASKS)))]
    return CaptionPlan(guide, "describe", num_steps, ask, phrasing.description(furniture, desc, guide.view, present, rng))


def plan_question(index: int, split: str = "train", seed: int = 0, wording: str = "varied",
                  topic: str | None = None) -> CaptionPlan:
    """Question example `index` of `split`: a picture of a piece at some stage and a question
    about its kind, material, parts in place or progress, which step of its guide it shows (the
    steps listed under the question) or whether it matches one quoted step (wordings.QUESTIONS),
    with its answer. `wording` "unseen" asks in the family no training example uses
    (wordings.UNSEEN_QUESTIONS). Its own random stream, independent of the guides and captions;
    `topic` asks about that topic instead of the drawn one (the same picture either way)."""
    if wording not in ("varied", "unseen"):
        raise ValueError(f"wording must be 'varied' or 'unseen', got {wording!r}")
    if topic is not None and topic not in wordings.QUESTIONS:
        raise ValueError(f"topic must be one of {sorted(wordings.QUESTIONS)} or None, got {topic!r}")
    rng = _rng(index, split, seed, _QUESTION_STREAM)
    guide = _plan(rng, index, split, seed)
    total = len(guide.step_parts)
    num_steps = total if rng.random() < 0.4 else int(rng.integers(1, total))
    present = [n for step in guide.step_parts[:num_steps] for n in step]
    questions = wordings.QUESTIONS if wording == "varied" else wordings.UNSEEN_QUESTIONS
    drawn = sorted(questions)[int(rng.integers(len(questions)))]
    topic = drawn if topic is None else topic
    ask = questions[topic][int(rng.integers(len(questions[topic])))]
    if wording == "varied":  # a lead-in and a courtesy around it, as users write (often neither)
        lead = wordings.QUESTION_LEADS[int(rng.integers(len(wordings.QUESTION_LEADS)))]
        tail = wordings.QUESTION_TAILS[int(rng.integers(len(wordings.QUESTION_TAILS)))]
        ask = lead + ask + tail
    if topic == "step":
        ask = "\n".join([ask, *guide.step_lines()])
        return CaptionPlan(guide, f"question:{topic}", num_steps, ask, f"It shows the result of step {num_steps}.")
    if topic == "match":
        # half the time the picture's own step, else another one (a neighbour as often as not)
        others = [k for k in range(1, total + 1) if k != num_steps]
        near = [k for k in others if abs(k - num_steps) == 1]
        asked = num_steps if rng.random() < 0.5 else int(rng.choice(near if near and rng.random() < 0.5 else others))
        ask = ask.format(step=guide.step_lines()[asked - 1])
        answer = (f"Yes, it shows the result of step {asked}." if asked == num_steps
                  else f"No, it shows {'a later' if num_steps > asked else 'an earlier'} stage than step {asked}.")
        return CaptionPlan(guide, f"question:{topic}", num_steps, ask, answer, asked_step=asked)
    answer = phrasing.answer_question(topic, guide.furniture, guide.description, guide.material, present, rng)
    return CaptionPlan(guide, f"question:{topic}", num_steps, ask, answer)


def render_caption(cap: CaptionPlan, resolution: int = 128,
                   material: str | tuple[int, int, int] | None = None) -> Image.Image:
    """The picture of caption example `cap`, in its own material or in `material` (a name or an
    sRGB triple, as make_renderer takes it)."""
    renderer = make_renderer(cap.guide.furniture, cap.guide.material if material is None else material,
                             cap.guide.view, resolution)
    names = cap.guide.furniture.part_names
    return renderer.render_states([[names.index(n) for n in cap.present]])[0].image


def generate_caption_example(index: int, split: str = "train", seed: int = 0, resolution: int = 128) -> dict:
    """{"messages": [...]} with a PIL image: a user request answered by a picture, or a
    picture with "Describe ..." answered by a description."""
    return caption_messages(plan_caption(index, split, seed), resolution)


def caption_messages(cap: CaptionPlan, resolution: int = 128) -> dict:
    """{"messages": [...]} of a caption or question example, its picture rendered: a request
    answered by one sentence and the picture ("draw"), or the picture and a question answered in text."""
    image = render_caption(cap, resolution)
    text = [{"type": "text", "text": cap.user_text}]
    if cap.task == "draw":
        lead = phrasing.draw_lead(cap.guide.description, cap.guide.view)
        return {"messages": [{"role": "user", "content": text},
                             {"role": "assistant", "content": [{"type": "text", "text": lead},
                                                               {"type": "image", "image": image}]}]}
    return {"messages": [{"role": "user", "content": [{"type": "image", "image": image}, *text]},
                         {"role": "assistant", "content": [{"type": "text", "text": cap.assistant_text}]}]}


def corpus_texts(num_guides: int, seed: int = 0) -> Iterator[str]:
    """Every prompt, step text ("Step k: ..."), caption request and description of the first
    `num_guides` guides and caption examples of every split. Text only, no rendering."""
    if not isinstance(num_guides, int) or num_guides < 0:
        raise ValueError(f"num_guides must be a non-negative int, got {num_guides!r}")
    for split in SPLITS:
        for index in range(num_guides):
            plan = plan_guide(index, split, seed)
            yield plan.prompt
            for k, text in enumerate(plan.step_texts):
                yield f"Step {k + 1}: {text}"
            cap = plan_caption(index, split, seed)
            yield cap.user_text
            if cap.assistant_text is not None:
                yield cap.assistant_text
