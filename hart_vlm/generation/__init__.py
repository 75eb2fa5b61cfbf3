"""Interleaved text-and-image generation over one KV cache (DESIGN.md §3, §5).

    state.py     DecodeState: the cache, its mask, block ids and positions, fed and taken back
    pictures.py  PictureDrawer: next-scale prediction, guidance, residual head, decoding
    lines.py     StepCheck, Verdict and the line-retry policy
    loop.py      InterleavedGenerator: the text loop that ties them together, as a stream of events

`chat(model, messages, ...)` is what `HartVLM.chat` runs.
"""

from __future__ import annotations

import torch

from hart_vlm.outputs import ChatResponse, Done
from hart_vlm.sampling import model_sampling

from .lines import StepCheck, Verdict
from .loop import InterleavedGenerator
from .pictures import PictureDrawer
from .state import DecodeState

__all__ = ["DecodeState", "InterleavedGenerator", "PictureDrawer", "StepCheck", "Verdict", "chat"]


def chat(model, messages, stream: bool = False, seed: int | None = None, generator: torch.Generator | None = None,
         step_check: StepCheck | None = None, drawer: type[PictureDrawer] = PictureDrawer, streamer=None, **sampling):
    """Answers a conversation (or a batch of them) with interleaved text and images; see
    `HartVLM.chat`. `drawer`: the class that draws the pictures (evals/speed.py compares another).
    `streamer`: an object with transformers' streamer methods (`put(ids)`, `end()`, e.g.
    `transformers.TextStreamer`), given the prompt and then the answer's text ids as they become
    final; one conversation only."""
    if model.processor is None:
        raise ValueError("the model has no processor; load it with from_pretrained, load_default or from_components")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of messages (or of conversations)")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64):
        raise ValueError(f"seed must be an int in [0, 2**64) or None, got {seed!r}")
    batched = isinstance(messages[0], list)
    conversations = messages if batched else [messages]
    if streamer is not None and batched and len(conversations) > 1:
        raise ValueError("streamer= follows one conversation, as in transformers; got a batch of "
                         f"{len(conversations)}: stream=True gives every row's events")
    config = model_sampling(model, **sampling)
    if config.preview_every is None:
        config.preview_every = 2 if stream else 0
    device = model.device
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    inputs = model.processor(conversations, add_generation_prompt=True, padding_side="left").to(device)
    context = getattr(model.backbone.config, "max_position_embeddings", None)
    if context is not None and inputs["input_ids"].shape[1] >= context:  # refused before any computation
        raise ValueError(f"the conversation takes {inputs['input_ids'].shape[1]} positions (each image "
                         f"{model.layout.num_positions}) and the model's context holds {context}: shorten it "
                         "to leave room for the answer")
    runner = InterleavedGenerator(model, config, generator, step_check=step_check, drawer=drawer, streamer=streamer)
    events = runner.run(inputs["input_ids"], inputs["attention_mask"], inputs.get("pixel_values"))
    if stream:
        return events
    responses: list[ChatResponse | None] = [None] * len(conversations)
    for event in events:
        if isinstance(event, Done):
            responses[event.row] = event.response
    return responses if batched else responses[0]
