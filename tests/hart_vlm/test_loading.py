"""Loading never gives silently wrong weights (issue 42): a missing or truncated shard, a config that
does not belong to the weights, a broken index: each is an error that names the file or the keys."""

from __future__ import annotations

import json

import pytest

from hart_vlm import HartVLM


@pytest.fixture
def saved(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m", max_shard_size="100KB")
    return tmp_path / "m"


def _edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def test_a_whole_folder_loads_with_nothing_missing(saved):
    model, info = HartVLM.from_pretrained(saved, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")) and model.processor


def test_a_missing_shard_is_named(saved):
    shards = sorted(saved.glob("model-*.safetensors"))
    assert len(shards) >= 2
    shards[-1].unlink()
    with pytest.raises(ValueError, match=f"{shards[-1].name}: missing"):
        HartVLM.from_pretrained(saved)


def test_a_truncated_shard_is_named(saved):
    shard = sorted(saved.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{shard.name}: not a whole safetensors file"):
        HartVLM.from_pretrained(saved)


def test_a_broken_index_is_named(saved):
    (saved / "model.safetensors.index.json").write_text("{\"weight_map\": 3}")
    with pytest.raises(ValueError, match="model.safetensors.index.json: not a valid shard index"):
        HartVLM.from_pretrained(saved)


@pytest.mark.parametrize("change, kind", [
    (lambda c: c["text_config"].update(num_hidden_layers=c["text_config"]["num_hidden_layers"] - 1), "unexpected keys"),
    (lambda c: c["text_config"].update(num_hidden_layers=c["text_config"]["num_hidden_layers"] + 1), "missing keys"),
    (lambda c: c["diffusion_head_config"].update(depth=c["diffusion_head_config"]["depth"] + 1), "missing keys"),
])
def test_a_config_that_does_not_describe_the_weights_is_refused(saved, change, kind):
    _edit_config(saved, change)
    with pytest.raises(ValueError, match=f"do not match the model its config.json describes: {kind}"):
        HartVLM.from_pretrained(saved)


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "tokenizer.json").unlink(), r"tokenizer.json: missing"),
    (lambda f: (f / "tokenizer.json").write_text('{"broken": '), r"the text tokenizer could not be read"),
    (lambda f: (f / "hart_vlm_processor.json").write_text("{broken"), r"hart_vlm_processor.json: not a valid processor"),
    (lambda f: (f / "hart_vlm_processor.json").write_text('{"image_size": 128}'),
     r"hart_vlm_processor.json: not a valid processor config \(a JSON object with \['image_size'"),
    (lambda f: (f / "config.json").write_text("{"), r"config.json"),
])
def test_a_broken_tokenizer_or_processor_file_is_named(saved, damage, message):
    damage(saved)
    with pytest.raises((ValueError, OSError), match=message):
        HartVLM.from_pretrained(saved)
