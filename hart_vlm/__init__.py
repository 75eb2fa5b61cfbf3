"""hart-vlm: one autoregressive LLM that speaks text and HART's image codes in a shared vocabulary.

    import hart_vlm
    model = hart_vlm.HartVLM.from_pretrained(path)     # or AutoModel.from_pretrained(path)
    reply = model.chat([{"role": "user", "content": "How do I assemble a stool?"}], seed=0)
    story = model.generate_story("How do I assemble a two-shelf white bookcase?", seed=0)
"""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .configuration_hart_vlm import HartVLMConfig
from .modeling_hart_vlm import HartVLM, HartVLMOutput
from .processing_hart_vlm import HartVLMProcessor
from .default_model import load_default
from .sampling import SamplingConfig
from .outputs import ChatResponse, Done, ImageDone, ImagePreview, TextDelta, collect
from .stories import Step, Story

__version__ = "0.1.0"

# Registration with the Auto classes, so that AutoConfig / AutoModel / AutoProcessor load saved folders
# without trust_remote_code (the classes come from this installed package).
AutoConfig.register(HartVLMConfig.model_type, HartVLMConfig, exist_ok=True)
AutoModel.register(HartVLMConfig, HartVLM, exist_ok=True)
AutoProcessor.register(HartVLMConfig, HartVLMProcessor, exist_ok=True)

__all__ = [
    "ChatResponse",
    "Done",
    "HartVLM",
    "HartVLMConfig",
    "HartVLMOutput",
    "HartVLMProcessor",
    "ImageDone",
    "ImagePreview",
    "SamplingConfig",
    "Step",
    "Story",
    "TextDelta",
    "collect",
    "load_default",
]
