"""Multi-teacher distillation (method="multi_teacher"): teachers' targets, the loss, a tiny offline run, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

from embedlab.methods.multi_teacher import MultiTeacherError, parse_teachers
from embedlab.settings import ParameterError, TrainSettings
from embedlab.training import TrainingError, build_module, open_dataset, train

FAST: dict[str, Any] = {**TINY_TRAINING, "method": "multi_teacher"}


def test_teachers_are_parsed_and_checked(teacher_file: Path) -> None:
    assert parse_teachers("efficientnet_lite0+pca") == ("efficientnet_lite0", "pca")
    assert TrainSettings(method="multi_teacher", teachers=f" {teacher_file} + pca").teachers == f"{teacher_file}+pca"
    for bad in ("vit_huge+pca", "pca+pca", "pca+", ""):
        with pytest.raises(ParameterError, match="teachers"):
            TrainSettings(method="multi_teacher", teachers=bad)


def test_targets_are_each_teachers_vectors_centred_and_unit_length(tiny_data: Path, teacher_file: Path) -> None:
    from embedlab.embedding import embed_pca

    settings = TrainSettings(**{**FAST, "teachers": f"{teacher_file}+pca"})
    dataset = open_dataset(tiny_data, settings)
    method = build_module(settings, num_images=len(dataset), dataset=dataset).method
    pca = embed_pca(dataset, dimensions=50, image_size=32, progress=False).vectors.numpy()
    centred = pca - pca.mean(axis=0)
    rows = [method._index[name] for name in dataset.filenames]
    expected = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(method._targets[1][rows].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(method._targets[0].norm(dim=1).numpy(), 1.0, rtol=1e-5)


def test_each_teacher_gets_a_head_and_the_loss_falls_as_the_student_matches(
    tiny_data: Path, teacher_file: Path
) -> None:
    settings = TrainSettings(**{**FAST, "teachers": f"{teacher_file}+pca"})
    dataset = open_dataset(tiny_data, settings)
    method = build_module(settings, num_images=len(dataset), dataset=dataset).method
    assert [head.out_features for head in method.heads] == [128, 40]  # the network's 128-d, PCA capped by 40 images
    names = list(dataset.filenames[:6])
    targets = torch.cat([table[[method._index[n] for n in names]] for table in method._targets], dim=1)
    method.heads = torch.nn.ModuleList(torch.nn.Linear(168, d, bias=False) for d in (128, 40))
    with torch.no_grad():  # heads that read each teacher's part of a 168-d "student" output
        method.heads[0].weight.copy_(torch.eye(128, 168))
        method.heads[1].weight.copy_(torch.eye(168)[128:])
    student = lambda x: x  # noqa: E731 - the "backbone" passes the concatenated targets through
    exact = method.batch_loss(student, [targets], names)
    shuffled = method.batch_loss(student, [targets.roll(1, 0)], names)
    assert exact.item() == pytest.approx(0.0, abs=1e-5) and shuffled.item() > 0.1


def test_without_the_training_images_it_says_what_is_missing() -> None:
    with pytest.raises(MultiTeacherError, match="training images"):
        build_module(TrainSettings(**{**FAST, "teachers": "pca"}))


def test_train_multi_teacher_offline_caches_targets_and_resumes(
    tiny_data: Path, teacher_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    teachers = f"{teacher_file}+pca"
    result = train(tiny_data, run, teachers=teachers, **FAST)
    assert np.isfinite(result.final_loss)
    cached = sorted(p.name for p in (run / "teachers").iterdir())
    assert cached == ["pca-32px.pt", "teacher-32px.pt"], cached
    stamp = {p: p.stat().st_mtime_ns for p in (run / "teachers").iterdir()}
    meta = json.loads((run / "exported" / "backbone.json").read_text())
    assert meta["method"] == "multi_teacher" and meta["teachers"] == teachers
    train(tiny_data, run, teachers=teachers, **{**FAST, "epochs": 2})  # resumes; the targets come from the cache
    assert {p: p.stat().st_mtime_ns for p in (run / "teachers").iterdir()} == stamp
    with pytest.raises(TrainingError, match="new run_dir"):
        train(tiny_data, run, teachers="pca", **{**FAST, "epochs": 3})
