"""Recipe configs: dataclass defaults -> YAML file -> command-line overrides -> saved YAML.

Config flows one way (STYLE.md principle 10). A recipe declares a dataclass (usually a subclass
of :class:`TrainingConfig`) whose fields are documented with :func:`option`; then

    cfg = parse_config(MyConfig, ["--config", "training/configs/vlm_tiny.yaml", "--max-steps", "3"])

builds it from the defaults, the YAML file and `--full-word-flag value` overrides (one flag per
field: `learning_rate` -> `--learning-rate`), and checks every value against the field's type
annotation. The recipe writes the result with :func:`save_config` beside each checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar, Union

import yaml

C = TypeVar("C")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("null", "none", "~", "")


def option(default: Any, help: str) -> Any:
    """A dataclass field with a default and the help text shown by `--help`."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class TrainingConfig:
    """What every recipe shares: where to write, how long, how fast, how often to log and save."""

    output_dir: str = option("runs/unnamed", "folder for checkpoints/, metrics.jsonl, config.yaml and the final model")
    seed: int = option(0, "seed of the data order, the model's initialisation and every random draw of training")
    max_steps: int = option(1000, "optimizer steps to train for (a resumed run continues up to this step)")
    batch_size: int = option(8, "examples per micro-batch on each process")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    learning_rate: float = option(3e-4, "peak learning rate of AdamW")
    lr_schedule: Literal["constant", "cosine", "linear"] = option("cosine", "decay after the warm-up")
    warmup_steps: int = option(0, "optimizer steps of linear warm-up from 0")
    schedule_steps: int | None = option(None, "steps the decay spans (default: max_steps); fix it to extend a run by resuming")
    min_lr_ratio: float = option(0.1, "the decay ends at learning_rate * min_lr_ratio")
    weight_decay: float = option(0.0, "AdamW weight decay (not applied to biases, norms and embeddings)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.95, "AdamW beta2")
    max_grad_norm: float = option(1.0, "gradient clipping norm; 0 disables clipping")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = option("auto", "'auto': bf16 where the device computes it natively and faster (GPU, CPU with AMX; hart_vlm.precision), else fp32")
    num_workers: int = option(0, "DataLoader worker processes")
    log_every: int = option(10, "optimizer steps between lines of metrics.jsonl")
    eval_every: int = option(0, "optimizer steps between evaluations; 0 = only at the end")
    eval_batches: int = option(4, "batches per evaluation (per process)")
    save_every: int = option(0, "optimizer steps between checkpoints; 0 = only at the end")
    keep_checkpoints: int = option(2, "newest checkpoints kept in output_dir/checkpoints")
    resume: bool = option(False, "continue from the newest checkpoint in output_dir (start fresh if there is none)")
    resume_from: str | None = option(None, "continue from this checkpoint folder")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        # every field against its annotation, also when the config is built in Python (the command line
        # and YAML files are checked as they are read)
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            setattr(self, field.name, _coerce(getattr(self, field.name), hints[field.name], field.name))
        if not self.output_dir.strip():
            raise ValueError("output_dir must name a folder, got an empty string")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        positive = ("max_steps", "batch_size", "gradient_accumulation_steps", "log_every", "eval_batches", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers", "eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.schedule_steps is not None and self.schedule_steps <= self.warmup_steps:
            raise ValueError(f"schedule_steps ({self.schedule_steps}) must exceed warmup_steps ({self.warmup_steps})")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.resume and self.resume_from is not None:
            raise ValueError("give either resume (newest checkpoint of output_dir) or resume_from (a folder), not both")

    @property
    def decay_steps(self) -> int:
        return self.schedule_steps if self.schedule_steps is not None else self.max_steps


# ------------------------------------------------------------------------------------------------
# dict / YAML / command line
# ------------------------------------------------------------------------------------------------
def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-safe values (tuples become lists)."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(cfg))))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_from_dict(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
    """`cls(**values)` with every value checked (and converted) against its annotation."""
    return cls(**_checked_values(cls, values, source))


def _checked_values(cls: type, values: dict[str, Any], source: str) -> dict[str, Any]:
    """`values` with known field names only, each converted to its field's annotation."""
    if not isinstance(values, dict):
        raise TypeError(f"{source} must be a mapping of field names to values, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {unknown}; accepted: {', '.join(names)}")
    return {k: _coerce(v, hints[k], f"{source}: {k}") for k, v in values.items()}


def load_yaml_config(cls: type[C], path: str | os.PathLike) -> dict[str, Any]:
    """The field values of a YAML config file, names and types checked here (failing early, naming
    the file); the checks across fields (`__post_init__`) run on the whole config once the
    command-line overrides are in, so a file may leave a value such as LoRA's `data` to the flags."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {str(path)!r}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"cannot parse config file {str(path)!r}: {err}") from err
    _checked_values(cls, values, source=str(path))
    return values


def parse_config(cls: type[C], argv: list[str] | None = None, description: str | None = None) -> C:
    """defaults -> `--config FILE.yaml` -> `--field-name value` overrides -> a validated `cls`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML file of field values (the flags below override it)")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kwargs: dict[str, Any] = dict(dest=field.name, default=argparse.SUPPRESS, metavar=_metavar(hint),
                                      help=f"{field.metadata.get('help', '')} (default: {default!r})")
        if _strip_optional(hint) is bool:
            kwargs.update(nargs="?", const="true")
        elif typing.get_origin(_strip_optional(hint)) is list:
            kwargs.update(nargs="*")
        parser.add_argument(flag, **kwargs)
    args = vars(parser.parse_args(argv))
    values = load_yaml_config(cls, args.pop("config")) if args.get("config") else {}
    args.pop("config", None)
    values.update({k: _parse_flag(v) for k, v in args.items()})
    return config_from_dict(cls, values, source="config")


def run_cli(cls: type[C], main: Callable[[C], Any], argv: list[str] | None = None, description: str | None = None) -> Any:
    """`main(parse_config(...))`; a bad flag or config value exits with status 2 and a one-line
    message instead of a traceback."""
    try:
        cfg = parse_config(cls, argv, description)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return main(cfg)


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
    os.replace(tmp, path)
    return path


def config_differences(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """'field: old -> new' for every field that differs (used to warn when resuming)."""
    keys = sorted((set(old) | set(new)) - set(ignore))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


# ------------------------------------------------------------------------------------------------
# value checking
# ------------------------------------------------------------------------------------------------
def _parse_flag(value: Any) -> Any:
    """Command-line strings -> YAML values (`'{a: 1}'` -> dict); numbers are converted by _coerce."""
    if isinstance(value, list):
        return [_parse_flag(v) for v in value]
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"cannot parse {value!r} as YAML: {err}") from err
    return value


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _metavar(hint: Any) -> str:
    hint = _strip_optional(hint)
    if typing.get_origin(hint) is Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(hint)) + "}"
    if typing.get_origin(hint) is list:
        return "VALUE"
    return getattr(hint, "__name__", str(hint)).upper()


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in _NONE)):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, name)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        if value in args:
            return value
        raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = hint(value) if hint is float or value.strip().lstrip("+-").isdigit() else float(value)
            except ValueError:
                raise ValueError(f"{name} must be {'an int' if hint is int else 'a number'}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, (int, float)) or (hint is int and not isinstance(value, int)):
            raise ValueError(f"{name} must be {'an int' if hint is int else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return hint(value)
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"{name} must be a string, got {value!r}")
    if origin is list:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce(v, args[0] if args else Any, f"{name}[{i}]") for i, v in enumerate(items)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    raise TypeError(f"{name}: unsupported config annotation {hint!r}")
