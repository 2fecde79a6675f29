"""A classifier on the exported backbone: it loads run_dir/exported/backbone.pt, trains a head, beats chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embedlab import classifier, datasets, models
from embedlab.classifier import FinetuneError


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 images per class of the embedded fashion-mnist (200 images, 10 classes)."""
    return datasets.prepare("fashion-mnist", tmp_path_factory.mktemp("data"), limit=20, progress=False)


def export_run(run_dir: Path, *, layers: int | None = None) -> Path:
    """Write run_dir/exported/backbone.pt the way training does (a 32 px ResNet18, random init for speed)."""
    torch.manual_seed(0)
    backbone = models.create_backbone("resnet18", layers=layers)
    backbone.meta["image_size"] = 32
    return models.export_backbone(backbone, run_dir / "exported" / "backbone.pt")


def test_split_matches_the_linear_probe_split():
    labels = np.repeat(np.arange(4), 10)
    train, test = classifier.stratified_split(labels, 0.3, seed=1)
    assert len(test) == 12 and len(train) == 28 and not set(train) & set(test)
    assert np.bincount(labels[test]).tolist() == [3, 3, 3, 3]
    np.testing.assert_array_equal(classifier.stratified_split(labels, 0.3, seed=1)[1], test)
    with pytest.raises(FinetuneError, match="at least 2 images per class"):
        classifier.stratified_split([0, 1, 1, 1], 0.3)


def test_frozen_classifier_on_exported_backbone_beats_chance(tmp_path, fashion_root):
    export_run(tmp_path)
    result = classifier.train_classifier(
        tmp_path, fashion_root, mode="frozen", epochs=40, batch_size=64, progress=False
    )
    assert result.test_images == 60 and result.train_images == 140
    assert result.chance == pytest.approx(0.1)
    assert result.accuracy > 3 * result.chance, result.summary()  # 10 classes: chance is 0.10
    assert result.probe_accuracy is not None and result.probe_accuracy > 3 * result.chance
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert "linear probe" in result.summary()
    # the trained model is a plain nn.Module: images in, class scores out
    logits = result.model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)


def test_finetune_mode_updates_the_backbone(tmp_path, fashion_root):
    exported = export_run(tmp_path, layers=1)
    before = models.load_backbone(exported).state_dict()["layer1.0.conv1.weight"].clone()
    result = classifier.train_classifier(
        exported, fashion_root, mode="finetune", epochs=1, batch_size=32, probe=False, progress=False
    )
    after = result.model.backbone.state_dict()["layer1.0.conv1.weight"]
    assert not torch.equal(before, after)
    assert result.mode == "finetune" and len(result.history) == 1 and 0.0 <= result.accuracy <= 1.0
    assert result.probe_accuracy is None


def test_clear_errors(tmp_path, fashion_root):
    with pytest.raises(FileNotFoundError, match="exported"):
        classifier.train_classifier(tmp_path, fashion_root, progress=False)
    export_run(tmp_path)
    with pytest.raises(FinetuneError, match="mode"):
        classifier.train_classifier(tmp_path, fashion_root, mode="linear", progress=False)
    with pytest.raises(FileNotFoundError, match="dataset folder"):
        classifier.train_classifier(tmp_path, tmp_path / "nowhere", progress=False)


def test_a_folder_where_only_one_class_has_usable_images_is_refused(tmp_path):
    """Two class folders, one of them only damaged files: not 'test accuracy 0.800 (chance 1.000)' and exit 0."""
    from test_reliability import class_folder, truncated_jpeg

    root = class_folder(tmp_path / "images", per_class=6, classes=("a",))
    (root / "b").mkdir()
    for i in range(3):
        truncated_jpeg(root / "b" / f"bad{i}.jpg", seed=i)
    export_run(tmp_path / "run")
    with pytest.raises(FinetuneError, match="only 1 class has usable images"):
        classifier.train_classifier(tmp_path / "run", root, progress=False, verify="none")


def test_the_classifier_options_are_declared_once_in_the_settings():
    """train_classifier's defaults are CurationSettings' classifier_* defaults, and a bad value fails with the
    settings' own message (naming the option and what it accepts), before any image is read."""
    import inspect

    from embedlab.settings import CurationSettings

    declared = CurationSettings()
    defaults = inspect.signature(classifier.train_classifier).parameters
    for option in ("mode", "epochs", "batch_size", "learning_rate", "image_size", "verify"):
        assert defaults[option].default == getattr(declared, f"classifier_{option}")
    assert defaults["limit_per_class"].default == declared.classifier_images_per_class
    with pytest.raises(FinetuneError, match=r"'classifier_batch_size': expected an integer from 1 to 65536"):
        classifier.train_classifier("unused", "unused", batch_size=0, progress=False)
    with pytest.raises(FinetuneError, match=r"'classifier_learning_rate': expected a finite number > 0"):
        classifier.train_classifier("unused", "unused", learning_rate=float("nan"), progress=False)
