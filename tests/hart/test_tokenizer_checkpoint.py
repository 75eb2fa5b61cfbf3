"""save_pretrained / from_pretrained, and the errors of loading official-format folders of any size."""
import json

import pytest
import torch

from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig


def tiny_tokenizer(**overrides) -> HybridTokenizer:
    torch.manual_seed(0)
    fields = HybridTokenizerConfig.from_preset("tiny").to_dict()
    fields.update(overrides)
    return HybridTokenizer(HybridTokenizerConfig.from_dict(fields)).eval()


def test_save_and_load_round_trip(tmp_path):
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "model.safetensors"]
    loaded = HybridTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.config == tokenizer.config and not loaded.training
    for (key, a), b in zip(tokenizer.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), key
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    ours, theirs = tokenizer.encode(images), loaded.encode(images)
    assert all(torch.equal(a, b) for a, b in zip(ours.indices, theirs.indices))
    assert torch.equal(tokenizer.decode(ours.indices, ours.residual), loaded.decode(theirs.indices, theirs.residual))


def test_own_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer folder not found"):
        HybridTokenizer.from_pretrained(tmp_path / "nowhere")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        HybridTokenizer.from_pretrained(tmp_path / "empty")
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing weight file"):
        HybridTokenizer.from_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read weight file"):
        HybridTokenizer.from_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="corrupt"):
        HybridTokenizer.from_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type='llama'"):
        HybridTokenizer.from_pretrained(tmp_path / "tok")


def test_config_and_checkpoint_mismatch_names_the_keys(tmp_path):
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    (tmp_path / "tok" / "config.json").write_text(json.dumps({**config, "vocab_size": 128}))
    with pytest.raises(ValueError, match=r"quantize\.embedding\.weight: checkpoint \(256, 8\) vs model \(128, 8\)"):
        HybridTokenizer.from_pretrained(tmp_path / "tok")


# --------------------------------------------------------------------------- official format, any size
SMALL_OFFICIAL = dict(vocab_size=128, z_channels=8, ch=32, ch_mult=[1, 2], v_patch_nums=[1, 2, 4, 8],
                      quantizer_type="var_hybrid", share_quant_resi=4, quant_resi=0.5)


def write_official(folder, state, config=None, weights_name="pytorch_model.bin"):
    folder.mkdir(parents=True, exist_ok=True)
    fields = {"model_type": "hart_autoencoder_with_disc", "architectures": ["HARTAutoEncoderWithDisc"],
              "transformers_version": "4.42.2", "disc_start": 0, **(config or SMALL_OFFICIAL)}
    (folder / "config.json").write_text(json.dumps(fields))
    if weights_name.endswith(".bin"):
        torch.save(state, folder / weights_name)
    else:
        from safetensors.torch import save_file

        save_file(state, str(folder / weights_name))
    return folder


@pytest.fixture(scope="module")
def small_official():
    """(source tokenizer, its state dict under the release's names) for a 32-channel tokenizer."""
    torch.manual_seed(1)
    config = HybridTokenizerConfig.from_official_dict({"model_type": "hart_autoencoder_with_disc", **SMALL_OFFICIAL})
    source = HybridTokenizer(config).eval()
    state = {f"vae.{k}": v.clone() for k, v in source.state_dict().items()}
    state["vae.quantize.ema_vocab_hit_SV"] = torch.zeros(10, 128)
    state["disc.main.0.weight"] = torch.zeros(64, 3, 4, 4)
    return source, state


@pytest.mark.parametrize("weights_name", ["pytorch_model.bin", "model.safetensors"])
def test_official_folder_of_another_size_loads(tmp_path, small_official, weights_name):
    source, state = small_official
    folder = write_official(tmp_path / "tokenizer", state, weights_name=weights_name)
    tokenizer = HybridTokenizer.from_pretrained(folder)
    assert (tokenizer.config.ch, tokenizer.config.v_patch_nums) == (32, (1, 2, 4, 8))
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), tokenizer.state_dict().values()))
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert all(torch.equal(a, b) for a, b in zip(source.encode(images).indices, tokenizer.encode(images).indices))


def test_official_variants_double_decoder_and_bare_autoencoder(tmp_path, small_official):
    source, state = small_official
    doubled = dict(state)
    doubled.update({f"vae.decoder2.{k}": v for k, v in source.decoder.state_dict().items()})
    doubled.update({f"vae.post_quant_conv2.{k}": v for k, v in source.post_quant_conv.state_dict().items()})
    folder = write_official(tmp_path / "double", doubled, {**SMALL_OFFICIAL, "double_decoder": True})
    assert HybridTokenizer.from_pretrained(folder).config == source.config
    # without double_decoder in the config, those keys are unexpected
    folder = write_official(tmp_path / "undeclared", doubled)
    with pytest.raises(ValueError, match=r"unexpected keys: decoder2\."):
        HybridTokenizer.from_pretrained(folder)
    # model_type "hart_autoencoder": the bare autoencoder, keys without "vae."
    bare = {k[len("vae."):]: v for k, v in state.items() if k.startswith("vae.")}
    folder = write_official(tmp_path / "bare", bare, {**SMALL_OFFICIAL, "model_type": "hart_autoencoder"})
    assert HybridTokenizer.from_pretrained(folder).config == source.config


def test_official_folder_errors_name_the_problem(tmp_path, small_official):
    _, state = small_official
    missing = {k: v for k, v in state.items() if k != "vae.quant_conv.bias"}
    with pytest.raises(ValueError, match=r"missing keys: quant_conv\.bias"):
        HybridTokenizer.from_pretrained(write_official(tmp_path / "missing", missing))
    extra = {**state, "vae.encoder.extra.weight": torch.zeros(1), "junk": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys: encoder\.extra\.weight, junk"):
        HybridTokenizer.from_pretrained(write_official(tmp_path / "extra", extra))
    with pytest.raises(ValueError, match=r"encoder\.conv_in\.weight: checkpoint \(32, 3, 3, 3\) vs model \(64, 3, 3, 3\)"):
        HybridTokenizer.from_pretrained(write_official(tmp_path / "wide", state, {**SMALL_OFFICIAL, "ch": 64}))
    folder = write_official(tmp_path / "noweights", state)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing weight file .*pytorch_model\.bin"):
        HybridTokenizer.from_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="cannot read weight file"):
        HybridTokenizer.from_pretrained(folder)


def test_official_bin_is_loaded_without_unpickling_code(tmp_path, small_official):
    _, state = small_official
    folder = write_official(tmp_path / "pickled", {"state": state, "hook": print})  # weights_only refuses
    with pytest.raises(ValueError, match="cannot read weight file"):
        HybridTokenizer.from_pretrained(folder)
