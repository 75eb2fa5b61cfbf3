"""What kind of answer a chat turn asks for, and the generation settings that give it.

`HartVLM.chat(messages)` (reply="auto") reads the last user turn:

  guide    a request to assemble a piece of furniture ("How do I put together a small oak
           stool?"): the steps, with a picture after each, drawn exactly as `generate_story`
           draws them (the same `guide_settings`: the picture forced after each "Step k: ..."
           line, greedy text, the plan follower)
  picture  a request for one picture ("Draw a red chair."): one picture, after the sentence that
           opens the answer when the model writes one (greedy, as a guide's text)
  text     everything else, and every question about a picture the user sent: text, no picture

`reply="guide" | "picture" | "text"` chooses the kind; `reply="free"` lets the model write
`<|image_start|>` whenever it likes, with no settings added (what "auto" does when the caller gives
`force_image_after`: it places the pictures itself). Explicit sampling arguments always win over a
kind's settings.
"""

from __future__ import annotations

import re

REPLY_KINDS = ("auto", "guide", "picture", "text", "free")

# A step's text ends at the end of its first line: "Step 3: Attach the door to the left side."
STEP_END_PATTERN = r"Step \d+:[^\n]*[.!?]\s*$"
# Story text is greedy unless told otherwise: instructions want the most likely step, not a varied
# one (docs/experiments/greedy_story_text.md).
STORY_TEXT_TEMPERATURE = 0.0
# A drawing answer's picture comes at the end of its first sentence (or line, or 200 characters) at the latest.
SENTENCE_END_PATTERN = r"[.!?:]\s*$|\n|^[^\n]{200,}$"

# Words that ask for the steps of an assembly, and words that ask for a picture. A furniture request
# with a step cue is a guide; one with only a picture cue is a picture (tests/hart_vlm/test_replies.py
# holds them to every request wording of the data, the held-out family included).
_GUIDE_CUES = re.compile(
    r"\b(steps?|stages?|how|instructions?|guide|through|walkthrough|process|order|assembl(e|ing)|(?<!under\s)assembly"
    r"|put\w*\s+.*\btogether|go(es)?\s+together|build|building|construct|erect|set\s+up|start|begin|do\s+first"
    r"|from\s+box|flat-?pack\w*|help)\b",
    re.IGNORECASE,
)
_PICTURE_CUES = re.compile(
    r"\b(draw|paint|sketch|render|picture|image|illustrat\w*|look\s+like|show\s+me)\b", re.IGNORECASE
)


def _last_user_turn(conversation: list[dict]) -> tuple[str, bool]:
    """(its text, whether it holds an image) of the conversation's last user message."""
    for message in reversed(conversation):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content, False
            parts = content if isinstance(content, list) else []
            text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")
            return text, any(isinstance(p, dict) and p.get("type") == "image" for p in parts)
    raise ValueError("the conversation has no user message to answer")


def reply_kind(conversation: list[dict]) -> str:
    """"guide", "picture" or "text": what the last user turn of `conversation` asks for."""
    from hart_vlm.data.assembly import detect_kind

    text, has_image = _last_user_turn(conversation)
    if has_image:
        return "text"
    guide_cue, picture_cue = _GUIDE_CUES.search(text), _PICTURE_CUES.search(text)
    if detect_kind(text) is not None and guide_cue:
        return "guide"
    if picture_cue and not guide_cue:
        return "picture"
    return "text"


def guide_settings(prompt: str, num_steps: int | None = None, step_check="auto", **sampling):
    """(sampling, step_check) of a guide: the picture forced after each step's line, greedy text,
    at most `num_steps` pictures, and with step_check "auto" a `PlanFollower.from_prompt(prompt)`
    (None when the prompt names no furniture kind). Explicit `sampling` values win."""
    sampling.setdefault("force_image_after", STEP_END_PATTERN)
    sampling.setdefault("temperature", STORY_TEXT_TEMPERATURE)
    sampling.setdefault("max_images", num_steps)
    if isinstance(step_check, str):
        if step_check != "auto":
            raise ValueError(f"step_check must be 'auto', None or a StepCheck (text_before, line) -> Verdict, "
                             f"got {step_check!r}")
        from hart_vlm.data.assembly import PlanFollower

        step_check = PlanFollower.from_prompt(prompt) if sampling["force_image_after"] else None
    return sampling, step_check


def reply_settings(kind: str, conversation: list[dict], step_check="auto", **sampling):
    """(sampling, step_check) that give a reply of `kind` ("guide", "picture", "text", "free") to
    `conversation`; explicit `sampling` values and an explicit `step_check` win."""
    if kind == "guide":
        return guide_settings(_last_user_turn(conversation)[0], None, step_check, **sampling)
    step_check = None if isinstance(step_check, str) and step_check == "auto" else step_check
    if kind == "picture":
        sampling.setdefault("max_images", 1)
        sampling.setdefault("force_image_after", SENTENCE_END_PATTERN)
        sampling.setdefault("temperature", STORY_TEXT_TEMPERATURE)  # one plain sentence, as a guide's steps
    elif kind == "text":
        sampling.setdefault("max_images", 0)
    elif kind != "free":
        raise ValueError(f"reply must be one of {REPLY_KINDS}, got {kind!r}")
    return sampling, step_check


def prepare_reply(messages, reply: str = "auto", step_check="auto", generation_config=None, **sampling):
    """(sampling, step_check) for `HartVLM.chat(messages, reply=..., ...)`: the messages checked,
    the kind of answer read (reply "auto", one kind for the whole batch; "free" when the caller
    gives `force_image_after`), its settings under what `generation_config` and `sampling` set."""
    from hart_vlm.processing_hart_vlm import validate_messages
    from hart_vlm.sampling import generation_settings

    if generation_config is not None:
        sampling = {**generation_settings(generation_config), **sampling}
    if reply not in REPLY_KINDS:
        raise ValueError(f"reply must be one of {REPLY_KINDS}, got {reply!r}")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of messages (or of conversations)")
    conversations = messages if isinstance(messages[0], list) else [messages]
    for conversation in conversations:  # checked before it is read for the kind of answer
        validate_messages(conversation)
    if reply == "auto" and sampling.get("force_image_after") is not None:
        reply = "free"  # the caller places the pictures
    if reply == "auto":
        kinds = sorted({reply_kind(c) for c in conversations})
        if len(kinds) > 1:
            raise ValueError(f"reply='auto': the conversations of this batch ask for different kinds of answer "
                             f"({', '.join(kinds)}); batch them by kind or pass reply='guide', 'picture', 'text' "
                             f"or 'free'")
        reply = kinds[0]
    if reply == "guide" and step_check == "auto" and len(conversations) > 1:
        raise ValueError("step_check='auto' keeps a guide to its own request's plan, one conversation at a time; "
                         "for a batch of guide requests pass step_check=None (or answer them one by one)")
    return reply_settings(reply, conversations[0], step_check, **sampling)
