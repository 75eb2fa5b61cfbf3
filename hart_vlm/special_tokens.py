"""The special tokens that the text tokenizer, the processor and the model share.

Ids `[0, T)` belong to the text tokenizer (its own specials included); these strings are
added to it as special tokens, and the image-code ids follow them (DESIGN.md §2).
"""

IMAGE_START = "<|image_start|>"
IMAGE_END = "<|image_end|>"
# Stands for one whole image in rendered chat text; the processor expands it into
# IMAGE_START, the image's scale positions (and context block) and IMAGE_END.
IMAGE_PLACEHOLDER = "<|image|>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END_OF_TURN = "<|end|>"
PAD = "<|pad|>"

IMAGE_TOKENS = (IMAGE_START, IMAGE_END, IMAGE_PLACEHOLDER)
# Role markers and end of turn of this library's own chat template, for tokenizers that have none.
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
ALL_SPECIAL_TOKENS = (IMAGE_START, IMAGE_END, IMAGE_PLACEHOLDER, SYSTEM, USER, ASSISTANT, END_OF_TURN, PAD)
