"""Two CPU processes (gloo): train_vlm under data parallelism, launched as the recipes' docs say
(`ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2`; `accelerate launch --cpu --num_processes 2`
starts a single process), and the models under FSDP2 sharded as training/configs/accelerate/fsdp.yaml
asks (accelerate's FSDP path needs GPUs, so this uses torch's `fully_shard` directly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import textwrap

import pytest
import torch

from hart_vlm import HartVLM
from hart_vlm.training.runtime import LRSchedule

from .conftest import CONFIGS, ROOT


@pytest.mark.slow
def test_train_vlm_runs_on_two_cpu_processes_with_one_schedule_step_per_optimizer_step(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "training" / "train_vlm.py"), "--config", str(CONFIGS / "vlm_tiny.yaml"),
               "--output-dir", str(out), "--max-steps", "3", "--warmup-steps", "3", "--log-every", "1",
               "--mixture-examples", "32", "--progress", "false"]
    run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["processes"] for r in records if r["split"] == "data"] == [2]  # one writer, two processes
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    # a prepared scheduler would step once per process: 1/3, 3/3, 3/3 of the peak instead
    schedule = LRSchedule("cosine", warmup=3, total=3, min_ratio=0.1)
    assert [r["lr"] for r in train] == pytest.approx([3e-3 * schedule(s) for s in range(3)])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)
    checkpoint = out / "checkpoints" / "step_00000003"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    model = HartVLM.from_pretrained(out / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())


FSDP2_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from hart.discriminator import PatchDiscriminator
from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig
from hart_vlm import HartVLM
from hart_vlm.training.data import AssemblyMixture
from hart_vlm.training.tokenizer_objective import TokenizerObjective

dist.init_process_group("gloo")
mesh = init_device_mesh("cpu", (2,))
rank = dist.get_rank()
# TRANSFORMER_BASED_WRAP: one unit per class named by _no_split_modules, then the root
model = HartVLM.from_pretrained(sys.argv[1]).train()
for module in model.modules():
    if type(module).__name__ in model._no_split_modules:
        fully_shard(module, mesh=mesh)
fully_shard(model, mesh=mesh)
mixture = AssemblyMixture(8, resolution=32, image_positions=model.config.layout.num_positions)
batch = model.processor([mixture[rank], mixture[2 + rank]])
loss = model(**batch, generator=torch.Generator().manual_seed(rank)).loss
loss.backward()
assert all(p.grad is not None for n, p in model.named_parameters() if "layers" in n and p.requires_grad)
# a model without _no_split_modules is one unit
objective = TokenizerObjective(HybridTokenizer(HybridTokenizerConfig.from_preset("tiny")), PatchDiscriminator(3, 8, 2))
fully_shard(objective, mesh=mesh)
objective(torch.rand(2, 3, 32, 32) * 2 - 1, torch.Generator().manual_seed(rank), 0.5, 0.1)["loss"].backward()
# one file per rank: two ranks printing to one pipe can interleave their lines
with open(f"rank{rank}.ok", "w") as f:
    f.write(f"{float(loss.detach()):.4f}")
dist.barrier()
dist.destroy_process_group()
# Measured here: about one run in eight, a rank then aborts in the interpreter's C++ teardown
# ("terminate called without an active exception", SIGABRT) after all of the above succeeded,
# even with the process group destroyed; skip that teardown, the checks are done.
import os
os._exit(0)
"""


def test_models_train_under_fsdp2_sharding(tmp_path, tiny_vlm_dir):
    script = tmp_path / "fsdp2.py"
    script.write_text(textwrap.dedent(FSDP2_SCRIPT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(tiny_vlm_dir)]
    run = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path, capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("rank*.ok")) == ["rank0.ok", "rank1.ok"]
