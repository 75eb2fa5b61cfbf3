"""hart-vlm: one autoregressive LLM that speaks text and HART's image codes in a shared vocabulary."""

__version__ = "0.1.0"
