"""Atomic checkpoints and exact resume with accelerate.

A checkpoint is `accelerator.save_state` (model, optimizers and every process's RNG states, which
accelerate reads back with `torch.load(weights_only=True)`), the :class:`TrainingProgress` counters
and the LR schedule's state as JSON (`training_state.json`: accelerate would pickle registered
objects and unpickle them with `weights_only=False`, so a crafted checkpoint could run code), and
the resolved config, in `output_dir/checkpoints/step_<8-digit step>/`. It is written into a hidden temporary
folder beside it and renamed into place only once complete, so a crash mid-save never leaves a
half-written checkpoint where `latest()` would find it; only the newest `keep` are kept.

Resuming is `load_state` then skipping the micro-batches already consumed
(`accelerator.skip_first_batches`); the recipes derive every other random draw from
(seed, step), so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from accelerate import Accelerator

from .config import config_differences, config_to_dict, save_config

CHECKPOINTS_DIR = "checkpoints"
CONFIG_FILE = "config.yaml"
STATE_FILE = "training_state.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
# Fields that may change between a run and its resumption without changing what is computed.
RESUMABLE_CHANGES = ("output_dir", "max_steps", "resume", "resume_from", "log_every", "eval_every", "eval_batches",
                     "save_every", "keep_checkpoints", "progress", "num_workers")


class TrainingProgress:
    """Counters saved with every checkpoint: optimizer steps done and micro-batches consumed (per process)."""

    def __init__(self) -> None:
        self.step = 0
        self.batches_consumed = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "batches_consumed": self.batches_consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.batches_consumed = int(state["batches_consumed"])


class Checkpointer:
    """Saves and finds checkpoints of one run. Create it after `accelerator.prepare` and after
    registering any other object for checkpointing, on every process; call `save`/`restore` on
    every process too (accelerate writes one RNG file per process)."""

    def __init__(self, accelerator: Accelerator, output_dir: str | os.PathLike, progress: TrainingProgress, keep: int = 2,
                 scheduler=None):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.accelerator = accelerator
        self.root = Path(output_dir) / CHECKPOINTS_DIR
        self.progress = progress
        self.keep = keep
        # saved as JSON beside accelerate's state, never registered with it (it would pickle them)
        self.states = {"progress": progress, **({"schedule": scheduler} if scheduler is not None else {})}

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / CONFIG_FILE).is_file()]
        return sorted(found, key=lambda p: p.name)

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save(self, config: Any) -> Path:
        """Checkpoint the current state as `step_<progress.step>` (replacing one of the same step)."""
        acc = self.accelerator
        name = f"step_{self.progress.step:08d}"
        final, tmp = self.root / name, self.root / f".tmp-{name}"
        if acc.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():  # left over by a run that crashed while saving
                shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            states = {name: obj.state_dict() for name, obj in self.states.items()}
            (tmp / STATE_FILE).write_text(json.dumps(states, indent=2, sort_keys=True) + "\n")
            save_config(config, tmp / CONFIG_FILE)
            if final.exists():  # the same step again, e.g. a resumed run that had nothing left to do
                old = self.root / f".old-{name}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old)
            else:
                os.replace(tmp, final)
            for stale in self.checkpoints()[: -self.keep]:
                shutil.rmtree(stale)
        acc.wait_for_everyone()
        return final

    def restore(self, path: str | os.PathLike) -> dict[str, Any]:
        """Load a checkpoint into the prepared objects; returns the config it was saved with."""
        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise ValueError(f"{str(path)!r} is not a complete checkpoint (it has no {CONFIG_FILE})")
        state_file = path / STATE_FILE
        if not state_file.is_file():
            raise ValueError(f"{str(path)!r} has no {STATE_FILE}: it was written by an older hart-vlm that pickled the "
                             "training progress, which is never loaded (pickle can run code); start the run again")
        try:
            states = json.loads(state_file.read_text())
            missing = sorted(set(self.states) - set(states))
            if missing:
                raise ValueError(f"it lacks {missing}")
        except ValueError as error:
            raise ValueError(f"{state_file}: not a valid training state ({error})") from None
        from accelerate.utils import load as load_tensors  # torch.load(weights_only=True), numpy arrays allowed

        for rng_file in sorted(path.glob("random_states_*.pkl")):  # accelerate skips an unreadable one silently
            try:
                load_tensors(rng_file)
            except Exception as error:
                raise ValueError(f"{rng_file}: not a random-state file of plain tensors ({type(error).__name__}); "
                                 "files are read as tensors only") from None
        try:
            self.accelerator.load_state(str(path))
        except Exception as error:  # e.g. an optimizer file that is not plain tensors
            raise ValueError(f"{str(path)!r}: accelerate could not load its state ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}); files are read as tensors only") from None
        for name, obj in self.states.items():  # after the optimizer, so that the schedule's learning rate wins
            obj.load_state_dict(states[name])
        return yaml.safe_load((path / CONFIG_FILE).read_text()) or {}

    def resume(self, cfg: Any) -> Path | None:
        """Continue from `cfg.resume_from`, else (with `cfg.resume`) from the newest checkpoint;
        returns the checkpoint used, or None for a fresh start. Warns about changed config fields."""
        acc = self.accelerator
        path = Path(cfg.resume_from) if cfg.resume_from is not None else (self.latest() if cfg.resume else None)
        if path is None:
            if cfg.resume:
                acc.print(f"resume: no checkpoint in {self.root}, starting from step 0")
            return None
        saved = self.restore(path)
        changed = config_differences(saved, config_to_dict(cfg), ignore=RESUMABLE_CHANGES)
        if changed:
            acc.print("warning: the config differs from the checkpoint's, so the run will not repeat the original: "
                      + "; ".join(changed))
        acc.print(f"resumed from {path} at step {self.progress.step}")
        return path


def replace_folder(src: Path, dst: Path) -> None:
    """Puts folder `src` at `dst` by renames: an existing `dst` is renamed aside, `src` renamed onto
    it and the old one removed; if the second rename fails the old one returns."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{secrets.token_hex(4)}")
        dst.replace(old)
    try:
        src.replace(dst)
    except OSError:
        if old is not None:
            old.replace(dst)
        raise
    if old is not None:
        shutil.rmtree(old)


@contextlib.contextmanager
def folder_written_whole(dst: str | os.PathLike):
    """Yields a hidden temporary folder beside `dst` to write into; when the block ends without an
    error it takes `dst`'s place (renames, readable by everyone), else it is removed and an earlier
    `dst` stays as it was. The recipes' final exports are written this way."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp made it private
        replace_folder(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
