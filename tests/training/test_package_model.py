"""training/package_model.py: fp16 shards under a size limit, the model card, atomic replacement of
the destination, and the packaged folder loading back (a full model and a LoRA package)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hart_vlm import HartVLM
from hart_vlm.default_model import load_default
from hart_vlm.lora import apply_lora, save_adapter_package

from ..hart_vlm.test_llms import fake_smollm2  # noqa: F401  (fixture)
from .conftest import load_recipe


@pytest.fixture
def card(tmp_path) -> Path:
    path = tmp_path / "card.md"
    path.write_text("# A tiny model\n")
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_full_model_is_packaged_in_fp16_shards_and_loads_back(tmp_path, tiny_vlm_dir, card):
    recipe = load_recipe("package_model")
    out = tmp_path / "models" / "tiny"
    recipe.main(["--model", str(tiny_vlm_dir), "--out", str(out), "--card", str(card), "--max-shard-mb", "0.3"])
    shards = sorted(out.glob("*.safetensors"))
    assert len(shards) >= 3 and all(p.stat().st_size <= 300_000 for p in shards)
    dtypes = set()
    for shard in shards:
        with safe_open(shard, "pt") as f:
            dtypes |= {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float16}
    assert (out / "MODEL_CARD.md").read_text() == "# A tiny model\n"
    loaded = load_default(path=out)
    original = HartVLM.from_pretrained(tiny_vlm_dir).eval()
    for name, tensor in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor.half().float() if tensor.is_floating_point() else tensor)
    assert leftovers(out.parent) == []


def test_a_failed_packaging_leaves_the_destination_untouched(tmp_path, tiny_vlm_dir, card, capsys):
    recipe = load_recipe("package_model")
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    # the embedding table alone is larger than 50 KB: one tensor cannot be split below the limit
    with pytest.raises(ValueError, match=r"files over the 0\.1 MB limit"):
        recipe.main(["--model", str(tiny_vlm_dir), "--out", str(out), "--card", str(card), "--max-shard-mb", "0.05"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and leftovers(tmp_path) == []
    for argv, message in ((["--card", str(card)], "give exactly one of --name and --out"),
                          (["--out", str(out), "--card", str(tmp_path / "none.md")], "no such file")):
        with pytest.raises(SystemExit):
            recipe.main(["--model", str(tiny_vlm_dir), *argv])
        assert message in capsys.readouterr().err
    recipe.main(["--model", str(tiny_vlm_dir), "--out", str(out), "--card", str(card)])  # a success replaces it
    assert not (out / "keep.txt").exists() and leftovers(tmp_path) == []


def test_a_lora_package_is_packaged_with_only_what_training_changed(fake_smollm2, tmp_path, card):  # noqa: F811
    torch.manual_seed(0)
    peft_model = apply_lora(HartVLM.from_components("smollm2", hart_tokenizer="tiny"), r=4)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_adapter_package(peft_model, tmp_path / "run_adapter")
    out = tmp_path / "smollm2"
    load_recipe("package_model").main(["--model", str(tmp_path / "run_adapter"), "--out", str(out), "--card", str(card)])
    assert not list(out.glob("model*.safetensors"))  # no base weights
    with safe_open(next(out.glob("adapter-*.safetensors")), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert HartVLM.from_pretrained(out).processor is not None


def test_load_default_names_and_missing_models_fail_clearly(tmp_path, monkeypatch):
    import hart_vlm.default_model as dm

    with pytest.raises(ValueError, match=r"name must be one of \('tiny', 'smollm2'\)"):
        dm.load_default("big")
    monkeypatch.setattr(dm, "default_model_path", lambda name="tiny": tmp_path / "not_installed")
    with pytest.raises(FileNotFoundError, match="the packaged model 'tiny' is not in this installation"):
        dm.load_default("tiny")
    with pytest.raises(FileNotFoundError, match="holds no packaged model"):
        load_default(path=tmp_path)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        load_default(dtype="float16", path=tmp_path)
