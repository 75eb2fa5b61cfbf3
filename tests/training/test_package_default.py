"""training/package_default.py on a tiny saved HartVLM: fp16 shards under a small size limit, the
model card, atomic replacement of the output folder, and load_default() on the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hart_vlm import HartVLM
from hart_vlm.default_model import load_default
from hart_vlm.training.config import parse_config, run_cli

from .conftest import CONFIGS, load_recipe

COMMANDS = ["python training/train_tokenizer.py --config training/configs/tokenizer_tiny.yaml",
            "python training/train_vlm.py --config training/configs/vlm_tiny.yaml"]


def write_card(folder: Path, name: str = "card.yaml", **changes) -> Path:
    evals = folder / "assembly_bench.json"
    evals.write_text(json.dumps({"step_accuracy": 0.25, "per_task": {"guide": {"psnr": 12.5}}, "n": 8}))
    facts = {"training_commands": COMMANDS, "configs": [str(CONFIGS / "vlm_tiny.yaml")], "data_seed": 3,
             "hardware": "2-core CPU", "training_time": "40 s", "eval_results": [str(evals)],
             "limitations": "Trained for 40 s: it draws noise."}
    path = folder / name
    path.write_text(yaml.safe_dump({k: v for k, v in {**facts, **changes}.items() if v is not None}))
    return path


@pytest.fixture
def card_info(tmp_path_factory) -> Path:
    return write_card(tmp_path_factory.mktemp("card"))


def package(model_dir, out, card_info, *extra):
    recipe = load_recipe("package_default")
    argv = ["--model", str(model_dir), "--out", str(out), "--card-info", str(card_info), "--max-shard-size", "300KB", *extra]
    return recipe.main(parse_config(recipe.PackageConfig, argv))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_packaged_model_is_sharded_fp16_within_limits_and_loads_back_in_float32(tmp_path, tiny_vlm_dir, card_info):
    out = tmp_path / "default_model"
    result = package(tiny_vlm_dir, out, card_info)

    shards = sorted(out.glob("*.safetensors"))
    assert len(shards) >= 3 and result.shards == {p.name: p.stat().st_size for p in shards}
    assert all(p.stat().st_size <= 300_000 for p in shards)
    assert result.total_bytes == sum(p.stat().st_size for p in shards)
    from safetensors import safe_open

    dtypes = set()
    for shard in shards:
        with safe_open(shard, "pt") as f:
            dtypes |= {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes

    original = HartVLM.from_pretrained(tiny_vlm_dir).eval()
    loaded = load_default(path=out)
    assert loaded.processor is not None and not loaded.training
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    inputs = loaded.processor([[{"role": "user", "content": "Step 1: attach the legs."}]], add_generation_prompt=True)
    with torch.no_grad():
        a = original(input_ids=inputs["input_ids"]).logits
        b = loaded(input_ids=inputs["input_ids"]).logits
    assert 0 < (a - b).abs().max() <= 1e-2 * a.abs().max()
    assert result.max_logits_diff <= 0.02 * max(1.0, a.abs().max().item())
    assert leftovers(tmp_path) == [] and out.stat().st_mode & 0o777 == 0o755
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())


def test_model_card_holds_the_facts_the_counts_and_the_architecture(tmp_path, tiny_vlm_dir):
    out = tmp_path / "default_model"
    configs = [str(CONFIGS / "tokenizer_default.yaml"), str(CONFIGS / "vlm_default.yaml")]
    card_info = write_card(tmp_path, data_seed=None, configs=configs)
    result = package(tiny_vlm_dir, out, card_info, "--hardware", "1x test CPU")  # a flag replaces the file's value
    card = (out / "MODEL_CARD.md").read_text()
    model = HartVLM.from_pretrained(tiny_vlm_dir)
    for command in COMMANDS:
        assert command in card
    assert all(Path(p).read_text().strip() in card for p in configs)
    assert "data seed: 0" in card  # not given: the configs' data_seed
    assert "scikit-image's bundled sample photographs" in card  # tokenizer_default.yaml has photo_crops
    assert "hardware: 1x test CPU" in card and "training time: 40 s" in card
    assert "## Limitations\n\nTrained for 40 s: it draws noise." in card
    assert "| step_accuracy | 0.25 |" in card and "| per_task.guide.psnr | 12.5 |" in card
    assert "preset: `tiny`" in card
    assert f"{model.config.image_size} px, scales {list(model.config.layout.v_patch_nums)}" in card
    assert f"| backbone (LLM) | {sum(p.numel() for p in model.backbone.parameters()):,} |" in card
    assert f"| HART tokenizer (frozen) | {sum(p.numel() for p in model.image_tokenizer.parameters()):,} |" in card
    assert f"| total | {sum(p.numel() for p in model.parameters()):,} |" in card
    assert all(f"| {name} | {size:,} |" in card for name, size in result.shards.items())
    assert "Apache-2.0" in card and "procedurally generated" in card


def test_a_failed_packaging_leaves_the_existing_folder_untouched(tmp_path, tiny_vlm_dir, card_info):
    out = tmp_path / "default_model"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    # the embedding table alone is larger than 100 KB: a shard over the limit
    with pytest.raises(ValueError, match=r"shards over the 0\.100 MB limit: model-\d+-of-\d+\.safetensors"):
        package(tiny_vlm_dir, out, card_info, "--max-shard-size", "100KB")
    with pytest.raises(ValueError, match=r"the weights take .* MB in \d+ shards, over the 0\.500 MB limit"):
        package(tiny_vlm_dir, out, card_info, "--max-total-size", "500KB")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "old"
    assert leftovers(tmp_path) == []

    package(tiny_vlm_dir, out, card_info)  # a successful run replaces it whole
    assert not (out / "keep.txt").exists() and (out / "MODEL_CARD.md").is_file()
    assert leftovers(tmp_path) == []


def test_missing_card_facts_and_bad_flags_fail_clearly(tmp_path, tiny_vlm_dir, capsys):
    recipe = load_recipe("package_default")
    out = tmp_path / "out"
    for argv, message in (
        ([], "the model card needs training_commands, configs, data_seed, hardware, training_time"),
        (["--card-info", str(write_card(tmp_path, "a.yaml", hardware=None))], "the model card needs hardware"),
        (["--card-info", str(write_card(tmp_path, "b.yaml", colour="red"))], "unknown field(s) ['colour']"),
        (["--card-info", str(write_card(tmp_path, "c.yaml")), "--configs", "missing.yaml"],
         "model-card file not found: 'missing.yaml'"),
        (["--model", str(tmp_path)], "is not a folder saved by HartVLM.save_pretrained"),
        (["--max-shard-size", "big"], "max_shard_size must be a size such as '15MB'"),
        (["--card-info", str(tmp_path / "none.yaml")], "card_info file not found"),
    ):
        with pytest.raises(SystemExit) as exit_info:  # always --out into tmp_path: never the package's folder
            run_cli(recipe.PackageConfig, recipe.main, ["--model", str(tiny_vlm_dir), "--out", str(out), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_load_default_without_a_shipped_model_or_with_an_empty_folder_raises_file_not_found(tmp_path, monkeypatch):
    import hart_vlm.default_model

    monkeypatch.setattr(hart_vlm.default_model, "default_model_path", lambda: tmp_path / "not_installed")
    assert not hart_vlm.default_model.has_default_model()
    with pytest.raises(FileNotFoundError, match="the embedded default model is not in this installation"):
        hart_vlm.default_model.load_default()
    with pytest.raises(FileNotFoundError, match="holds no packaged model"):
        load_default(path=tmp_path)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        load_default(dtype="float16", path=tmp_path)


def test_eval_rows_become_tables_without_per_story_details():
    recipe = load_recipe("package_default")
    doc = {"machine": {"cpu": "x"},
           "rows": [{"cfg": 4.5, "use_residual": True, "psnr": 12.3456, "per_story": [{"texts": ["a"]}]},
                    {"cfg": 0.0, "use_residual": False, "psnr": None, "per_story": []}]}
    assert recipe.flatten(doc) == [("machine.cpu", "x")]
    [(key, table)] = recipe.record_tables(doc)
    assert key == "rows"
    assert table == ["| cfg | use_residual | psnr |", "| --- | --- | --- |",
                     "| 4.5 | True | 12.35 |", "| 0 | False | None |"]
