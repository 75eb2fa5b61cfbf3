import json

import pytest

from hart.tokenizer_config import HybridTokenizerConfig


def test_presets_have_the_released_architecture_and_schedules():
    big = HybridTokenizerConfig.from_preset("hart_1024px")
    assert big.v_patch_nums == (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)
    assert (big.num_scales, big.downsample_factor, big.image_size, big.tokens_per_image) == (14, 16, 1024, 9451)
    assert (big.ch, big.ch_mult, big.z_channels, big.vocab_size) == (160, (1, 1, 2, 2, 4), 32, 4096)
    assert (big.share_quant_resi, big.quant_resi, big.quantizer_type) == (4, 0.5, "var_hybrid")
    small = HybridTokenizerConfig.from_preset("hart_256px")
    assert (small.image_size, small.num_scales, small.tokens_per_image) == (256, 10, 680)
    assert HybridTokenizerConfig.from_preset("hart_512px").image_size == 512
    tiny = HybridTokenizerConfig.from_preset("tiny")
    assert tiny.image_size == tiny.v_patch_nums[-1] * tiny.downsample_factor


def test_to_dict_is_json_safe_and_round_trips():
    config = HybridTokenizerConfig.from_preset("hart_1024px")
    restored = HybridTokenizerConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.v_patch_nums, tuple) and isinstance(restored.ch_mult, tuple)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("vocab_size", 0, "vocab_size"),
        ("z_channels", -1, "z_channels"),
        ("ch_mult", (), "ch_mult"),
        ("ch_mult", (1, 0), "ch_mult"),
        ("v_patch_nums", (4,), "at least 2"),
        ("v_patch_nums", (1, 3, 2), "strictly increasing"),
        ("v_patch_nums", "1234", "v_patch_nums"),
        ("norm_num_groups", 7, "norm_num_groups"),
        ("quant_conv_ks", 2, "odd"),
        ("dropout", 1.0, "dropout"),
        ("beta", -0.1, "beta"),
        ("quant_resi", 1.5, "quant_resi"),
        ("share_quant_resi", -1, "share_quant_resi"),
        ("quantizer_type", "vqgan", "quantizer_type"),
        ("using_znorm", 1, "using_znorm"),
    ],
)
def test_invalid_fields_are_rejected_by_name(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        HybridTokenizerConfig(**{field: value})


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown preset"):
        HybridTokenizerConfig.from_preset("hart_2048px")
    with pytest.raises(ValueError, match="vocab_sise"):
        HybridTokenizerConfig.from_dict({"vocab_sise": 10})


def test_official_config_keeps_architecture_and_ignores_the_rest():
    official = {
        "model_type": "hart_autoencoder_with_disc",
        "architectures": ["HARTAutoEncoderWithDisc"],
        "_name_or_path": "hart-0.7b-1024px/tokenizer",
        "transformers_version": "4.42.2",
        "disc_ndf": 64,
        "levels": [8, 8, 8, 6, 5],
        "test_mode": True,
        "hybrid": False,
        "double_decoder": False,
        "ch": 96,
        "ch_mult": [1, 2, 2, 4],
        "v_patch_nums": [1, 2, 4, 8],
        "quantizer_type": "var_hybrid",
        "disable_quant_resi": True,
        "vocab_size": 1024,
    }
    config = HybridTokenizerConfig.from_official_dict(official)
    assert (config.ch, config.ch_mult, config.v_patch_nums, config.vocab_size) == (96, (1, 2, 2, 4), (1, 2, 4, 8), 1024)
    assert config.quantizer_type == "var_hybrid"
    assert config.disable_quant_resi is False  # HART never applies this flag
    assert (config.num_res_blocks, config.norm_num_groups) == (2, 32)  # fixed in HART
    with pytest.raises(ValueError, match="model_type"):
        HybridTokenizerConfig.from_official_dict({"model_type": "llama"})
