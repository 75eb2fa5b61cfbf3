"""The generation cache: growing buffers hold exactly what concatenation would."""

import torch
from transformers import LlamaConfig, MistralConfig
from transformers.cache_utils import DynamicCache, DynamicLayer

from hart_vlm.generation.state import GrowingLayer, generation_cache


def test_growing_layer_matches_concatenation_across_growth():
    gen = torch.Generator().manual_seed(0)
    layer, keys, values = GrowingLayer(), [], []
    for q in (200, 1, 1, 60, 9, 300, 1):  # the buffers grow once on the way (400 -> 1,142 columns)
        k, v = torch.randn(2, 3, q, 8, generator=gen), torch.randn(2, 3, q, 8, generator=gen)
        keys.append(k)
        values.append(v)
        out_k, out_v = layer.update(k, v)
        assert torch.equal(out_k, torch.cat(keys, dim=-2)) and torch.equal(out_v, torch.cat(values, dim=-2))
        assert layer.get_seq_length() == out_k.shape[-2]
    assert layer.buffers[0].shape[-2] == 1142


def test_generation_cache_grows_for_full_attention_and_defers_otherwise():
    llama = LlamaConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    cache = generation_cache(llama)
    assert [type(layer) for layer in cache.layers] == [GrowingLayer] * 3
    sliding = MistralConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                            sliding_window=16)
    assert isinstance(generation_cache(sliding), DynamicCache)


def test_growing_layer_follows_a_reordered_or_cropped_cache():
    """reorder_cache (evals/scale_forcing.py), crop and repeat replace or shorten the held keys: the
    next update must build on them, as DynamicLayer does."""
    gen = torch.Generator().manual_seed(1)
    growing, dynamic = GrowingLayer(), DynamicLayer()
    steps = [("update", 5), ("select", torch.tensor([0, 0, 1, 1, 1])), ("update", 1), ("crop", -2), ("update", 3),
             ("repeat", 2), ("update", 300)]
    for op, arg in steps:
        if op == "update":
            batch = growing.keys.shape[0] if growing.get_seq_length() else 2
            k, v = torch.randn(batch, 3, arg, 4, generator=gen), torch.randn(batch, 3, arg, 4, generator=gen)
            out, expected = growing.update(k, v), dynamic.update(k, v)
            assert torch.equal(out[0], expected[0]) and torch.equal(out[1], expected[1])
        else:
            for layer in (growing, dynamic):
                {"select": layer.batch_select_indices, "crop": layer.crop, "repeat": layer.batch_repeat_interleave}[op](arg)
            assert torch.equal(growing.keys, dynamic.keys)
