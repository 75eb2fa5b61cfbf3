"""hart-vlm: one autoregressive LLM that speaks text and HART's image codes in a shared vocabulary.

    import hart_vlm
    model = hart_vlm.load_default()                    # or HartVLM.from_pretrained(path) / AutoModel
    reply = model.chat([{"role": "user", "content": "How do I assemble a stool?"}], seed=0)
    story = model.generate_story("How do I assemble a two-shelf white bookcase?", seed=0)

The names below load on first use (PEP 562), so that `hart-vlm --help` starts without torch; using
any of them registers HartVLM with transformers' Auto classes.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "HartVLMConfig": "configuration_hart_vlm",
    "HartVLM": "modeling_hart_vlm",
    "HartVLMOutput": "modeling_hart_vlm",
    "HartVLMProcessor": "processing_hart_vlm",
    "load_default": "default_model",
    "SamplingConfig": "sampling",
    "ChatResponse": "outputs",
    "Done": "outputs",
    "ImageDone": "outputs",
    "ImagePreview": "outputs",
    "TextDelta": "outputs",
    "collect": "outputs",
    "Step": "stories",
    "Story": "stories",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hart_vlm' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    importlib.import_module(".modeling_hart_vlm", __name__)  # registers the Auto classes
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
