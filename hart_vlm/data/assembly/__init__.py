"""Procedural furniture-assembly guides: texts, renders, ground truth, splits, export, checker.

    from hart_vlm.data.assembly import generate_guide, AssemblyChecker
    guide = generate_guide(0, split="train", seed=0, resolution=128)
    guide.prompt, [(step.text, step.image, step.masks) for step in guide.steps]
    AssemblyChecker().score(guide, [(step.text, step.image) for step in guide.steps]).mean_iou  # 1.0

Modules: furniture (parts, precedence, orders), kinds (the furniture kinds and their part
vocabulary), phrasing (texts), render (the box renderer), guide (guides, splits, captions,
corpus), parsing (text -> parts), follow (plan-following step check for generation), checker
(scores), export (datasets / JSONL), cli.
"""

from .checker import AssemblyChecker, AssemblyScore, StepScore
from .export import to_hf_dataset, write_jsonl
from .furniture import MATERIALS, SIZES, VIEWS, Box, Furniture, Part
from .guide import (
    HELDOUT,
    SPLITS,
    AssemblyGuide,
    CaptionPlan,
    GuidePlan,
    GuideStep,
    corpus_texts,
    generate_caption_example,
    generate_guide,
    iter_guides,
    make_renderer,
    plan_caption,
    caption_messages,
    plan_guide,
    plan_question,
    render_plan,
)
from .kinds import FURNITURE_KINDS, VOCABULARY
from .follow import PlanFollower, detect_kind
from .parsing import find_mentions, parse_overview, parse_step
from .render import RenderConfig

__all__ = [
    "FURNITURE_KINDS", "HELDOUT", "MATERIALS", "SIZES", "SPLITS", "VIEWS", "VOCABULARY",
    "AssemblyChecker", "AssemblyGuide", "AssemblyScore", "Box", "CaptionPlan", "Furniture", "GuidePlan",
    "GuideStep", "Part", "PlanFollower", "RenderConfig", "StepScore", "corpus_texts", "detect_kind", "find_mentions",
    "generate_caption_example",
    "generate_guide", "iter_guides", "make_renderer", "parse_overview", "parse_step", "caption_messages", "plan_caption", "plan_guide", "plan_question",
    "render_plan",
    "to_hf_dataset", "write_jsonl",
]
