"""Self-check: the model reads each picture it has just drawn and says whether it matches the line
of text before it; a picture it rejects is drawn again (`SamplingConfig.picture_checks`).

The question is the reading data's "match" question (`'Does this picture match "Step 3: ..."?'`,
hart_vlm.data.assembly.wordings), asked in a conversation of its own: the picture and the question
as the user's turn, and the model's answer read off its first token, P("Yes") against P("No")
(`match_probability`). A rejected picture is taken back from the story's cache (its columns masked,
its positions reused, as a rejected line is) and drawn again with the next random numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from hart_vlm.outputs import ImagePreview

from .pictures import PictureDrawer
from .state import DecodeState

MATCH_QUESTION = 'Does this picture match "{line}"?'


def _answer_ids(tokenizer) -> tuple[int, int]:
    """The first token of a "Yes, ..." and of a "No, ..." answer."""
    yes, no = (tokenizer.encode(word, add_special_tokens=False)[0] for word in ("Yes, it", "No, it"))
    if yes == no:
        raise ValueError("the tokenizer starts 'Yes' and 'No' with the same token; a picture check cannot read them")
    return yes, no


@torch.no_grad()
def match_probability(model, images: list, lines: list[str]) -> torch.Tensor:
    """(n,) P("Yes") / (P("Yes") + P("No")) of the first answer token, for picture i asked whether it
    matches `lines[i]`, each in a conversation of its own (one batch)."""
    if len(images) != len(lines) or not images:
        raise ValueError(f"give one line per picture, got {len(images)} pictures and {len(lines)} lines")
    conversations = [[{"role": "user", "content": [{"type": "image", "image": image},
                                                   {"type": "text", "text": MATCH_QUESTION.format(line=line)}]}]
                     for image, line in zip(images, lines)]
    inputs = model.processor(conversations, add_generation_prompt=True, padding_side="left").to(model.device)
    embeds, blocks, _, _ = model.embed_inputs(inputs["input_ids"], inputs.get("pixel_values"))
    hidden = DecodeState(model, len(images), guided=False).prefill(embeds, inputs["attention_mask"], blocks)
    logits = model.text_logits(hidden[:, -1]).float()
    yes, no = _answer_ids(model.processor.tokenizer)
    return torch.softmax(logits[:, [yes, no]], dim=-1)[:, 0]


def last_line(parts: list) -> str:
    """The last non-empty line of the text before a picture ("" when there is none)."""
    text = parts[-1] if parts and isinstance(parts[-1], str) else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class CheckedDrawer(PictureDrawer):
    """A `PictureDrawer` that asks the model whether each picture matches the line before it and
    draws the ones it rejects again, at most `picture_checks` times each. `judgements` records
    every P("Yes") asked, per conditional row."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.judgements: dict[int, list[float]] = {}

    def draw(self, rows: torch.Tensor, h_start: torch.Tensor) -> Iterator[ImagePreview]:
        state, n = self.state, rows.shape[0]
        column = state.num_columns
        positions = {b: state.positions_of(b) for b in rows.tolist()}
        lines = [last_line(state.records[b].parts) for b in rows.tolist()]
        images, h_end = yield from super().draw(rows, h_start)
        images, h_end = list(images), h_end.clone()
        pending = list(range(n))  # indices into rows still to be judged
        for attempt in range(self.s.picture_checks + 1):
            p_yes = match_probability(self.model, [images[i] for i in pending], [lines[i] for i in pending]).tolist()
            for i, p in zip(pending, p_yes):
                self.judgements.setdefault(int(rows[i]), []).append(p)
            pending = [i for i, p in zip(pending, p_yes) if p < 0.5]
            if not pending or attempt == self.s.picture_checks:
                break
            redo = rows[pending]
            for b in redo.tolist():  # forget the rejected picture; the twin sees only the new one
                state.take_back(b, column, positions[b])
            state.hide_context(redo, keep_from=column - 1)  # as when it was first drawn: from its <|image_start|>
            index = torch.tensor(pending, device=h_start.device)
            new_images, new_h = yield from super().draw(redo, h_start[torch.cat([index, index + n]) if state.guided
                                                                       else index])
            for j, i in enumerate(pending):
                images[i] = new_images[j]
                h_end[i] = new_h[j]
                if state.guided:
                    h_end[i + n] = new_h[j + len(pending)]
        return images, h_end
