"""HART's image stack, usable on its own: the hybrid tokenizer and the residual diffusion head.

HART: Efficient Visual Generation with Hybrid Autoregressive Transformer (Tang et al., 2024,
arXiv 2410.10812).
"""
