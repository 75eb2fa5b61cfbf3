"""The three recipes on tiny configs, in-process on CPU: a few steps each, exact resume, the saved
outputs, bad data rows."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml
from accelerate.utils import set_seed
from peft import PeftModel

from hart.tokenizer import HybridTokenizer
from hart_vlm import HartVLM
from hart_vlm.default_model import has_default_model
from hart_vlm.training.config import run_cli

from ..hart_vlm.test_llms import fake_smollm2  # noqa: F401  (fixture)
from .conftest import CONFIGS, load_recipe, run_recipe


def tokenizer_args(out):
    return ["--config", str(CONFIGS / "tokenizer_tiny.yaml"), "--output-dir", str(out), "--assembly-images", "16",
            "--photo-crops", "16"]


def vlm_args(out):
    return ["--config", str(CONFIGS / "vlm_tiny.yaml"), "--output-dir", str(out), "--mixture-examples", "32"]


def lora_args(out, base, data, precision="no"):
    return ["--base", str(base), "--data", str(data), "--output-dir", str(out), "--lora-rank", "4", "--batch-size", "2",
            "--mixed-precision", precision]


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_tokenizer_three_steps_reaches_every_stage(tmp_path):
    # tokenizer_tiny.yaml: GAN from step 1, hybrid from step 2
    result = run_recipe("train_tokenizer", tokenizer_args(tmp_path) + ["--max-steps", "3", "--log-every", "1"])
    assert result.step == 3
    train = [m for m in metrics(tmp_path) if m["split"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3]
    assert "adversarial" not in train[0] and "discriminator" in train[1]
    evals = [m for m in metrics(tmp_path) if m["split"] == "eval"]
    assert len(evals) == 1 and all(v == v for v in evals[0].values())
    saved = HybridTokenizer.from_pretrained(tmp_path / "model")
    trained = result.model.tokenizer.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in saved.state_dict().items())
    checkpoint = tmp_path / "checkpoints" / "step_00000003"
    assert yaml.safe_load((checkpoint / "config.yaml").read_text())["max_steps"] == 3
    assert (tmp_path / "config.yaml").is_file()


def test_train_vlm_three_steps_logs_three_losses_and_saves_a_loadable_model(tmp_path):
    result = run_recipe("train_vlm", vlm_args(tmp_path) + ["--max-steps", "3", "--log-every", "1", "--save-every", "1",
                                                           "--keep-checkpoints", "2"])
    train = [m for m in metrics(tmp_path) if m["split"] == "train"]
    assert [m["step"] for m in train] == [1, 2, 3]
    for m in train:
        assert m["loss"] == pytest.approx(m["text_loss"] + m["image_loss"] + m["diffusion_loss"], rel=1e-5)
    # keep_checkpoints=2: the step-1 checkpoint was pruned, no temporary folder is left behind
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000002", "step_00000003"]
    loaded = HartVLM.from_pretrained(tmp_path / "model")
    assert loaded.processor is not None
    state = result.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    # the frozen HART tokenizer did not move (the recipe builds the model right after set_seed(seed))
    recipe = load_recipe("train_vlm")
    set_seed(0)
    fresh = recipe.build_model(recipe.VLMTrainingConfig(model_preset="tiny"))
    for k, v in fresh.image_tokenizer.state_dict().items():
        assert torch.equal(v, loaded.image_tokenizer.state_dict()[k])


@pytest.mark.parametrize("recipe", ["train_tokenizer", "train_vlm", "finetune_lora"])
def test_four_steps_equal_two_plus_resume_plus_two(tmp_path, recipe, tiny_vlm_dir, instructions):
    def args(out, steps):
        base = {"train_tokenizer": tokenizer_args, "train_vlm": vlm_args}.get(recipe)
        common = base(out) if base else lora_args(out, tiny_vlm_dir, instructions)
        # accumulation and a warm-up + cosine schedule that spans 4 steps in both runs
        return common + ["--max-steps", str(steps), "--schedule-steps", "4", "--warmup-steps", "1",
                         "--gradient-accumulation-steps", "2", "--eval-every", "0"]

    straight = run_recipe(recipe, args(tmp_path / "a", 4))
    first = run_recipe(recipe, args(tmp_path / "b", 2))
    halfway = {k: v.clone() for k, v in first.model.state_dict().items()}
    resumed = run_recipe(recipe, args(tmp_path / "b", 4) + ["--resume"])
    assert resumed.step == 4
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert any(not torch.equal(halfway[k], b[k]) for k in b)  # the last two steps did train
    assert resumed.eval_metrics == straight.eval_metrics


def test_lora_adapter_reapplied_and_merged_give_the_same_outputs(tmp_path, tiny_vlm_dir, instructions):
    result = run_recipe("finetune_lora", lora_args(tmp_path, tiny_vlm_dir, instructions)
                        + ["--max-steps", "3", "--merge", "--learning-rate", "1e-2"])
    assert set(result.saved) == {"adapter", "merged"}
    trained = result.model.eval()
    messages = json.loads(instructions.read_text().splitlines()[0])["messages"]
    batch = trained.base_model.model.processor([messages], base_dir=instructions.parent)
    del batch["labels"]  # the logits, not the losses
    with torch.no_grad():
        expected = trained(**batch).logits
        base = HartVLM.from_pretrained(tiny_vlm_dir).eval()
        assert not torch.allclose(base(**batch).logits, expected, atol=1e-3)  # the adapter changed the model
        reapplied = PeftModel.from_pretrained(HartVLM.from_pretrained(tiny_vlm_dir), tmp_path / "adapter").eval()
        torch.testing.assert_close(reapplied(**batch).logits, expected, rtol=0, atol=1e-5)
        merged = HartVLM.from_pretrained(tmp_path / "merged").eval()
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=0, atol=1e-4)
    assert merged.processor is not None


def test_lora_under_bf16_keeps_float32_master_weights_and_merges_into_the_float32_base(tmp_path, tiny_vlm_dir,
                                                                                       instructions):
    """bf16 mixed precision (what "auto" picks on CPUs with AMX): the frozen weights are stored in
    bf16, the adapter and the fully trained modules stay float32, and --merge merges the adapter
    into the base as loaded, in float32."""
    result = run_recipe("finetune_lora", lora_args(tmp_path, tiny_vlm_dir, instructions, precision="bf16")
                        + ["--max-steps", "2", "--merge"])
    assert all(math.isfinite(m["loss"]) for m in metrics(tmp_path) if m["split"] == "train")
    dtypes = {n: p.dtype for n, p in result.model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n or "modules_to_save" in n} == {torch.float32}
    assert dtypes["base_model.model.backbone.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
    assert all(d == torch.float32 for n, d in dtypes.items() if "image_tokenizer" in n)
    merged = HartVLM.from_pretrained(tmp_path / "merged")
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    reapplied = PeftModel.from_pretrained(HartVLM.from_pretrained(tiny_vlm_dir), tmp_path / "adapter").merge_and_unload()
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(tensor, reapplied.state_dict()[name])


def bad_copy(instructions, tmp_path, line: str):
    """The instruction file with `line` inserted as its line 3, beside the same images."""
    lines = instructions.read_text().splitlines()
    bad = instructions.parent / f"bad_{tmp_path.name}.jsonl"
    bad.write_text("\n".join(lines[:2] + [line] + lines[2:]) + "\n")
    return bad


@pytest.mark.parametrize("line", [
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [',
    json.dumps({"messages": [{"role": "user", "content": "Draw it."},
                             {"role": "assistant", "content": [{"type": "image", "image": "images/missing.png"}]}]}),
])
def test_a_bad_row_stops_the_run_naming_file_and_line_or_is_skipped_and_counted(tmp_path, tiny_vlm_dir, instructions, line):
    bad = bad_copy(instructions, tmp_path, line)
    with pytest.raises(ValueError, match=rf"{bad.name}:3: (broken JSON|.*image file not found)"):
        run_recipe("finetune_lora", lora_args(tmp_path / "a", tiny_vlm_dir, bad) + ["--max-steps", "1"])
    run_recipe("train_vlm", vlm_args(tmp_path / "b") + ["--data", str(bad), "--skip-bad-rows", "--max-steps", "1"])
    data = [m for m in metrics(tmp_path / "b") if m["split"] == "data"][0]
    assert data["skipped_rows"] == 1 and data["train_examples"] == 8


def test_finetune_lora_base_default_runs_as_the_readme_writes_it(tmp_path, instructions):
    assert has_default_model(), "the package ships its default model"
    result = run_recipe("finetune_lora", ["--base", "default", "--data", str(instructions), "--max-steps", "1",
                                          "--output-dir", str(tmp_path), "--batch-size", "2", "--merge"])
    assert result.step == 1 and set(result.saved) == {"adapter", "merged"}
    merged = HartVLM.from_pretrained(tmp_path / "merged")
    assert merged.config.image_size == 128 and merged.processor is not None


def test_finetune_lora_base_default_fails_clearly_without_the_default_model(tmp_path, instructions, capsys,
                                                                            monkeypatch):
    recipe = load_recipe("finetune_lora")
    monkeypatch.setattr(recipe, "has_default_model", lambda name: False)  # an installation without it
    argv = ["--base", "default", "--data", str(instructions), "--max-steps", "1", "--output-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(recipe.LoraTrainingConfig, recipe.main, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "the packaged model 'tiny' is not in this installation" in err and "--base PATH" in err
    assert not (tmp_path / "config.yaml").exists()


def test_resume_without_a_checkpoint_starts_fresh_and_resume_from_a_folder_works(tmp_path):
    run_recipe("train_vlm", vlm_args(tmp_path / "a") + ["--max-steps", "1", "--resume"])
    assert (tmp_path / "a" / "checkpoints" / "step_00000001").is_dir()
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step_00000001", tmp_path / "ckpt")
    result = run_recipe("train_vlm", vlm_args(tmp_path / "b") + ["--max-steps", "2", "--resume-from",
                                                                 str(tmp_path / "ckpt")])
    assert result.step == 2 and [m["step"] for m in metrics(tmp_path / "b") if m["split"] == "train"] == [2]


def test_train_vlm_takes_a_trained_hart_tokenizer_and_a_pretrained_llm(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig

    from hart.tokenizer_config import HybridTokenizerConfig

    torch.manual_seed(1)
    tokenizer_config = HybridTokenizerConfig.from_dict({**HybridTokenizerConfig.from_preset("tiny").to_dict(),
                                                        "vocab_size": 128, "v_patch_nums": (1, 2, 4)})
    HybridTokenizer(tokenizer_config).save_pretrained(tmp_path / "tok")
    saved = HybridTokenizer.from_pretrained(tmp_path / "tok").state_dict()
    # a preset backbone around the trained tokenizer: the config follows the tokenizer's
    result = run_recipe("train_vlm", vlm_args(tmp_path / "a") + ["--hart-tokenizer", str(tmp_path / "tok"),
                                                                 "--max-steps", "1"])
    assert result.model.config.image_tokenizer.v_patch_nums == (1, 2, 4)
    assert all(torch.equal(v, result.model.image_tokenizer.state_dict()[k]) for k, v in saved.items())
    # a local causal-LM folder (HartVLM.from_components)
    llm = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=1024)
    AutoModelForCausalLM.from_config(llm).save_pretrained(tmp_path / "llm")
    result = run_recipe("train_vlm", vlm_args(tmp_path / "b") + ["--llm", str(tmp_path / "llm"), "--hart-tokenizer",
                                                                 str(tmp_path / "tok"), "--max-steps", "1"])
    assert result.model.backbone.config.num_hidden_layers == 1
    assert HartVLM.from_pretrained(tmp_path / "b" / "model").processor is not None


def test_train_vlm_from_a_saved_model_with_a_new_tokenizer(tmp_path, tiny_vlm_dir):
    old = HartVLM.from_pretrained(tiny_vlm_dir)
    torch.manual_seed(5)
    new = HybridTokenizer(old.image_tokenizer.config)
    new.save_pretrained(tmp_path / "tokenizer")
    run_recipe("train_vlm", ["--init-from", str(tiny_vlm_dir), "--hart-tokenizer", str(tmp_path / "tokenizer"),
                             "--output-dir", str(tmp_path / "run"), "--max-steps", "2", "--batch-size", "2",
                             "--mixture-examples", "8", "--eval-every", "0"])
    assert all(math.isfinite(m["loss"]) for m in metrics(tmp_path / "run") if m["split"] == "train")
    trained = HartVLM.from_pretrained(tmp_path / "run" / "model")
    for name, tensor in new.state_dict().items():  # the new tokenizer, frozen while the model trained
        assert torch.equal(trained.image_tokenizer.state_dict()[name], tensor), name
    with pytest.raises(ValueError, match="keep_image_maps applies when init_from and hart_tokenizer are both given"):
        load_recipe("train_vlm").VLMTrainingConfig(init_from=str(tiny_vlm_dir), keep_image_maps=True)
    with pytest.raises(ValueError, match="drop model_overrides"):
        load_recipe("train_vlm").VLMTrainingConfig(init_from=str(tiny_vlm_dir), model_overrides={"image_context_block": False})


def test_lora_on_a_known_llm_saves_a_package_and_trains_on_from_it(fake_smollm2, tmp_path):  # noqa: F811
    """train_vlm with --llm NAME --lora-rank R writes a LoRA package (only what training changed);
    --init-from that package trains the same adapter on."""
    common = ["--config", str(CONFIGS / "vlm_tiny.yaml"), "--mixture-examples", "16", "--max-steps", "1",
              "--lora-rank", "4", "--mixed-precision", "no", "--eval-every", "0", "--eval-examples", "0"]
    first = run_recipe("train_vlm", common + ["--llm", "smollm2", "--hart-tokenizer", "default",
                                              "--output-dir", str(tmp_path / "a")])
    package = first.saved["adapter"]
    assert (package / "adapter_config.json").is_file() and not list(package.glob("model*.safetensors"))
    loaded = HartVLM.from_pretrained(package)
    assert loaded.config.base_llm == "smollm2" and loaded.processor is not None
    with pytest.raises(ValueError, match="lora_rank must be 4"):
        run_recipe("train_vlm", common[:-6] + ["--lora-rank", "8", "--init-from", str(package),
                                               "--output-dir", str(tmp_path / "bad")])
    second = run_recipe("train_vlm", common + ["--init-from", str(package), "--output-dir", str(tmp_path / "b")])
    before = {k: v for k, v in first.model.state_dict().items() if "lora_A" in k}
    after = {k: v for k, v in second.model.state_dict().items() if "lora_A" in k}
    assert before.keys() == after.keys()
    key = next(iter(before))
    assert not torch.equal(before[key], after[key])  # trained on
    assert (second.saved["adapter"] / "adapter_config.json").is_file()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_straight_runs_weights(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    def args(out):
        return vlm_args(out) + ["--max-steps", "12", "--schedule-steps", "12", "--warmup-steps", "1", "--eval-every", "0",
                                "--save-every", "1", "--keep-checkpoints", "20"]

    killed = tmp_path / "killed"
    # the same thread count as this process, whose runs it is compared with (reductions depend on it)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen([sys.executable, str(ROOT / "training" / "train_vlm.py"), *args(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step_00000003" / "config.yaml").exists():
        assert process.poll() is None and time.time() < deadline, "the run ended before its third checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model").exists()  # it did not finish
    resumed = run_recipe("train_vlm", args(killed) + ["--resume"])
    straight = run_recipe("train_vlm", args(tmp_path / "straight"))
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert resumed.step == 12 and [k for k in a if not torch.equal(a[k], b[k])] == []
    steps = [row["step"] for row in metrics(killed) if row["split"] == "train"]
    assert steps == sorted(set(steps))  # each logged once
