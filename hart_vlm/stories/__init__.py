"""Stories: a step-by-step answer with one picture per step (the application layer on top of the
generic model and its generation).

    story = hart_vlm.stories.generate_story(model, "How do I assemble a two-shelf white bookcase?", seed=0)
    story.steps, story.save("story/")        # (model.generate_story(...) is the same call)

The picture after each step's text is forced (`STEP_END_PATTERN` matches the end of a step's
sentence), so every step gets its picture even from a model that rarely writes `<|image_start|>`
by itself; `HartVLM.chat` answers a guide request with the same settings (replies.py). By default
a `PlanFollower` (hart_vlm.data.assembly) keeps each step to the plan the answer opens with and has
a step that strays written again.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from hart_vlm.outputs import Done
from hart_vlm.sampling import generation_settings, model_sampling

from .replies import REPLY_KINDS, STEP_END_PATTERN, STORY_TEXT_TEMPERATURE, guide_settings, reply_kind, reply_settings
from .story import Step, Story

__all__ = ["REPLY_KINDS", "STEP_END_PATTERN", "STORY_TEXT_TEMPERATURE", "Step", "Story", "generate_story",
           "guide_settings", "reply_kind", "reply_settings"]


def generate_story(model, prompt: str, num_steps: int | None = None, seed: int | None = None,
                   generator: torch.Generator | None = None, on_event=None, step_check="auto",
                   generation_config=None, streamer=None, **sampling) -> Story:
    """A step-by-step answer to `prompt` with one picture per step.

    num_steps: stop after that many steps (None: when the model ends its answer).
    seed / generator: the source of every random draw (the pictures; the text is greedy unless
        `temperature` is given).
    on_event: called with every stream event (for progress display). A story decodes no coarse
        previews of its pictures unless `preview_every` asks for them (they cost decoder time).
    step_check: "auto" (a `PlanFollower.from_prompt(prompt)` when the prompt names a furniture
        kind: the opening plan ("Overview: (1) ...; (2) ...") is written again until it lists the
        parts of a piece the prompt allows, each step is kept to the next item of that plan, and
        the answer ends when the plan is done), None (every step as first sampled) or any
        `hart_vlm.generation.StepCheck`.
    sampling: fields of `SamplingConfig` (over what `generation_config`, a transformers
    `GenerationConfig`, sets; both over the model's own defaults). The saved story's metadata
    records every setting in effect, defaults included, so that it says how it was made after a
    default changes. streamer: as in `HartVLM.chat`.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if num_steps is not None and num_steps < 1:
        raise ValueError(f"num_steps must be >= 1 or None, got {num_steps}")
    if generation_config is not None:
        sampling = {**generation_settings(generation_config), **sampling}
    sampling, step_check = guide_settings(prompt, num_steps, step_check, **sampling)
    if sampling.get("preview_every") is None:
        sampling["preview_every"] = 0
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    response = None
    for event in model.chat(messages, stream=True, seed=seed, generator=generator, reply="free", step_check=step_check,
                            streamer=streamer, **sampling):
        if on_event is not None:
            on_event(event)
        if isinstance(event, Done):
            response = event.response
    settings = asdict(model_sampling(model, **sampling))
    metadata = {"seed": seed, **settings, "step_check": None if step_check is None else repr(step_check)}
    if sampling["force_image_after"] == STEP_END_PATTERN:  # each picture closes the step before it
        return Story.from_pictured_steps(prompt, response.parts, metadata=metadata)
    return Story.from_parts(prompt, response.parts, metadata=metadata)
