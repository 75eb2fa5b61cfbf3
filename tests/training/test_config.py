"""Recipe configs: defaults -> YAML -> flags, checking, saving; the shipped YAML and accelerate files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env, prepare_simple_launcher_cmd_env

from hart_vlm.training.config import (
    TrainingConfig, config_from_dict, config_to_dict, option, parse_config, run_cli, save_config,
)

from .conftest import CONFIG_CLASSES, CONFIGS, load_recipe


@dataclasses.dataclass
class Example(TrainingConfig):
    files: list[str] = option([], "some files")
    weights: dict = option({"a": 1.0}, "weights")
    name: str | None = option(None, "a name")
    merge: bool = option(False, "a switch")


def test_yaml_then_flags_override_the_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("learning_rate: 3e-4\nmax_steps: 50\nfiles: [a.jsonl]\nlr_schedule: linear\n")
    cfg = parse_config(Example, ["--config", str(tmp_path / "c.yaml"), "--max-steps", "7", "--files", "x", "y",
                                 "--weights", "{b: 2}", "--merge", "--name", "none", "--warmup-steps", "2"])
    assert cfg.learning_rate == 3e-4 and isinstance(cfg.learning_rate, float)  # "3e-4" is a str to PyYAML
    assert (cfg.max_steps, cfg.files, cfg.weights, cfg.merge, cfg.name) == (7, ["x", "y"], {"b": 2}, True, None)
    assert cfg.lr_schedule == "linear" and cfg.warmup_steps == 2 and cfg.batch_size == 8
    assert parse_config(Example, ["--merge", "false"]).merge is False


@pytest.mark.parametrize("argv, message", [
    (["--max-steps", "two"], "max_steps must be an int"),
    (["--lr-schedule", "step"], "lr_schedule must be one of"),
    (["--merge", "maybe"], "merge must be true or false"),
    (["--max-steps", "0"], "max_steps must be >= 1"),
    (["--resume", "--resume-from", "x"], "either resume"),
])
def test_bad_values_are_rejected_naming_the_field(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_config(Example, argv)


def test_unknown_yaml_keys_name_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("learning_rat: 0.1\n")
    with pytest.raises(ValueError, match=r"c\.yaml: unknown field\(s\) \['learning_rat'\]"):
        parse_config(Example, ["--config", str(tmp_path / "c.yaml")])


def test_run_cli_turns_config_errors_into_exit_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(Example, lambda cfg: cfg, ["--batch-size", "-1"])
    assert exit_info.value.code == 2 and "batch_size must be >= 1" in capsys.readouterr().err
    assert run_cli(Example, lambda cfg: cfg.batch_size, ["--batch-size", "3"]) == 3


def test_saved_config_reloads_to_the_same_config(tmp_path):
    cfg = parse_config(Example, ["--files", "a", "--weights", "{x: 0.5}", "--schedule-steps", "9"])
    path = save_config(cfg, tmp_path / "sub" / "config.yaml")
    assert config_from_dict(Example, yaml.safe_load(path.read_text())) == cfg
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left


RECIPE_OF_PREFIX = {"tokenizer_": "train_tokenizer", "vlm_": "train_vlm", "lora_": "finetune_lora"}
SHIPPED_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml"))


def test_every_shipped_config_belongs_to_a_recipe():
    assert SHIPPED_CONFIGS and all(any(n.startswith(p) for p in RECIPE_OF_PREFIX) for n in SHIPPED_CONFIGS)


@pytest.mark.parametrize("recipe, config_file", [
    (recipe, name) for name in SHIPPED_CONFIGS for prefix, recipe in RECIPE_OF_PREFIX.items() if name.startswith(prefix)
])
def test_shipped_yaml_configs_are_valid_for_their_recipe(recipe, config_file, tiny_vlm_dir):
    cls = getattr(load_recipe(recipe), CONFIG_CLASSES[recipe])
    values = yaml.safe_load((CONFIGS / config_file).read_text())
    if recipe == "finetune_lora":  # the embedded default model is not shipped yet; data is per user
        values.update(base=str(tiny_vlm_dir), data=["train.jsonl"])
    cfg = config_from_dict(cls, values, source=config_file)
    assert cfg.output_dir.startswith("runs/")


# tokenizer configs that train on from a packaged model's tokenizer and change its codes; the unified model
# must then learn them (a train_vlm config with init_from and this hart_tokenizer)
CODE_CHANGING_CONFIGS = ["tokenizer_default_cpu_encoder.yaml"]
DECODER_CONFIGS = [n for n in SHIPPED_CONFIGS if n.startswith("tokenizer_") and n not in CODE_CHANGING_CONFIGS
                   and yaml.safe_load((CONFIGS / n).read_text()).get("init_from")]


def test_the_decoder_phases_of_the_default_model_are_all_found():
    # the two shipped phases (the configs of phases that did not ship are in git history)
    assert DECODER_CONFIGS == ["tokenizer_default_cpu_decoder.yaml", "tokenizer_default_cpu_decoder2.yaml"]


@pytest.mark.parametrize("config_file", CODE_CHANGING_CONFIGS)
def test_a_tokenizer_config_that_changes_codes_has_a_unified_model_config_that_learns_them(config_file):
    values = yaml.safe_load((CONFIGS / config_file).read_text())
    assert values["init_from"] and values["hybrid_start_step"] > 0  # the encoder trains before the hybrid stage
    model = f"{values['output_dir']}/model"
    users = [yaml.safe_load((CONFIGS / n).read_text()) for n in SHIPPED_CONFIGS if n.startswith("vlm_")]
    assert any(u.get("hart_tokenizer") == model and u.get("init_from") for u in users), model


@pytest.mark.parametrize("config_file", DECODER_CONFIGS)
def test_shipped_tokenizer_configs_that_train_on_keep_every_code(config_file):
    # A tokenizer trained on from a packaged model's (init_from) is swapped back into that model, which
    # only works if its codes stay the same: every step in the hybrid stage, so that the encoder,
    # quant_conv and codebook stay frozen (HybridTokenizer.load_decoder_from refuses anything else).
    values = yaml.safe_load((CONFIGS / config_file).read_text())
    assert values["hybrid_start_step"] == 0 and values["continuous_prob"] > 0, config_file


def test_a_yaml_file_may_leave_a_required_value_to_the_flags(tmp_path, tiny_vlm_dir):
    # lora_default.yaml's usage line: `--config training/configs/lora_default.yaml --data FILE.jsonl`
    cls = load_recipe("finetune_lora").LoraTrainingConfig
    argv = ["--config", str(CONFIGS / "lora_default.yaml"), "--base", str(tiny_vlm_dir)]
    cfg = parse_config(cls, argv + ["--data", "train.jsonl"])
    assert cfg.data == ["train.jsonl"] and cfg.lora_rank == 16 and cfg.base == str(tiny_vlm_dir)
    with pytest.raises(ValueError, match="data must name at least one JSONL"):  # checked once the flags are in
        parse_config(cls, argv)
    (tmp_path / "bad.yaml").write_text("lora_rank: many\n")  # a value of the wrong type still names the file
    with pytest.raises(ValueError, match=r"bad\.yaml: lora_rank must be an int"):
        parse_config(cls, ["--config", str(tmp_path / "bad.yaml"), "--base", str(tiny_vlm_dir), "--data", "x.jsonl"])


def launch_env(config_file: Path) -> dict[str, str]:
    """The environment `accelerate launch --config_file FILE` gives the recipe's processes."""
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "training/train_vlm.py"])
    args, defaults, precision_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # what launch_command adds before the DeepSpeed launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if precision_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1]
    if args.use_fsdp or args.multi_gpu:
        return prepare_multi_gpu_env(args)
    return prepare_simple_launcher_cmd_env(args)[1]


