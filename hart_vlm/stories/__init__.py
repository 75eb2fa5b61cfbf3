"""Stories: a step-by-step answer with one picture per step (the application layer on top of the
generic model and its generation).

    story = hart_vlm.stories.generate_story(model, "How do I assemble a two-shelf white bookcase?", seed=0)
    story.steps, story.save("story/")        # (model.generate_story(...) is the same call)

The picture after each step's text is forced (`STEP_END_PATTERN` matches the end of a step's
sentence), so every step gets its picture even from a model that rarely writes `<|image_start|>`
by itself. By default a `PlanFollower` (hart_vlm.data.assembly) keeps each step to the plan the
answer opens with and has a step that strays written again.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from hart_vlm.outputs import Done
from hart_vlm.sampling import SamplingConfig

from .story import Step, Story

__all__ = ["STEP_END_PATTERN", "STORY_TEXT_TEMPERATURE", "Step", "Story", "generate_story"]

# A step's text ends at the end of its first line: "Step 3: Attach the door to the left side."
STEP_END_PATTERN = r"Step \d+:[^\n]*[.!?]\s*$"
# Story text is greedy unless told otherwise: instructions want the most likely step, not a varied
# one (docs/experiments/greedy_story_text.md).
STORY_TEXT_TEMPERATURE = 0.0


def generate_story(model, prompt: str, num_steps: int | None = None, seed: int | None = None,
                   generator: torch.Generator | None = None, on_event=None, step_check="auto", **sampling) -> Story:
    """A step-by-step answer to `prompt` with one picture per step.

    num_steps: stop after that many steps (None: when the model ends its answer).
    seed / generator: the source of every random draw (the pictures; the text is greedy unless
        `temperature` is given).
    on_event: called with every stream event (for progress display).
    step_check: "auto" (a `PlanFollower.from_prompt(prompt)` when the prompt names a furniture
        kind: the opening plan ("Overview: (1) ...; (2) ...") is written again until it lists the
        parts of a piece the prompt allows, each step is kept to the next item of that plan, and
        the answer ends when the plan is done), None (every step as first sampled) or any
        `hart_vlm.generation.StepCheck`.
    sampling: fields of `SamplingConfig`. The saved story's metadata records every setting in
    effect, defaults included, so that it says how it was made after a default changes.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if num_steps is not None and num_steps < 1:
        raise ValueError(f"num_steps must be >= 1 or None, got {num_steps}")
    sampling.setdefault("force_image_after", STEP_END_PATTERN)
    sampling.setdefault("temperature", STORY_TEXT_TEMPERATURE)
    sampling.setdefault("max_images", num_steps)
    if isinstance(step_check, str):
        if step_check != "auto":
            raise ValueError(f"step_check must be 'auto', None or a StepCheck (text_before, line) -> Verdict, "
                             f"got {step_check!r}")
        from hart_vlm.data.assembly import PlanFollower

        step_check = PlanFollower.from_prompt(prompt) if sampling["force_image_after"] else None
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    response = None
    for event in model.chat(messages, stream=True, seed=seed, generator=generator, step_check=step_check, **sampling):
        if on_event is not None:
            on_event(event)
        if isinstance(event, Done):
            response = event.response
    settings = asdict(SamplingConfig.from_kwargs(**sampling))
    metadata = {"seed": seed, **settings, "step_check": None if step_check is None else repr(step_check)}
    if sampling["force_image_after"] == STEP_END_PATTERN:  # each picture closes the step before it
        return Story.from_pictured_steps(prompt, response.parts, metadata=metadata)
    return Story.from_parts(prompt, response.parts, metadata=metadata)
