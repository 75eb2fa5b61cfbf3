"""Interleaved text-and-image generation over one KV cache (DESIGN.md §3, §5).

Text mode samples one text token per forward pass. When `<|image_start|>` is fed (sampled or
forced), image mode runs one forward pass per scale (next-scale prediction, HART §3): it samples
the scale's codes with classifier-free guidance, updates the tokenizer's f_hat and feeds the next
scale's inputs; on the last scale the residual diffusion head adds the continuous residual, the
hybrid decoder paints the picture, and the context block with `<|image_end|>` is fed so that the
text after the image sees it. Then text mode resumes, on the same cache.

Batches run in lock-step: a row that waits (its image is not being drawn, or it has finished)
is fed masked padding positions, so every row's cache keeps the same length. Classifier-free
guidance doubles the rows: row b + B is the unconditional twin of row b; it is fed the same
inputs, but while an image is drawn its attention mask hides everything before that image's
`<|image_start|>` (the same view that context dropout gives during training).

With `image_context="text"` (for models trained with `HartVLMConfig.text_context_prob`) a finished
picture's positions are masked out of every row's view once its context block is fed, so its
`<|image_end|>`, the text after it and the later pictures never read it: each picture is drawn
from the text before it alone.

Best of N (`image_candidates`): a picture's code pyramid is drawn N times from the same context,
each candidate on cache positions the others cannot see, and the one with the highest unguided
log-likelihood is kept; the others' positions are dropped from the cache before the residual head.

A step check (`step_check`, e.g. hart_vlm.data.assembly.PlanFollower) reads every line that is
about to get its forced image, and, if it has a `line_pattern` (a regular expression), every line
that matches it as soon as the line ends with a newline (PlanFollower's overview line). When it
rejects the line, the row takes the line back (its cache positions are masked out and its
positions reused, as for padding) and samples it again at `retry_temperature`, at most
`step_retries` times. A check may grade a rejection: "near-miss" rejects a line that is better
than a plain "retry" (PlanFollower: a step that adds the right parts but miscounts them). When
every try is rejected, the first near miss is fed again and stands, or the first try when there
was none. It may also end the answer before the line ("stop"). With a step check the text streams
one line at a time, so that a rejected line is never shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from transformers import DynamicCache

from hart.images import tensor_to_pil

from . import special_tokens as st
from .layout import TEXT_BLOCK
from .sampling import SamplingConfig, apply_repetition_penalty, sample_from_logits
from .events import Done, ImageDone, ImagePreview, TextDelta
from .story import ChatResponse


@dataclass
class _Feed:
    """What one forward pass appends to every row."""

    embeds: torch.Tensor  # (R, q, D)
    real: torch.Tensor  # (R, q) bool: False = padding
    block: torch.Tensor  # (R, q) block ids


@dataclass
class _Line:
    """Where a row's current line began, so that a rejected line can be taken back."""

    start: int  # index of the line's first token in the row's segment
    history: int  # length of the row's history then
    column: int  # cache column of the line's first token
    pos: torch.Tensor  # position id of that token, for the row and its twin
    hidden: torch.Tensor  # (D,) the hidden state the line's first token is sampled from
    tries: int = 0  # rejected tries so far
    first: list[int] | None = None  # the first try's token ids (greedy when the text is)
    near_miss: list[int] | None = None  # the first try rejected as a near miss; it stands before `first`
    checked: bool = False  # accepted, or out of tries
    broken: bool = False  # a retry ended (end of turn, newline, image) before its sentence did
    whole: bool = False  # checked when it ends (the check's line_pattern): a newline ends it, not a retry
    ended: bool = False  # a whole line that has ended and waits for its check


@dataclass
class _Draft:
    """One candidate picture's codes before the residual head (see `_draw_images`)."""

    codes: torch.Tensor  # (n, pn_K²) the last scale's codes
    f_hat: torch.Tensor  # (n, z, pn_K, pn_K) the sum of every scale's codes
    h: torch.Tensor  # (n or 2n, pn_K², D) hidden states on the last scale's positions
    score: torch.Tensor  # (n,) log-likelihood of the codes (summed over scales) when it is needed
    previews: list  # [(scale index, f_hat after it (n, z, pn_K, pn_K))]


STEP_VERDICTS = ("accept", "retry", "near-miss", "stop")
StepCheck = Callable[[str, str], str]