def test_accelerate_config_files_launch_what_their_names_say(monkeypatch):
    folder = CONFIGS / "accelerate"
    assert sorted(p.name for p in folder.glob("*.yaml")) == [
        "cpu.yaml", "ddp.yaml", "deepspeed_zero2.yaml", "fsdp.yaml", "single_gpu.yaml"]
    assert launch_env(folder / "cpu.yaml")["ACCELERATE_USE_CPU"] == "True"
    single = launch_env(folder / "single_gpu.yaml")
    assert single["ACCELERATE_USE_CPU"] == "False" and single["ACCELERATE_MIXED_PRECISION"] == "bf16"
    ddp = launch_env(folder / "ddp.yaml")
    assert ddp["ACCELERATE_MIXED_PRECISION"] == "bf16" and "ACCELERATE_USE_FSDP" not in ddp

    fsdp = launch_env(folder / "fsdp.yaml")
    for key, value in fsdp.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.state_dict_type.name == "SHARDED_STATE_DICT" and plugin.transformer_cls_names_to_wrap is None

    deepspeed = launch_env(folder / "deepspeed_zero2.yaml")
    for key, value in deepspeed.items():
        monkeypatch.setenv(key, value)
    ds = DeepSpeedPlugin()
    assert ds.deepspeed_config["zero_optimization"]["stage"] == 2
    # filled by the recipes from their config (make_accelerator) and by accelerate's prepare
    assert ds.deepspeed_config["train_micro_batch_size_per_gpu"] == "auto"
    assert ds.deepspeed_config["gradient_accumulation_steps"] == "auto"
