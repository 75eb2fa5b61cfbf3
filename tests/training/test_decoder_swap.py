"""A decoder-only tokenizer phase (hybrid stage from step 0) keeps every code, and
training/swap_image_decoder.py puts its decoder into a trained HartVLM and changes nothing else."""

from __future__ import annotations

import pytest
import torch

from hart.tokenizer import DECODER_PREFIXES, HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig
from hart_vlm import HartVLM
from hart_vlm.default_model import has_default_model
from tests import load_script

from .conftest import run_recipe
from .test_recipes import tokenizer_args


def swap_script():
    return load_script("training/swap_image_decoder.py", "_swap_image_decoder")


@pytest.fixture(scope="module")
def decoder_phase(tmp_path_factory, tiny_vlm_dir):
    """Two decoder-only steps from the tiny VLM's own image tokenizer, at a high learning rate."""
    out = tmp_path_factory.mktemp("decoder_phase")
    run_recipe("train_tokenizer", tokenizer_args(out) + [
        "--init-from", str(tiny_vlm_dir), "--hybrid-start-step", "0", "--discriminator", "false",
        "--max-steps", "2", "--warmup-steps", "0", "--learning-rate", "1e-2"])
    return out / "model"


def test_a_decoder_only_phase_moves_the_decoder_and_keeps_every_code(decoder_phase, tiny_vlm_dir):
    before = HartVLM.from_pretrained(tiny_vlm_dir).image_tokenizer
    after = HybridTokenizer.from_pretrained(decoder_phase)
    old, new = before.state_dict(), after.state_dict()
    coding = [k for k in old if not k.startswith(DECODER_PREFIXES)]
    decoding = [k for k in old if k.startswith(DECODER_PREFIXES)]
    assert coding and decoding
    assert all(torch.equal(old[k], new[k]) for k in coding)
    assert not all(torch.equal(old[k], new[k]) for k in decoding)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = before.encode(images), after.encode(images)
    assert all(torch.equal(x, y) for x, y in zip(a.indices, b.indices))
    assert torch.equal(a.residual, b.residual)
    assert not torch.equal(before.decode(a.indices, a.residual), after.decode(b.indices, b.residual))


def test_swap_script_writes_the_model_with_the_new_decoder_and_nothing_else_changed(decoder_phase, tiny_vlm_dir,
                                                                                    tmp_path, capsys):
    out = swap_script().main(["--model", str(tiny_vlm_dir), "--tokenizer", str(decoder_phase),
                              "--out", str(tmp_path / "new")])
    assert out == tmp_path / "new" and "wrote" in capsys.readouterr().out
    old = HartVLM.from_pretrained(tiny_vlm_dir)
    new = HartVLM.from_pretrained(out)
    assert new.processor is not None
    trained = HybridTokenizer.from_pretrained(decoder_phase).state_dict()
    old_state, new_state = old.state_dict(), new.state_dict()
    assert set(old_state) == set(new_state)
    for name, value in new_state.items():
        inner = name.removeprefix("image_tokenizer.")
        expected = trained[inner] if name.startswith("image_tokenizer.") and inner.startswith(DECODER_PREFIXES) \
            else old_state[name]
        assert torch.equal(value, expected), name
    assert [p.name for p in tmp_path.iterdir()] == ["new"]  # no temporary folder left behind


def test_swap_script_refuses_a_used_out_folder_and_a_tokenizer_that_codes_differently(decoder_phase, tiny_vlm_dir,
                                                                                      tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        swap_script().main(["--model", str(tiny_vlm_dir), "--tokenizer", str(decoder_phase),
                            "--out", str(tmp_path / "used")])
    assert exit_info.value.code == 2 and "out:" in capsys.readouterr().err
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"

    other = HybridTokenizer.from_pretrained(decoder_phase)
    with torch.no_grad():
        other.quantize.embedding.weight.add_(1.0)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(SystemExit) as exit_info:
        swap_script().main(["--model", str(tiny_vlm_dir), "--tokenizer", str(tmp_path / "other"),
                            "--out", str(tmp_path / "new")])
    assert exit_info.value.code == 2
    assert "codes images differently: its quantize.embedding.weight differs" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()

    with pytest.raises(SystemExit) as exit_info:
        swap_script().main(["--model", str(tmp_path / "nowhere"), "--tokenizer", str(decoder_phase),
                            "--out", str(tmp_path / "new")])
    assert exit_info.value.code == 2 and "--model" in capsys.readouterr().err


def test_load_decoder_from_checks_the_config_and_the_type(decoder_phase):
    mine = HybridTokenizer.from_pretrained(decoder_phase)
    wider = HybridTokenizer(HybridTokenizerConfig.from_dict({**mine.config.to_dict(), "vocab_size": 64}))
    with pytest.raises(ValueError, match="different tokenizer config.*vocab_size"):
        mine.load_decoder_from(wider)
    with pytest.raises(TypeError, match="other must be a HybridTokenizer"):
        mine.load_decoder_from(mine.state_dict())


@pytest.mark.skipif(not has_default_model(), reason="the embedded default model is not in this checkout")
def test_a_decoder_phase_from_default_starts_from_the_embedded_models_tokenizer(tmp_path):
    from hart_vlm import load_default

    result = run_recipe("train_tokenizer", tokenizer_args(tmp_path) + [
        "--init-from", "default", "--hybrid-start-step", "0", "--discriminator", "false", "--max-steps", "1",
        "--eval-assembly-images", "0", "--eval-photo-crops", "0"])
    trained = result.model.tokenizer
    expected = load_default().image_tokenizer.state_dict()
    coding = [k for k in expected if not k.startswith(DECODER_PREFIXES)]
    assert all(torch.equal(trained.state_dict()[k], expected[k]) for k in coding)  # float32, frozen, unchanged
    assert not torch.equal(trained.decoder.conv_out.weight, expected["decoder.conv_out.weight"])  # it trained
    assert all(p.requires_grad and p.dtype == torch.float32 for p in trained.parameters())


def test_load_image_tokenizer_names_what_it_accepts(tmp_path):
    from hart_vlm.default_model import load_image_tokenizer

    with pytest.raises(FileNotFoundError, match="not `default` and holds no config.json"):
        load_image_tokenizer(tmp_path)
