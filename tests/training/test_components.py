"""The pieces the recipes share: LR schedule, per-step generators, the tokenizer objective's
gradient routing, the image datasets and the checkpoint folder rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from PIL import Image

from hart.discriminator import PatchDiscriminator, generator_hinge_loss
from hart.tokenizer import HybridTokenizer
from hart.tokenizer_config import HybridTokenizerConfig
from hart_vlm.training.checkpoint import Checkpointer, TrainingProgress
from hart_vlm.training.config import TrainingConfig
from hart_vlm.training.images import AssemblyImages, ImageFolder, PhotoCrops
from hart_vlm.training.runtime import LRSchedule, step_generator
from hart_vlm.training.tokenizer_objective import TokenizerObjective


def test_lr_schedule_warms_up_linearly_then_decays_to_the_floor():
    cosine = LRSchedule("cosine", warmup=4, total=12, min_ratio=0.1)
    assert [cosine(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine(8) == pytest.approx(0.55) and cosine(12) == pytest.approx(0.1) and cosine(50) == pytest.approx(0.1)
    assert LRSchedule("linear", 0, 10, 0.0)(5) == pytest.approx(0.5)
    assert LRSchedule("constant", 2, 10, 0.0)(9) == 1.0


def test_step_generators_are_reproducible_and_distinct():
    draw = lambda *coords: torch.rand(4, generator=step_generator(*coords, torch.device("cpu")))
    assert torch.equal(draw(0, 5, 1, 0), draw(0, 5, 1, 0))
    others = [draw(1, 5, 1, 0), draw(0, 6, 1, 0), draw(0, 5, 0, 0), draw(0, 5, 1, 1)]
    assert all(not torch.equal(draw(0, 5, 1, 0), other) for other in others)


def test_tokenizer_objective_routes_each_loss_to_its_own_network():
    torch.manual_seed(0)
    config = HybridTokenizerConfig.from_dict({**HybridTokenizerConfig.from_preset("tiny").to_dict(),
                                              "freeze_codebook_for_hybrid": False})
    objective = TokenizerObjective(HybridTokenizer(config), PatchDiscriminator(3, 8, 2)).train()
    images = torch.rand(2, 3, 32, 32) * 2 - 1

    def grads(**kwargs):
        objective.zero_grad()
        losses = objective(images, torch.Generator().manual_seed(0), continuous_prob=0.0, **kwargs)
        losses["loss"].backward()
        return losses, {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}

    plain, plain_grads = grads(adversarial_weight=0.0)
    assert set(plain) == {"loss", "reconstruction", "vq"} and not any(n.startswith("discriminator") for n in plain_grads)
    gan, gan_grads = grads(adversarial_weight=0.1)
    # the discriminator's gradient is exactly that of its own hinge loss (nothing from the generator term)
    objective.zero_grad()
    objective.discriminator.loss(images, objective.tokenizer.training_losses(
        images, torch.Generator().manual_seed(0), continuous_prob=0.0).reconstructions).backward()
    for name, p in objective.discriminator.named_parameters():
        torch.testing.assert_close(gan_grads[f"discriminator.{name}"], p.grad, rtol=1e-5, atol=1e-7)
    # the tokenizer's gradient is that of reconstruction + vq + 0.1 * generator hinge loss
    objective.zero_grad()
    losses = objective.tokenizer.training_losses(images, torch.Generator().manual_seed(0), continuous_prob=0.0)
    (losses.total + 0.1 * generator_hinge_loss(objective.discriminator(losses.reconstructions))).backward()
    for name, p in objective.tokenizer.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(gan_grads[f"tokenizer.{name}"], p.grad, rtol=1e-4, atol=1e-7)


def test_image_datasets_give_deterministic_images_in_range(tmp_path):
    crops = PhotoCrops(8, 32, seed=0)
    assert torch.equal(crops[3], PhotoCrops(8, 32, seed=0)[3]) and not torch.equal(crops[3], crops[4])
    renders = AssemblyImages(4, 32)
    for image in (crops[0], renders[1]):
        assert image.shape == (3, 32, 32) and -1.0 <= image.min() and image.max() <= 1.0
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (50, 40), (0, 255, 0)).save(tmp_path / "sub" / "x.png")
    (tmp_path / "notes.txt").write_text("not an image")
    folder = ImageFolder(tmp_path, 16)
    assert len(folder) == 1 and folder[0].shape == (3, 16, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFolder(tmp_path / "empty", 16)
    with pytest.raises(ValueError, match="image folder not found"):
        ImageFolder(tmp_path / "missing", 16)


def test_checkpoints_are_found_only_when_complete_and_pruned_to_keep(tmp_path):
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    progress = TrainingProgress()
    checkpointer = Checkpointer(accelerator, tmp_path, progress, keep=2)
    (tmp_path / "checkpoints" / ".tmp-step_00000009").mkdir(parents=True)  # a crash mid-save
    (tmp_path / "checkpoints" / "step_00000008").mkdir()  # no config.yaml: incomplete
    assert checkpointer.latest() is None
    for step in (1, 2, 3):
        progress.step, progress.batches_consumed = step, 2 * step
        checkpointer.save(TrainingConfig())
    assert [p.name for p in checkpointer.checkpoints()] == ["step_00000002", "step_00000003"]
    with torch.no_grad():
        model.weight.zero_()
    progress.step = 0
    checkpointer.restore(checkpointer.checkpoints()[0])
    assert progress.state_dict() == {"step": 2, "batches_consumed": 4} and model.weight.abs().sum() > 0


class _Payload:
    """Unpickling this runs code: it writes a file. A checkpoint must never run it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("the checkpoint ran code",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the planted files, read as tensors and refused
def test_no_file_of_a_checkpoint_is_unpickled_so_a_planted_payload_does_not_run(tmp_path):
    import pickle

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(2, 2))
    optimizer = accelerator.prepare(torch.optim.AdamW(model.parameters(), lr=0.1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    progress = TrainingProgress()
    checkpointer = Checkpointer(accelerator, tmp_path / "run", progress, keep=2, scheduler=scheduler)
    progress.step, progress.batches_consumed = 7, 9
    saved = checkpointer.save(TrainingConfig())
    assert json.loads((saved / "training_state.json").read_text())["progress"] == {"step": 7, "batches_consumed": 9}
    assert not list(saved.glob("custom_checkpoint_*"))  # nothing of ours is pickled
    marker = tmp_path / "ran.txt"
    # a payload beside the state, and in every pickle-format file accelerate wrote
    (saved / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="could not load"):
        checkpointer.restore(saved)
    assert not marker.exists()
    (saved / "custom_checkpoint_0.pkl").unlink()
    progress.step = 0
    checkpointer.restore(saved)
    assert progress.step == 7
    for file in [p for p in saved.iterdir() if p.suffix in (".pkl", ".bin")]:
        original = file.read_bytes()
        file.write_bytes(pickle.dumps({"state": _Payload(marker)}))
        with pytest.raises(ValueError, match="tensors only"):
            checkpointer.restore(saved)
        assert not marker.exists(), file.name
        file.write_bytes(original)
    (saved / "training_state.json").unlink()
    with pytest.raises(ValueError, match="training_state.json.*never loaded"):
        checkpointer.restore(saved)


def test_a_final_export_replaces_the_old_folder_whole_or_not_at_all(tmp_path):
    from hart_vlm.training.checkpoint import folder_written_whole

    out = tmp_path / "model"
    with folder_written_whole(out) as tmp:
        (tmp / "weights.safetensors").write_text("first")
    assert (out / "weights.safetensors").read_text() == "first" and oct(out.stat().st_mode)[-3:] == "755"
    with pytest.raises(RuntimeError):
        with folder_written_whole(out) as tmp:
            (tmp / "weights.safetensors").write_text("half")
            raise RuntimeError("the disk filled up")
    assert (out / "weights.safetensors").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left behind
    with folder_written_whole(out) as tmp:
        (tmp / "other.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["other.json"]