class InterleavedGenerator:
    """Runs one batch of prompts to the end of the assistant turn, yielding stream events."""

    def __init__(self, model, sampling: SamplingConfig, generator: torch.Generator | None = None,
                 step_check: StepCheck | None = None):
        if model.processor is None:
            raise ValueError("the model has no processor attached; load it with from_pretrained/load_default/from_components")
        self.model = model
        self.s = sampling
        self.generator = generator
        self.vocab = model.vocab
        self.layout = model.layout
        self.tok = model.image_tokenizer
        tokenizer = model.processor.tokenizer
        self.tokenizer = tokenizer
        banned = [tokenizer.convert_tokens_to_ids(t) for t in (st.IMAGE_END, st.IMAGE_PLACEHOLDER, st.PAD, *st.ROLE_TOKENS.values())]
        self.banned_text_ids = torch.tensor(sorted(set(banned)))
        self.stop_ids = {self.vocab.end_of_turn_id}
        if tokenizer.eos_token_id is not None:
            self.stop_ids.add(tokenizer.eos_token_id)
        self.force_re = re.compile(sampling.force_image_after) if sampling.force_image_after else None
        if step_check is not None and not callable(step_check):
            raise TypeError(f"step_check must be callable (text_before, line) -> {STEP_VERDICTS}, got {type(step_check).__name__}")
        if step_check is not None and self.force_re is None:
            raise ValueError("step_check needs force_image_after: a line is checked when it matches that pattern "
                             "(generate_story sets it)")
        self.step_check = step_check
        pattern = getattr(step_check, "line_pattern", None)
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"step_check.line_pattern must be a str (a regular expression) or None, "
                            f"got {type(pattern).__name__}")
        self.line_re = re.compile(pattern, re.MULTILINE) if pattern is not None else None
        self._newline: dict[int, bool] = {}
        self._next_block = 0

    # -- cache bookkeeping --------------------------------------------------------------------
    def _feed(self, feed: _Feed) -> torch.Tensor:
        """Appends one block of positions to every row and returns their hidden states (R, q, D)."""
        real = feed.real.long()
        position_ids = self.next_pos[:, None] + (real.cumsum(-1) - 1).clamp(min=0)
        self.mask = torch.cat([self.mask, real], dim=1)
        self.blocks = torch.cat([self.blocks, feed.block], dim=1)
        hidden, self.cache = self.model.run_backbone(
            feed.embeds, self.mask, self.blocks, position_ids, past_key_values=self.cache, use_cache=True
        )
        self.next_pos = self.next_pos + real.sum(-1)
        return hidden

    def _new_block_id(self) -> int:
        self._next_block += 1
        return self._next_block

    def _rows_for(self, rows: torch.Tensor) -> torch.Tensor:
        """Cond rows -> the rows that compute for them (cond and, with CFG, uncond twins)."""
        return torch.cat([rows, rows + self.B]) if self.cfg_on else rows

    # -- lines and step checks ----------------------------------------------------------------
    def _line_here(self, b: int, segment: list[int], history: list[int], hidden_D: torch.Tensor) -> _Line:
        """A line that starts at row b's next token."""
        rows = self._rows_for(torch.tensor([b], device=self.next_pos.device))
        return _Line(len(segment), len(history), self.mask.shape[1], self.next_pos[rows].clone(), hidden_D.clone())

    def _ends_line(self, token: int) -> bool:
        if token not in self._newline:
            self._newline[token] = "\n" in self.tokenizer.decode([token])
        return self._newline[token]

    def _rewind(self, b: int, line: _Line, history: list[int], segment: list[int]) -> int:
        """Takes row b back to the start of `line`; returns how many tokens it dropped."""
        rows = self._rows_for(torch.tensor([b], device=self.next_pos.device))
        self.mask[rows, line.column:] = 0
        self.next_pos[rows] = line.pos
        dropped = len(segment) - line.start
        del history[line.history:]
        del segment[line.start:]
        return dropped

    def _refeed(self, b: int, ids: list[int]) -> torch.Tensor:
        """Feeds the text `ids` to row b (and its twin) in one pass -> the hidden state (D,) after the last."""
        rows = self._rows_for(torch.tensor([b], device=self.next_pos.device))
        R, q = self.mask.shape[0], len(ids)
        embeds = self.model.embed_ids(torch.tensor([ids], device=self.next_pos.device))  # (1, q, D)
        full = embeds.new_zeros((R, q, embeds.shape[-1]))
        full[rows] = embeds
        real = torch.zeros((R, q), dtype=torch.bool, device=full.device)
        real[rows] = True
        block = torch.full((R, q), TEXT_BLOCK, dtype=torch.long, device=full.device)
        return self._feed(_Feed(full, real, block))[b, -1]

    def _whole_line_ended(self, segment: list[int], line: _Line) -> bool:
        """Called when a line ends with a newline: whether the step check reads it now."""
        if self.line_re is None:
            return False
        # a retry of a whole line is read whatever it says
        line.whole = line.whole or bool(self.line_re.search(self.tokenizer.decode(segment[line.start:], skip_special_tokens=True)))
        line.ended = line.whole
        return line.ended

    def _ask(self, segment: list[int], parts: list, line: _Line) -> str:
        """The step check's verdict on a row's current line."""
        before = "\n".join(p for p in parts if isinstance(p, str))
        head = self.tokenizer.decode(segment[:line.start], skip_special_tokens=True)
        before = f"{before}\n{head}" if before and head else before or head
        verdict = self.step_check(before, self.tokenizer.decode(segment[line.start:], skip_special_tokens=True))
        if verdict not in STEP_VERDICTS:
            raise ValueError(f"step_check must return one of {STEP_VERDICTS}, got {verdict!r}")
        return verdict

    def _check_lines(self, hidden, history, segment, parts, lines, n_images, done) -> tuple[torch.Tensor, int]:
        """Runs the step check on every row whose line is about to get its forced image or is a
        whole line that has just ended. Returns the (possibly rewound) hidden states and the
        number of tokens taken back."""
        s, dropped = self.s, 0
        for b in range(self.B):
            line = lines[b]
            if done[b] or line.checked:
                continue
            if line.broken:  # a retry that could not be checked counts as rejected
                line.broken, verdict = False, "retry"
            elif line.ended:
                verdict = self._ask(segment[b], parts[b], line)
            else:
                if len(segment[b]) <= line.start or (s.max_images is not None and n_images[b] >= s.max_images):
                    continue
                if not self.force_re.search(self.tokenizer.decode(segment[b], skip_special_tokens=True)):
                    continue
                verdict = self._ask(segment[b], parts[b], line)
            if verdict == "accept" or (verdict in ("retry", "near-miss") and s.step_retries == 0):
                if line.ended:  # the next line starts after its newline
                    lines[b] = self._line_here(b, segment[b], history[b], hidden[b, -1])
                else:
                    line.checked = True
                continue
            line.ended = False
            if line.first is None:
                line.first = segment[b][line.start:]
            if verdict == "near-miss" and line.near_miss is None:
                line.near_miss = segment[b][line.start:]
            hidden = hidden.clone()
            dropped += self._rewind(b, line, history[b], segment[b])
            hidden[b, -1] = line.hidden
            if verdict == "stop":
                done[b] = True
            elif line.tries < s.step_retries:
                line.tries += 1
            else:  # out of tries: the first near miss stands, or else the first try
                stands = line.near_miss if line.near_miss is not None else line.first
                hidden[b, -1] = self._refeed(b, stands)
                segment[b].extend(stands)
                history[b].extend(stands)
                dropped -= len(stands)
                if line.whole and self._ends_line(stands[-1]):  # it ended: the next line starts
                    lines[b] = self._line_here(b, segment[b], history[b], hidden[b, -1])
                else:
                    line.checked = True
        return hidden, dropped

    # -- the loop -----------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """Starts a fresh cache with the (left-padded) prompts; with CFG the rows B..2B-1 are the
        unconditional twins of rows 0..B-1. Returns the hidden states at the last position (R, 1, D)."""
        model, s = self.model, self.s
        B = input_ids.shape[0]
        self.B = B
        self.cfg_on = s.cfg > 0 or (s.use_residual and s.head_cfg > 0)
        R = 2 * B if self.cfg_on else B
        embeds, blocks, _, _ = model.embed_inputs(input_ids, pixel_values)
        self._next_block = int(blocks.max()) + 1 if blocks.numel() else 0
        if self.cfg_on:
            embeds, blocks, attention_mask = embeds.repeat(2, 1, 1), blocks.repeat(2, 1), attention_mask.repeat(2, 1)
        self.cache = DynamicCache(config=model.backbone.config)
        self.mask = attention_mask.new_zeros((R, 0))
        self.blocks = blocks.new_zeros((R, 0))
        self.next_pos = torch.zeros(R, dtype=torch.long, device=input_ids.device)
        return self._feed(_Feed(embeds, attention_mask.bool(), blocks))[:, -1:]

    @torch.no_grad()  # on a generator function it holds around every step of the iteration
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None) -> Iterator:
        model, s = self.model, self.s
        hidden = self.prefill(input_ids, attention_mask, pixel_values)  # (R, 1, D)
        B = self.B
        device = input_ids.device

        history: list[list[int]] = [[] for _ in range(B)]  # generated text ids, for the penalty
        self.history = history
        segment: list[list[int]] = [[] for _ in range(B)]  # text ids since the last image
        emitted = [""] * B  # decoded text of `segment` already streamed
        parts: list[list] = [[] for _ in range(B)]
        n_images = [0] * B
        done = torch.zeros(B, dtype=torch.bool, device=device)
        checking = self.step_check is not None
        lines = [self._line_here(b, segment[b], history[b], hidden[b, -1]) for b in range(B)] if checking else []
        steps = 0
        while not bool(done.all()) and steps < s.max_new_tokens:
            if checking:
                hidden, dropped = self._check_lines(hidden, history, segment, parts, lines, n_images, done)
                steps -= dropped  # taken-back tokens do not count against max_new_tokens
                if bool(done.all()):
                    break
            steps += 1
            retrying = [checking and lines[b].tries > 0 and not lines[b].checked for b in range(B)]
            token = self._next_text_token(hidden[:B, -1], history, segment, n_images, done, retrying)  # (B,)
            skip = torch.zeros_like(done)  # rows fed nothing this pass
            for b in range(B):
                if done[b]:
                    continue
                t = int(token[b])
                if retrying[b] and (t in self.stop_ids or t == self.vocab.image_start_id
                                    or (self._ends_line(t) and not lines[b].whole)):  # a whole line ends at its newline
                    lines[b].broken = True  # the retry ended before its sentence: taken back next pass
                    skip[b] = True
                    continue
                if t in self.stop_ids:
                    done[b] = True
                    continue
                if t != self.vocab.image_start_id:
                    history[b].append(t)
                    segment[b].append(t)
                    # with a step check only finished lines stream: a rejected line is never shown
                    shown = segment[b][:lines[b].start] if checking else segment[b]
                    text = self.tokenizer.decode(shown, skip_special_tokens=True)
                    if not text.endswith("\ufffd") and len(text) > len(emitted[b]):
                        delta = text[len(emitted[b]):]
                        emitted[b] = text
                        yield TextDelta(delta, row=b)
            active = ~done & ~skip
            token = torch.where(active, token, torch.full_like(token, self.vocab.pad_id))
            is_image = active & (token == self.vocab.image_start_id)
            ids = token[:, None].repeat(2, 1) if self.cfg_on else token[:, None]
            real = (active[:, None].repeat(2, 1) if self.cfg_on else active[:, None])
            if self.cfg_on and bool(is_image.any()):
                # the unconditional twin of an image row sees only this image from here on
                twins = is_image.nonzero()[:, 0] + B
                self.mask[twins] = 0
            feed = _Feed(model.embed_ids(ids), real, torch.full_like(ids, TEXT_BLOCK))
            hidden = self._feed(feed)
            if checking:
                for b in range(B):
                    if active[b] and not is_image[b] and self._ends_line(int(token[b])):
                        if not self._whole_line_ended(segment[b], lines[b]):
                            lines[b] = self._line_here(b, segment[b], history[b], hidden[b, -1])
            if bool(is_image.any()):
                rows = is_image.nonzero()[:, 0]
                for b in rows.tolist():
                    yield from self._flush_text(b, segment, emitted, parts)
                events, images, h_end = self._draw_images(rows, hidden[self._rows_for(rows), -1])
                for event in events:
                    yield event
                for i, b in enumerate(rows.tolist()):
                    parts[b].append(images[i])
                    n_images[b] += 1
                    yield ImageDone(images[i], row=b)
                    if s.max_images is not None and n_images[b] >= s.max_images and s.force_image_after:
                        done[b] = True  # a forced-image story is complete with its last image
                hidden = hidden.clone()
                hidden[self._rows_for(rows), -1] = h_end
                if checking:
                    for b in rows.tolist():
                        lines[b] = self._line_here(b, segment[b], history[b], hidden[b, -1])
        for b in range(B):
            yield from self._flush_text(b, segment, emitted, parts)
            yield Done(ChatResponse(parts=parts[b]), row=b)

    def _flush_text(self, b, segment, emitted, parts) -> Iterator[TextDelta]:
        """Closes row b's text segment: streams what was held back (an incomplete character) so
        that the streamed deltas always add up to the saved text."""
        text = self.tokenizer.decode(segment[b], skip_special_tokens=True)
        if not text.startswith(emitted[b]):
            text = emitted[b]  # the decoder re-spaced earlier text: what was streamed stands
        if len(text) > len(emitted[b]):
            yield TextDelta(text[len(emitted[b]):], row=b)
        if text:
            parts[b].append(text)
        segment[b].clear()
        emitted[b] = ""

    def _next_text_token(self, hidden_BD, history, segment, n_images, done, retrying=None) -> torch.Tensor:
        s = self.s
        logits = self.model.text_logits(hidden_BD).float()  # (B, T): text mode never samples image codes
        logits[:, self.banned_text_ids.to(logits.device)] = float("-inf")
        for b in range(self.B):
            if s.max_images is not None and n_images[b] >= s.max_images:
                logits[b, self.vocab.image_start_id] = float("-inf")
        logits = apply_repetition_penalty(logits, history, s.repetition_penalty)
        token = sample_from_logits(logits, s.temperature, s.top_k, s.top_p, self.generator)
        for b in range(self.B):
            if retrying and retrying[b] and not done[b]:  # a line being sampled again after a rejection
                token[b] = sample_from_logits(logits[b], s.retry_temperature, s.top_k, s.top_p, self.generator)
        if self.force_re is not None:
            for b in range(self.B):
                allowed = s.max_images is None or n_images[b] < s.max_images
                if not done[b] and allowed and segment[b]:
                    text = self.tokenizer.decode(segment[b], skip_special_tokens=True)
                    if self.force_re.search(text):
                        token[b] = self.vocab.image_start_id
        return token

    # -- image mode ---------------------------------------------------------------------------
    def _draw_images(self, rows: torch.Tensor, h_start: torch.Tensor):
        """Draws one image for each cond row in `rows` (n,), given the hidden states at their
        <|image_start|> (n or 2n, D). Returns (preview events, PIL images, hidden at <|image_end|>).

        With `image_candidates` N > 1 every row draws N candidate code pyramids from the same
        context, each on cache positions that the others cannot see, and keeps the one its model
        finds most likely (`_Draft.score`); the others' positions are dropped from the cache."""
        if self.s.image_mode == "raster":
            return self._draw_raster(rows, h_start)
        model, s, layout, tok = self.model, self.s, self.layout, self.tok
        n, K = rows.shape[0], layout.num_scales
        compute_rows = self._rows_for(rows)
        start_col, start_pos = self.mask.shape[1], self.next_pos.clone()
        drafts = []
        for c in range(s.image_candidates):
            if c:  # the next candidate starts from the same context and sees no earlier one
                self.mask[compute_rows, start_col:] = 0
                self.next_pos = start_pos.clone()
            drafts.append(self._draw_codes(rows, compute_rows, h_start))
        best = torch.zeros(n, dtype=torch.long, device=rows.device)
        if len(drafts) > 1:
            best = torch.stack([d.score for d in drafts]).argmax(0)  # (n,)
        best_R = best.repeat(compute_rows.shape[0] // n)  # the twins keep what their cond rows keep
        if len(drafts) > 1:
            self._keep_candidate(compute_rows, best_R, start_col, len(drafts))
        pick = torch.arange(n, device=rows.device)
        f_hat = torch.stack([d.f_hat for d in drafts])[best, pick]
        codes = torch.stack([d.codes for d in drafts])[best, pick]
        h = torch.stack([d.h for d in drafts])[best_R, torch.arange(compute_rows.shape[0], device=rows.device)]
        events = []
        for k, _ in drafts[0].previews:
            preview = tok.decode_latent(torch.stack([dict(d.previews)[k] for d in drafts])[best, pick])
            for i, b in enumerate(rows.tolist()):
                events.append(ImagePreview(tensor_to_pil(preview[i]), scale_index=k, num_scales=K, row=b))
        latent = f_hat
        if s.use_residual:
            latent = f_hat + self._sample_residual(h, codes)
        images = tok.decode_latent(latent)
        pil = [tensor_to_pil(img) for img in images]
        # context block (optional) + <|image_end|>
        end_ids = torch.full((n, 1), self.vocab.image_end_id, device=h.device)
        tail = model.embed_ids(end_ids)
        if layout.context_block:
            ctx = model.embed_image_inputs(latent.flatten(2).transpose(1, 2).to(h.dtype), positions=layout.input_block(K))
            tail = torch.cat([ctx, tail], dim=1)
        if s.image_context == "text":  # nothing after the picture reads its positions, <|image_end|> included
            if layout.context_block:
                self._feed_rows(compute_rows, tail[:, :-1])
            self.mask[compute_rows, start_col:] = 0
            tail = tail[:, -1:]
        h_end = self._feed_rows(compute_rows, tail, last_is_text=True)[:, -1]
        if self.cfg_on:
            twins = rows + self.B
            self.mask[twins] = self.mask[rows]  # back to mirroring the cond row
        return events, pil, h_end

    def _keep_candidate(self, compute_rows: torch.Tensor, keep: torch.Tensor, start: int, count: int) -> None:
        """Drops every candidate's cache positions but the kept one's: the cache holds `count`
        equal spans from column `start` on, and row compute_rows[i] keeps span keep[i] (the
        other rows keep the first: padding, like all of theirs)."""
        R, total = self.mask.shape
        span = (total - start) // count
        first = torch.full((R,), start, dtype=torch.long, device=self.mask.device)
        first[compute_rows] = start + keep * span
        cols = torch.cat([torch.arange(start, device=first.device).expand(R, start),
                          first[:, None] + torch.arange(span, device=first.device)], dim=1)  # (R, start + span)
        for layer in self.cache.layers:
            idx = cols[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[-1])
            layer.keys, layer.values = layer.keys.gather(2, idx), layer.values.gather(2, idx)
        self.mask, self.blocks = self.mask.gather(1, cols), self.blocks.gather(1, cols)
        self.mask[compute_rows, start:] = 1  # the kept span was hidden while later candidates drew

    def _draw_codes(self, rows: torch.Tensor, compute_rows: torch.Tensor, h_start: torch.Tensor) -> "_Draft":
        """Next-scale prediction of one code pyramid per cond row (HART §3), one forward pass per scale."""
        model, s, layout, tok = self.model, self.s, self.layout, self.tok
        n, K = rows.shape[0], layout.num_scales
        f_hat = tok.init_f_hat(n, device=h_start.device, dtype=h_start.dtype)
        h = h_start[:, None]  # (n or 2n, 1, D)
        score = torch.zeros(n, device=h_start.device)
        previews = []
        for k in range(K):
            codes = self._sample_codes(h, k)  # (n, pn_k²)
            if s.image_candidates > 1:  # log p(codes | everything before), the model's own, unguided
                logp = model.image_logits(h[:n]).float().log_softmax(-1)
                score += logp.gather(-1, codes[..., None]).squeeze(-1).sum(-1)
            f_hat, next_in = tok.next_scale_step(f_hat, k, codes)
            if s.preview_every and (k + 1) % s.preview_every == 0 and k < K - 1:
                previews.append((k, f_hat))  # decoded once the kept candidate is known
            if k == K - 1:
                break
            embeds = model.embed_image_inputs(next_in.to(h.dtype), positions=layout.input_block(k + 1))
            h = self._feed_rows(compute_rows, embeds)
        return _Draft(codes, f_hat, h, score, previews)

    def _feed_rows(self, compute_rows: torch.Tensor, embeds_nqD: torch.Tensor, last_is_text: bool = False) -> torch.Tensor:
        """Feeds `embeds` (n, q, D) to the cond rows (and the same to their twins); all other rows
        get padding. Returns the hidden states of the computing rows (n or 2n, q, D)."""
        R = self.mask.shape[0]
        q = embeds_nqD.shape[1]
        if self.cfg_on:
            embeds_nqD = embeds_nqD.repeat(2, 1, 1)
        full = embeds_nqD.new_zeros((R, q, embeds_nqD.shape[-1]))
        full[compute_rows] = embeds_nqD
        real = torch.zeros((R, q), dtype=torch.bool, device=full.device)
        real[compute_rows] = True
        block = torch.full((R, q), TEXT_BLOCK, dtype=torch.long, device=full.device)
        n_block = q - 1 if last_is_text else q
        if n_block:
            block[compute_rows, :n_block] = self._new_block_id()
        return self._feed(_Feed(full, real, block))[compute_rows]

    def _guided(self, logits: torch.Tensor, guidance: float) -> torch.Tensor:
        """(n or 2n, ...) -> (n, ...): (1 + t) cond - t uncond (HART_REFERENCE §5)."""
        if not self.cfg_on:
            return logits
        cond, uncond = logits.chunk(2)
        return cond if guidance == 0 else (1 + guidance) * cond - guidance * uncond

    def _sample_codes(self, h: torch.Tensor, k: int) -> torch.Tensor:
        s = self.s
        logits = self.model.image_logits(h).float()  # (n or 2n, pn², V)
        logits = self._guided(logits, s.scale_guidance(k, self.layout.num_scales))
        return sample_from_logits(logits, s.image_temperature, s.scale_top_k(k), s.image_top_p, self.generator)

    def _sample_residual(self, h_last: torch.Tensor, codes_nL: torch.Tensor) -> torch.Tensor:
        """Residual head on every last-scale position -> (n, z, pn_K, pn_K)."""
        s, model = self.s, self.model
        n, L = codes_nL.shape
        pn = self.layout.v_patch_nums[-1]
        code_vecs = model.codebook()[codes_nL].to(h_last.dtype)  # (n, L, z)
        if self.cfg_on:
            code_vecs = code_vecs.repeat(2, 1, 1)
        cond = model.bridge.head_condition(h_last, code_vecs)  # (n or 2n, L, D)
        uncond = None
        if self.cfg_on:
            cond, uncond = cond.chunk(2)
            uncond = uncond.flatten(0, 1)
        head_cfg = s.head_cfg if self.cfg_on else 0.0
        res = model.diffusion_head.sample(
            cond.flatten(0, 1), num_steps=s.diffusion_steps, cfg=head_cfg, temperature=s.diffusion_temperature,
            generator=self.generator, uncond_NC=uncond if head_cfg > 0 else None,
        )  # (n * L, z)
        return res.reshape(n, pn, pn, -1).permute(0, 3, 1, 2).to(h_last.dtype)

    def _draw_raster(self, rows: torch.Tensor, h_start: torch.Tensor):
        """The Chameleon / Liquid / Emu3 way, for the speed benchmark and ablations: the last
        scale's codes one per forward pass in raster order, each position fed word_embed of the
        previous code plus its 2-D position embedding. Discrete-only, no context block."""
        model, layout, tok = self.model, self.layout, self.tok
        n, K = rows.shape[0], layout.num_scales
        pn = layout.v_patch_nums[-1]
        compute_rows = self._rows_for(rows)
        pos_LD = model.bridge.position_embeddings()[layout.input_block(K - 1)]  # last-scale grid
        h = h_start[:, None]
        codes = []
        for i in range(pn * pn):
            code = self._sample_codes(h, K - 1)[:, 0]  # (n,)
            codes.append(code)
            if i == pn * pn - 1:
                break
            vec = model.codebook()[code].to(h.dtype)
            embeds = (model.bridge.word_embed(vec) + pos_LD[i])[:, None]
            h = self._feed_rows(compute_rows, embeds, last_is_text=True)
        codes_nL = torch.stack(codes, dim=1)
        latent = model.codebook()[codes_nL].reshape(n, pn, pn, -1).permute(0, 3, 1, 2)
        pil = [tensor_to_pil(img) for img in tok.decode_latent(latent)]
        end_ids = torch.full((n, 1), self.vocab.image_end_id, device=h.device)
        h_end = self._feed_rows(compute_rows, model.embed_ids(end_ids), last_is_text=True)[:, -1]
        if self.cfg_on:
            self.mask[rows + self.B] = self.mask[rows]
        return [], pil, h_end
