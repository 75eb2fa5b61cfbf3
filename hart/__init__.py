"""HART's image stack, usable on its own: the hybrid tokenizer and the residual diffusion head.

HART: Efficient Visual Generation with Hybrid Autoregressive Transformer (Tang et al., 2024,
arXiv 2410.10812).

    from hart import HybridTokenizer, ResidualDiffusionHead
    tok = HybridTokenizer.from_pretrained(path)   # this library's folder or an official HART tokenizer/
    enc = tok.encode(images)                      # (B, 3, H, W) in [-1, 1]
    tok.decode(enc.indices, residual=enc.residual)
"""

from .diffusion_head import ResidualDiffusionHead, ResidualDiffusionHeadConfig
from .discriminator import PatchDiscriminator
from .images import images_to_tensor, load_image, pil_to_tensor, resize_center_crop, tensor_to_pil
from .tokenizer import HybridEncoding, HybridTokenizer, TokenizerLosses
from .tokenizer_config import HybridTokenizerConfig

__all__ = [
    "HybridEncoding",
    "HybridTokenizer",
    "HybridTokenizerConfig",
    "PatchDiscriminator",
    "ResidualDiffusionHead",
    "ResidualDiffusionHeadConfig",
    "TokenizerLosses",
    "images_to_tensor",
    "load_image",
    "pil_to_tensor",
    "resize_center_crop",
    "tensor_to_pil",
]
