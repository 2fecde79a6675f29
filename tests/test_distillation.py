"""Tests for embedlab.methods.distillation and train(method="distillation"): loss, queue, teachers, a tiny run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_TRAINING

from embedlab import registry
from embedlab.methods.distillation import DistillationError, Distiller, distillation_loss, load_teacher, queue_size_for
from embedlab.models import create_backbone
from embedlab.training import TrainingError, train

# A tiny student (stem + first ResNet stage) on 32 px images; the teacher is a tiny exported backbone file.
FAST: dict[str, Any] = {**TINY_TRAINING, "method": "distillation"}


def test_loss_is_the_cross_entropy_of_the_softmaxes_over_the_queue() -> None:
    torch.manual_seed(0)
    student, teacher, queue = (F.normalize(torch.randn(n, 16), dim=1) for n in (4, 4, 10))
    expected = -(torch.softmax(teacher @ queue.T / 0.07, 1) * torch.log_softmax(student @ queue.T / 0.07, 1))
    assert distillation_loss(student, teacher, queue) == pytest.approx(float(expected.sum(1).mean()), rel=1e-5)


def test_loss_is_smallest_when_the_student_matches_the_teacher() -> None:
    torch.manual_seed(0)
    teacher, queue = F.normalize(torch.randn(8, 16), dim=1), F.normalize(torch.randn(32, 16), dim=1)
    student = teacher.clone().requires_grad_(True)
    matched = distillation_loss(student, teacher, queue)
    matched.backward()
    assert student.grad is not None and student.grad.abs().max() < 1e-5  # a minimum: no gradient
    other = distillation_loss(F.normalize(torch.randn(8, 16), dim=1), teacher, queue)
    assert float(other) > float(matched) + 0.1


def test_queue_size_follows_the_dataset_size() -> None:
    assert [queue_size_for(n) for n in (40, 300, 3_000, 10_000, 10**6)] == [16, 128, 1024, 4096, 8192]


def test_queue_keeps_the_newest_teacher_embeddings_first(teacher_file: Path) -> None:
    distiller = Distiller(64, teacher_file, teacher_image_size=32, queue_size=6)
    first, second = torch.ones(4, 128), 2 * torch.ones(4, 128)
    distiller._update_queue(first)
    assert int(distiller.queue_filled) == 4
    distiller._update_queue(second)
    assert int(distiller.queue_filled) == 6
    assert torch.equal(distiller.queue[:4], second) and torch.equal(distiller.queue[4:], first[:2])


def test_teacher_is_frozen_and_kept_out_of_the_state_dict(teacher_file: Path) -> None:
    distiller = Distiller(64, teacher_file, teacher_image_size=32, queue_size=16)
    assert not any(p.requires_grad for p in distiller.teacher.parameters())
    assert set(distiller.state_dict()) == {"projection_head.weight", "projection_head.bias", "queue", "queue_filled"}
    student = create_backbone("resnet18", None, small_images=False, layers=1)
    loss = distiller(student, torch.randn(4, 3, 32, 32))
    loss.backward()
    assert math.isfinite(float(loss)) and distiller.projection_head.weight.grad is not None
    assert all(p.grad is None for p in distiller.teacher.parameters())


def test_teacher_sees_images_at_its_own_size(teacher_file: Path) -> None:
    distiller = Distiller(64, teacher_file, teacher_image_size=48, queue_size=16)
    seen: list[tuple[int, ...]] = []
    distiller.teacher.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    distiller.teacher_embeddings(torch.randn(2, 3, 32, 32))
    assert seen == [(2, 3, 48, 48)]


def test_imagenet_backbone_teacher_loads_offline() -> None:
    teacher = load_teacher("efficientnet_lite0")
    assert teacher.embedding_dim == 1280 and not teacher.training


def test_dinov2_without_network_fails_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> Any:
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load", offline)
    with pytest.raises(DistillationError, match="efficientnet_lite0"):
        load_teacher("dinov2_vits14")


def test_dinov2_teacher_size_must_be_a_multiple_of_its_patches() -> None:
    from embedlab.settings import ParameterError, TrainSettings

    with pytest.raises(ParameterError, match="multiple of 14"):
        TrainSettings(method="distillation", teacher="dinov2_vits14", teacher_image_size=100)
    with pytest.raises(ParameterError, match="method 'simclr' does not use it"):  # a teacher without distillation
        TrainSettings(method="simclr", teacher="dinov2_vits14")


def test_unknown_teacher_is_a_clear_error(tiny_data: Path, tmp_path: Path) -> None:
    from embedlab.settings import ParameterError

    with pytest.raises(ParameterError, match="unknown teacher 'vit_huge'"):
        train(tiny_data, tmp_path / "run", teacher="vit_huge", **FAST)
    with pytest.raises(DistillationError, match="Unknown teacher"):
        load_teacher("vit_huge")


def test_train_distillation_offline_writes_a_resumable_run(tiny_data: Path, teacher_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_data, run, teacher=str(teacher_file), **FAST)
    assert result.exported.is_file() and math.isfinite(result.final_loss)
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert "method.distiller.queue" in state and "method.distiller.projection_head.weight" in state
    assert not any("teacher" in key for key in state)  # the teacher is rebuilt from its name, never saved
    resumed = train(tiny_data, run, teacher=str(teacher_file), **{**FAST, "epochs": 2})
    assert resumed.epochs == 2
    with pytest.raises(TrainingError, match="teacher"):
        train(tiny_data, run, teacher="efficientnet_lite0", **{**FAST, "epochs": 3})


def test_distillation_moves_the_student_towards_the_teacher(tiny_data: Path, teacher_file: Path) -> None:
    """On one batch (queue = that batch's teacher embeddings) the KL to the teacher's soft labels shrinks."""
    from embedlab.datasets import ImageFolder
    from embedlab.training import eval_transform

    folder = ImageFolder(tiny_data, eval_transform(32))
    images = torch.stack([folder[i][0] for i in range(16)])
    torch.manual_seed(0)
    distiller = Distiller(64, teacher_file, teacher_image_size=32, queue_size=16, use_mixup=False)
    student = create_backbone("resnet18", None, small_images=False, layers=1)
    optimizer = torch.optim.Adam([*student.parameters(), *distiller.parameters()], lr=3e-3)
    losses = []
    for _ in range(25):
        loss = distiller(student, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    targets = torch.softmax(distiller.teacher_embeddings(images) @ distiller.queue.T / 0.07, dim=1)
    entropy = float(-(targets * targets.log()).sum(1).mean())  # the cross-entropy's floor: KL = loss - entropy
    assert losses[-1] - entropy < 0.5 * (losses[0] - entropy)


def test_module_exports_its_public_names() -> None:
    assert "efficientnet_lite0" in registry.teacher_names() and "dinov2_vitb14" in registry.teacher_names()


def test_cli_passes_distillation_and_its_teacher_to_train(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from embedlab import training
    from embedlab.cli import main

    seen: dict[str, Any] = {}

    def fake_train(data: Path, run_dir: Path, settings: Any = None, **options: Any) -> Any:
        seen.update({**(settings.options() if settings is not None else {}), **options})
        return SimpleNamespace(
            epochs=1, seconds=1.0, images_per_second=1.0, final_loss=1.0, checkpoint="c", exported="e"
        )

    monkeypatch.setattr(training, "train", fake_train)
    argv = [
        "train",
        str(tiny_data),
        str(tmp_path / "run"),
        "--method",
        "distillation",
        "--teacher",
        "efficientnet_lite0",
        "--teacher-image-size",
        "112",
        "--quiet",
    ]
    assert main(argv) == 0
    assert (seen["method"], seen["teacher"], seen["teacher_image_size"]) == ("distillation", "efficientnet_lite0", 112)


# --------------------------------------------------------------------- distillation v2 (LightlyTrain's default)
def test_v2_loss_is_the_mse_of_the_projected_resized_student_map() -> None:
    """feature_map_loss by hand: head over channels, bilinear resize to the teacher's grid, mean squared error."""
    from embedlab.methods.distillation_v2 import feature_map_loss

    torch.manual_seed(0)
    student, teacher, head = torch.randn(2, 8, 2, 2), torch.randn(2, 4, 4, 6), torch.nn.Linear(8, 6)
    projected = torch.einsum("nchw,dc->ndhw", student, head.weight) + head.bias[None, :, None, None]
    resized = F.interpolate(projected, size=(4, 4), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    expected = ((resized - teacher) ** 2).mean()
    assert float(feature_map_loss(student, teacher, head).detach()) == pytest.approx(float(expected), rel=1e-5)


def test_v2_trains_the_student_towards_a_frozen_teacher_map(teacher_file: Path) -> None:
    """The teacher's grid comes at its own input size, the teacher stays frozen and out of the state, and a few
    steps on one batch lower the loss (the student can follow the teacher's feature map)."""
    from embedlab.methods.base import MethodContext
    from embedlab.methods.distillation_v2 import DistillationV2
    from embedlab.settings import TrainSettings

    torch.manual_seed(0)
    settings = TrainSettings(
        method="distillation_v2", teacher=str(teacher_file), teacher_image_size=48, backbone="resnet18", init=None
    )
    student = create_backbone("resnet18", None, small_images=False, layers=1)
    method = DistillationV2(student, settings, MethodContext(num_images=4)).eval()  # eval: no mixup, same batch
    assert set(method.state_dict()) == {"head.weight", "head.bias"}
    seen: list[tuple[int, ...]] = []
    teacher = method.__dict__["_teacher"]
    teacher.conv1.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    images = torch.randn(4, 3, 32, 32)
    optimizer = torch.optim.Adam([*student.parameters(), *method.parameters()], lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = method.loss(student, [images])
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert seen[0] == (4, 3, 48, 48) and losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in teacher.parameters())


def test_v2_reads_a_dinov2_teachers_patch_tokens_of_its_last_two_blocks() -> None:
    """A DINOv2 teacher (here a stand-in with its hub API) gives the patch grid of its last two blocks, concatenated:
    LightlyTrain v2's n_teacher_blocks=2."""
    from embedlab.methods.distillation import _DinoTeacher
    from embedlab.methods.distillation_v2 import teacher_feature_map, teacher_width

    class FakeDino(torch.nn.Module):
        embed_dim = 6

        def get_intermediate_layers(self, x, n, reshape):
            assert reshape
            grid = x.shape[-1] // 14
            return tuple(torch.full((x.shape[0], self.embed_dim, grid, grid), float(i)) for i in range(n))

    teacher = _DinoTeacher(FakeDino())
    grid = teacher_feature_map(teacher, torch.randn(2, 3, 28, 28))
    assert grid.shape == (2, 2, 2, 12) == (2, 2, 2, teacher_width(teacher))
    assert torch.equal(grid[..., :6], torch.zeros(2, 2, 2, 6)) and torch.equal(grid[..., 6:], torch.ones(2, 2, 2, 6))
