"""Multi-teacher distillation (method="multi_teacher"): the online PCA teacher, the heads it exports (a model that
round-trips weights-only and embeds as backbone + heads), a tiny offline run, resume and the clean-target option."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING

from embedlab.methods.base import MethodContext
from embedlab.methods.multi_teacher import (
    MultiTeacherDistillation,
    MultiTeacherError,
    parse_teachers,
)
from embedlab.models import create_backbone, export_backbone, load_backbone
from embedlab.models.heads import HeadedBackbone
from embedlab.settings import ParameterError, TrainSettings
from embedlab.training import TrainingError, build_module, open_dataset, train

FAST: dict[str, Any] = {**TINY_TRAINING, "method": "multi_teacher"}
PCA_DIMS = 39  # the PCA teacher on the 40 tiny images keeps N - 1 components (one more would be all zeros)


def _method(tiny_data: Path, teachers: str, options: dict[str, Any] | None = None, cache: Path | None = None):
    """The method on the tiny data, built as training builds it (with chosen method_args)."""
    settings = TrainSettings(**{**FAST, "teachers": teachers, "method_args": options})
    dataset = open_dataset(tiny_data, settings)
    backbone = create_backbone("resnet18", None, layers=1)
    context = MethodContext(num_images=len(dataset), dataset=dataset, cache_dir=cache)
    return MultiTeacherDistillation(backbone, settings, context), backbone, dataset


def test_teachers_are_parsed_and_checked(teacher_file: Path) -> None:
    assert parse_teachers("efficientnet_lite0+pca") == ("efficientnet_lite0", "pca")
    assert TrainSettings(method="multi_teacher", teachers=f" {teacher_file} + pca").teachers == f"{teacher_file}+pca"
    for bad in ("vit_huge+pca", "pca+pca", "pca+", ""):
        with pytest.raises(ParameterError, match="teachers"):
            TrainSettings(method="multi_teacher", teachers=bad)


def test_the_pca_teacher_applied_online_to_a_clean_view_is_embed_pca(tiny_data: Path, tmp_path: Path) -> None:
    from embedlab.embedding import embed_pca
    from embedlab.transforms import eval_transform

    method, _, dataset = _method(tiny_data, "pca", cache=tmp_path)
    method.prepare(torch.device("cpu"))  # fitted here (training: once Lightning has set the device)
    expected = embed_pca(dataset, dimensions=50, image_size=32, progress=False)
    from PIL import Image

    view = eval_transform(32)
    images = torch.stack([view(Image.open(dataset.root / name).convert("RGB")) for name in expected.filenames])
    np.testing.assert_allclose(method.pca(images).numpy(), expected.vectors.numpy(), atol=2e-3)
    assert (tmp_path / "pca-32px-fit.pt").is_file()  # fitted once, read back when a run resumes
    again, _, _ = _method(tiny_data, "pca", cache=tmp_path)
    again.prepare(torch.device("cpu"))
    assert torch.equal(again.pca.components, method.pca.components)


def test_each_teacher_gets_a_head_and_the_loss_is_finite_for_both_target_kinds(
    tiny_data: Path, teacher_file: Path, tmp_path: Path
) -> None:
    for options in ({}, {"targets": "clean", "pca_loss": "cosine"}):
        method, backbone, dataset = _method(tiny_data, f"{teacher_file}+pca", options, tmp_path)
        assert {part: loss.head.out_features for part, loss in method.losses.items()} == {
            "teacher": 128,
            "pca": PCA_DIMS,
        }
        views = [torch.randn(6, 3, 32, 32)]
        loss = method.batch_loss(backbone, views, list(dataset.filenames[:6]))
        assert torch.isfinite(loss) and loss.requires_grad
    assert (tmp_path / "teacher-32px.pt").is_file()  # clean targets are the clean images' cached vectors


def test_the_exported_model_embeds_as_centred_unit_parts(tiny_data: Path, teacher_file: Path) -> None:
    method, backbone, _ = _method(tiny_data, f"{teacher_file}+pca", {"output": "backbone+heads"})
    images = [torch.randn(5, 3, 32, 32), torch.randn(3, 3, 32, 32)]
    model = method.exported(backbone.eval(), images)
    assert isinstance(model, HeadedBackbone) and model.output == ("backbone", "teacher", "pca")
    assert model.embedding_dim == 64 + 128 + PCA_DIMS
    with torch.no_grad():
        raw = torch.cat([torch.cat(list(model.raw_parts(x).values()), dim=1) for x in images])
        np.testing.assert_allclose(model.centres.numpy(), raw.mean(dim=0).numpy(), atol=1e-5)
        out = model(images[0])
    norms = [out[:, a:b].norm(dim=1) for a, b in ((0, 64), (64, 192), (192, 192 + PCA_DIMS))]
    assert out.shape == (5, 192 + PCA_DIMS) and all(torch.allclose(n, torch.ones(5), atol=1e-5) for n in norms)
    assert model.select(["pca"]).embedding_dim == PCA_DIMS and model(images[0]).shape == (5, PCA_DIMS)
    with pytest.raises(ValueError, match="choose parts"):
        model.select(["dinov2"])


def test_a_model_with_heads_round_trips_weights_only_and_embeds(tiny_data: Path, teacher_file: Path, tmp_path: Path):
    from embedlab.embedding import embed

    method, backbone, _ = _method(tiny_data, f"{teacher_file}+pca", {"output": "heads+backbone"})
    model = method.exported(backbone.eval())  # centred on the training images
    model.meta["image_size"] = 32
    path = export_backbone(model, tmp_path / "backbone.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert any(k.startswith("heads.pca.") for k in state) and "centres" in state
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["heads"] == [["teacher", 64, 128], ["pca", 64, PCA_DIMS]] and meta["embedding_dim"] == 192 + PCA_DIMS
    assert meta["output"] == ["teacher", "pca", "backbone"]
    loaded = load_backbone(path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-5)
    found = embed(tiny_data, path, progress=False, num_workers=0)
    assert found.vectors.shape == (40, loaded.embedding_dim) and found.meta["image_size"] == 32


def test_without_the_training_images_it_says_what_is_missing() -> None:
    with pytest.raises(MultiTeacherError, match="training images"):
        build_module(TrainSettings(**{**FAST, "teachers": "pca"}))


def test_train_multi_teacher_offline_exports_heads_and_resumes(
    tiny_data: Path, teacher_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    teachers = f"{teacher_file}+pca"
    result = train(tiny_data, run, teachers=teachers, **FAST)
    assert np.isfinite(result.final_loss) and np.isfinite(result.knn_history).all()
    assert sorted(p.name for p in (run / "teachers").iterdir()) == ["pca-32px-fit.pt"]
    stamp = {p: p.stat().st_mtime_ns for p in (run / "teachers").iterdir()}
    meta = json.loads((run / "exported" / "backbone.json").read_text())
    assert meta["method"] == "multi_teacher" and meta["teachers"] == teachers
    assert meta["output"] == ["backbone"] and meta["heads"] == [["teacher", 64, 128], ["pca", 64, PCA_DIMS]]
    model = load_backbone(run / "exported" / "backbone.pt")  # the centred backbone, its heads kept
    assert model.embedding_dim == 64 and model.select(["backbone", "teacher", "pca"]).embedding_dim == 192 + PCA_DIMS
    train(tiny_data, run, teachers=teachers, **{**FAST, "epochs": 2})  # resumes; the PCA fit comes from the cache
    assert {p: p.stat().st_mtime_ns for p in (run / "teachers").iterdir()} == stamp
    with pytest.raises(TrainingError, match="new run_dir"):
        train(tiny_data, run, teachers="pca", **{**FAST, "epochs": 3})
