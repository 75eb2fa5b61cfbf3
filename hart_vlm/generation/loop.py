"""`InterleavedGenerator`: one batch of prompts answered to the end of the assistant turn, text
and pictures interleaved over one KV cache (DESIGN.md §3, §5), as a stream of events.

Text mode samples one text token per forward pass over the text vocabulary (image codes are
never sampled there). When `<|image_start|>` is sampled, or forced because the text since the
last picture matches `force_image_after`, the `PictureDrawer` draws the picture on the same cache
and text mode resumes after its `<|image_end|>`. With a step check, `LineRetries` reads each line
before its picture and may take it back. Randomness comes only from the given generator.
"""

from __future__ import annotations

import re
from typing import Iterator

import torch

from hart_vlm.layout import TEXT_BLOCK
from hart_vlm.outputs import ChatResponse, Done, ImageDone, TextDelta
from hart_vlm.sampling import SamplingConfig, apply_repetition_penalty, sample_from_logits

from .lines import LineRetries, StepCheck, line_pattern
from .pictures import PictureDrawer
from .state import DecodeState


class InterleavedGenerator:
    def __init__(self, model, sampling: SamplingConfig, generator: torch.Generator | None = None,
                 step_check: StepCheck | None = None, drawer: type[PictureDrawer] = PictureDrawer, streamer=None):
        if model.processor is None:
            raise ValueError("the model has no processor attached; load it with from_pretrained/load_default/from_components")
        self.model, self.s, self.generator = model, sampling, generator
        self.vocab = model.vocab
        self.tokenizer = tokenizer = model.processor.tokenizer
        # text mode writes no special token but <|image_start|> and the end of the turn
        allowed = {self.vocab.image_start_id, self.vocab.end_of_turn_id}
        self.banned_text_ids = torch.tensor(sorted(set(tokenizer.all_special_ids) - allowed))
        self.stop_ids = {self.vocab.end_of_turn_id} | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        self.force_re = re.compile(sampling.force_image_after) if sampling.force_image_after else None
        if step_check is not None:
            line_pattern(step_check)  # checked here, before the first token
        if step_check is not None and self.force_re is None:
            raise ValueError("step_check needs force_image_after: a line is checked when it matches that pattern "
                             "(generate_story sets it)")
        self.step_check = step_check
        self.drawer_class = drawer
        self.streamer = streamer  # transformers' streamer protocol: put(ids) as text is final, end()
        self.context = getattr(model.backbone.config, "max_position_embeddings", None)  # positions at most
        self._newline: dict[int, bool] = {}

    def ends_line(self, token: int) -> bool:
        if token not in self._newline:
            self._newline[token] = "\n" in self.tokenizer.decode([token])
        return self._newline[token]

    @torch.no_grad()  # on a generator function it holds around every step of the iteration
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None) -> Iterator:
        """input_ids, attention_mask (B, L), left-padded prompts, and their pictures -> events,
        ending with one `Done` per row."""
        model, s = self.model, self.s
        B = input_ids.shape[0]
        self.state = state = DecodeState(model, B, guided=s.cfg > 0 or (s.use_residual and s.head_cfg > 0))
        embeds, blocks, _, _ = model.embed_inputs(input_ids, pixel_values)
        hidden = state.prefill(embeds, attention_mask, blocks)  # (R, 1, D)
        drawer = self.drawer_class(model, s, state, self.generator)
        retries = None
        if self.step_check is not None:
            retries = LineRetries(self.step_check, state, self.tokenizer, self.force_re, s.step_retries, s.max_images,
                                  self.ends_line)

        records, done = state.records, state.done
        if self.streamer is not None:
            self.streamer.put(input_ids.cpu())  # the prompt first, as transformers' generate does (skip_prompt)
        if retries:
            for b in range(B):
                retries.start_line(b, hidden[b, -1])
        steps = 0
        while not bool(done.all()) and steps < s.max_new_tokens:
            if retries:
                hidden, dropped = retries.review(hidden)
                steps -= dropped  # taken-back tokens do not count against max_new_tokens
                if bool(done.all()):
                    break
            steps += 1
            retrying = [retries is not None and retries.lines[b].retrying for b in range(B)]
            token = self.next_text_token(hidden[:B, -1], retrying)  # (B,)
            skip = torch.zeros_like(done)  # rows fed nothing this pass
            for b in range(B):
                if done[b]:
                    continue
                t, record = int(token[b]), records[b]
                is_stop, is_image = t in self.stop_ids, t == self.vocab.image_start_id
                if retries and retries.breaks_retry(b, t, is_stop, is_image):
                    skip[b] = True  # taken back at the next review
                    continue
                if is_stop or self._no_room(b, is_image):  # the end of the turn, or of the model's context
                    done[b] = True
                    continue
                if not is_image:
                    record.history.append(t)
                    record.segment.append(t)
                    # with a step check only finished lines stream: a rejected line is never shown
                    shown = retries.shown(b) if retries else record.segment
                    text = self.tokenizer.decode(shown, skip_special_tokens=True)
                    if not text.endswith("\ufffd") and len(text) > len(record.emitted):
                        delta, record.emitted = text[len(record.emitted):], text
                        self._to_streamer(b, shown)
                        yield TextDelta(delta, row=b)
            active = ~done & ~skip
            token = torch.where(active, token, torch.full_like(token, self.vocab.pad_id))
            is_image = active & (token == self.vocab.image_start_id)
            ids = token[:, None].repeat(2, 1) if state.guided else token[:, None]
            real = active[:, None].repeat(2, 1) if state.guided else active[:, None]
            compute = None
            if state.guided:  # text is computed for the conditional rows; the twin of an image row
                image_rows = is_image.nonzero()[:, 0]  # starts here and sees only this image
                state.hide_context(image_rows)
                compute = torch.cat([torch.arange(B, device=token.device), image_rows + B])
            hidden = state.feed(model.embed_ids(ids), real, torch.full_like(ids, TEXT_BLOCK), compute=compute)
            if retries:
                for b in range(B):
                    if active[b] and not is_image[b] and self.ends_line(int(token[b])):
                        retries.line_ended(b, hidden[b, -1])
            if bool(is_image.any()):
                rows = is_image.nonzero()[:, 0]
                for b in rows.tolist():
                    yield from self._flush_text(b)
                images, h_end = yield from drawer.draw(rows, hidden[state.rows_for(rows), -1])  # previews stream
                for i, b in enumerate(rows.tolist()):
                    records[b].parts.append(images[i])
                    records[b].images += 1
                    yield ImageDone(images[i], row=b)
                    if s.max_images is not None and records[b].images >= s.max_images and s.force_image_after:
                        done[b] = True  # a forced-image story is complete with its last image
                hidden = hidden.clone()
                hidden[rows, -1] = h_end
                if retries:
                    for b in rows.tolist():
                        retries.start_line(b, hidden[b, -1])
        for b in range(B):
            yield from self._flush_text(b)
            yield Done(ChatResponse(parts=records[b].parts), row=b)
        if self.streamer is not None:
            self.streamer.end()

    def _no_room(self, b: int, is_image: bool) -> bool:
        """Whether row b's next token (a whole picture after <|image_start|>) would pass the context."""
        needed = self.model.layout.num_positions if is_image else 1
        return self.context is not None and int(self.state.next_pos[b]) + needed > self.context

    def _to_streamer(self, b: int, ids: list[int]) -> None:
        """Gives the streamer the ids of row b's text that are final and it has not had yet."""
        record = self.state.records[b]
        if self.streamer is not None and len(ids) > record.streamed:
            self.streamer.put(torch.tensor([ids[record.streamed:]]))
            record.streamed = len(ids)

    def _flush_text(self, b: int) -> Iterator[TextDelta]:
        """Closes row b's text segment: streams what was held back (an incomplete character) so
        that the streamed deltas always add up to the saved text."""
        record = self.state.records[b]
        text = self.tokenizer.decode(record.segment, skip_special_tokens=True)
        if not text.startswith(record.emitted):
            text = record.emitted  # the decoder re-spaced earlier text: what was streamed stands
        if len(text) > len(record.emitted):
            yield TextDelta(text[len(record.emitted):], row=b)
        if text:
            record.parts.append(text)
        self._to_streamer(b, record.segment)
        record.segment.clear()
        record.emitted, record.streamed = "", 0

    def next_text_token(self, hidden_BD: torch.Tensor, retrying: list[bool]) -> torch.Tensor:
        """(B,) the next token of every row: sampled over the text vocabulary (a line being written
        again at `retry_temperature`), or `<|image_start|>` where `force_image_after` matches."""
        s, B, records, done = self.s, hidden_BD.shape[0], self.state.records, self.state.done
        logits = self.model.text_logits(hidden_BD).float()  # (B, T)
        logits[:, self.banned_text_ids.to(logits.device)] = float("-inf")
        for b in range(B):
            if s.max_images is not None and records[b].images >= s.max_images:
                logits[b, self.vocab.image_start_id] = float("-inf")
        logits = apply_repetition_penalty(logits, [r.history for r in records], s.repetition_penalty)
        token = sample_from_logits(logits, s.temperature, s.top_k, s.top_p, self.generator)
        for b in range(B):
            if retrying[b] and not done[b]:  # a line being sampled again after a rejection
                token[b] = sample_from_logits(logits[b], s.retry_temperature, s.top_k, s.top_p, self.generator)
        if self.force_re is not None:
            for b in range(B):
                allowed = s.max_images is None or records[b].images < s.max_images
                if not done[b] and allowed and records[b].segment:
                    if self.force_re.search(self.tokenizer.decode(records[b].segment, skip_special_tokens=True)):
                        token[b] = self.vocab.image_start_id
        return token
