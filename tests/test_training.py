"""Tests for embedlab.training: each SSL method's step, train() outputs, resume, interrupt, DDP on CPU, errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SCRATCH, TINY_TRAINING
from PIL import Image

from embedlab import training
from embedlab.registry import METHODS
from embedlab.settings import ParameterError, TrainSettings
from embedlab.training import SSLModule, TrainingError, ssl_transform, train

FAST: dict[str, Any] = TINY_TRAINING  # tiny and fast (conftest)


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, training.TrainResult]:
    """One epoch of SimCLR with a full ResNet18 on the tiny data (shared by the output and export tests)."""
    run = tmp_path_factory.mktemp("runs") / "simclr"
    return run, train(tiny_data, run, **{**FAST, "layers": None})


def _rows(path: Path) -> list[dict[str, str]]:
    """CSV rows as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _batch(tiny_data: Path, method: str, n: int = 8) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    """A collated batch of the method's views, as the DataLoader gives it to training_step."""
    from embedlab.datasets import ImageFolder

    folder = ImageFolder(tiny_data, ssl_transform("grayscale", 32, method=method))
    items = [folder[i * 5] for i in range(n)]
    views = [torch.stack([item[0][v] for item in items]) for v in range(METHODS[method].num_views)]
    return views, torch.tensor([item[1] for item in items]), [item[2] for item in items]


@pytest.mark.parametrize("method", list(METHODS))
def test_method_training_step_updates_weights(tiny_data: Path, method: str) -> None:
    """Each method's loss is finite and one SGD step on it changes the backbone (and only trainable parts)."""
    torch.manual_seed(0)
    settings = TrainSettings(
        backbone="resnet18",
        init=None,
        small_images=False,
        layers=2,
        method=method,
        image_size=32,
        learning_rate=0.1,
        batch_size=8,
        **{"multi_teacher": {"teachers": "pca"}}.get(
            method, {"teacher": "efficientnet_lite0"} if "distil" in method else {}
        ),
    )  # offline teachers: ImageNet EfficientNet-Lite0, raw-pixel PCA of the training images
    from embedlab.datasets import ImageFolder
    from embedlab.methods.base import MethodContext

    module = SSLModule(settings, MethodContext(dataset=ImageFolder(tiny_data), num_images=40))
    module.total_steps = 10
    module.log = lambda *args, **kwargs: None  # no Trainer attached in this unit test
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1)
    loss = module.training_step(_batch(tiny_data, method), 0)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    changed = [
        k for k, v in module.backbone.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert "conv1.weight" in changed and "layer2.1.conv2.weight" in changed
    if method in ("moco", "byol"):
        assert not any(p.requires_grad for p in module.method.momentum_backbone.parameters())


def test_train_writes_run_directory(trained_run: tuple[Path, training.TrainResult]) -> None:
    """last.ckpt (hyper-parameters + backbone.* weights), export + metadata, loss.csv, epochs.csv, config.json."""
    run, result = trained_run
    assert result.epochs == 1 and np.isfinite(result.final_loss) and result.images_per_second > 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert {k: hparams[k] for k in ("backbone", "small_images", "layers", "image_size", "method", "augment")} == {
        "backbone": "resnet18",
        "small_images": False,
        "layers": None,
        "image_size": 32,
        "method": "simclr",
        "augment": "natural",
    }
    assert any(k.startswith("backbone.layer4.") for k in ckpt["state_dict"])
    assert ckpt["embedlab"]["epochs_completed"] == 1
    steps = _rows(run / "loss.csv")
    assert len(steps) == 5  # 40 images / batch 8, drop_last
    assert list(steps[0]) == ["epoch", "step", "loss", "lr", "images_per_second"]
    assert all(np.isfinite(float(r["loss"])) and float(r["images_per_second"]) > 0 for r in steps)
    epochs = _rows(run / "epochs.csv")
    assert len(epochs) == 1 and 0.0 <= float(epochs[0]["knn_accuracy"]) <= 1.0
    assert result.knn_history == [float(epochs[0]["knn_accuracy"])]
    assert 0.0 < float(epochs[0]["output_std"]) < 1.0  # the collapse check, logged beside the kNN accuracy
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == "32-true" and config["num_images"] == 40
    meta = json.loads((run / "exported" / "backbone.json").read_text())
    assert meta["image_size"] == 32 and meta["method"] == "simclr" and meta["name"] == "resnet18"


def test_export_loads_into_torchvision_resnet18(trained_run: tuple[Path, training.TrainResult]) -> None:
    """The exported state dict loads strictly into torchvision's resnet18 with fc replaced, same outputs."""
    import torchvision

    from embedlab.models import load_backbone

    run, result = trained_run
    net = torchvision.models.resnet18()
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load(result.exported, weights_only=True))
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    from_ckpt = load_backbone(run / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        torch.testing.assert_close(net(x), from_ckpt(x))
    assert from_ckpt.meta["image_size"] == 32


def test_resume_continues_and_finished_run_returns_quickly(tiny_data: Path, tmp_path: Path) -> None:
    """epochs=2 on a 1-epoch run continues at epoch 1 (steps 6..10); a third call returns without training."""
    run = tmp_path / "resumed"
    train(tiny_data, run, **FAST)
    result = train(tiny_data, run, **{**FAST, "epochs": 2})
    steps = _rows(run / "loss.csv")
    assert [int(r["epoch"]) for r in steps] == [0] * 5 + [1] * 5
    assert [int(r["step"]) for r in steps] == list(range(1, 11))
    assert json.loads((run / "config.json").read_text())["resumed_from_epoch"] == 1
    assert result.epochs == 2 and len(result.knn_history) == 2
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["embedlab"]["epochs_completed"] == 2 and ckpt["global_step"] == 10
    mtime = (run / "checkpoints" / "last.ckpt").stat().st_mtime
    start = time.perf_counter()
    again = train(tiny_data, run, **{**FAST, "epochs": 2})
    assert time.perf_counter() - start < 5
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime == mtime
    assert again.epochs == 2 and again.final_loss == result.final_loss


def test_resume_with_other_backbone_is_a_clear_error(
    trained_run: tuple[Path, training.TrainResult], tiny_data: Path
) -> None:
    """A checkpoint of another backbone/method names both, and no tensor shapes."""
    with pytest.raises(TrainingError) as info:
        train(tiny_data, trained_run[0], **{**FAST, "backbone": "efficientnet_lite0", "epochs": 3})
    message = str(info.value)
    assert "resnet18" in message and "efficientnet_lite0" in message and "size mismatch" not in message


@pytest.mark.parametrize(
    "change", [{"augment": "grayscale"}, {"init": "imagenet"}, {"temperature": 0.1}, {"min_scale": 0.5}]
)
def test_a_finished_run_is_never_returned_for_another_recipe(
    trained_run: tuple[Path, training.TrainResult], tiny_data: Path, change: dict[str, Any]
) -> None:
    """Changing the recipe in the same run_dir (an exercise's "try augment='grayscale'") names what differs instead of
    silently returning the finished run; epochs, batch size and budgets may change."""
    ((name, value),) = change.items()
    with pytest.raises(TrainingError, match=f"{name}=.*{value!r}.*new run_dir"):
        train(tiny_data, trained_run[0], **{**FAST, "layers": None, **change})
    same_recipe = {**FAST, "layers": None, "batch_size": 4, "knn_images": 20}
    assert train(tiny_data, trained_run[0], **same_recipe).epochs == 1
    with pytest.raises(TrainingError, match="method='byol'"):
        train(tiny_data, trained_run[0], **{**FAST, "method": "byol", "epochs": 3})


def test_keyboard_interrupt_saves_checkpoint_then_resumes(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl+C mid-epoch saves last.ckpt and raises KeyboardInterrupt; the rerun finishes the epoch."""
    original = SSLModule.training_step

    def interrupt_at_step_3(self: Any, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.global_step == 3:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(SSLModule, "training_step", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path / "run", **FAST)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3 and ckpt["embedlab"]["epochs_completed"] == 0
    monkeypatch.setattr(SSLModule, "training_step", original)
    result = train(tiny_data, tmp_path / "run", **FAST)
    assert result.epochs == 1 and (tmp_path / "run" / "exported" / "backbone.pt").is_file()


def test_init_imagenet_efficientnet_lite0(tiny_data: Path, tmp_path: Path) -> None:
    """init='imagenet' starts from the packaged ImageNet weights; training moves them a little; freeze_bn keeps
    the BatchNorm statistics."""
    from embedlab.models import create_backbone, load_backbone

    imagenet = create_backbone("efficientnet_lite0", "imagenet", layers=3).state_dict()
    settings = TrainSettings(method="simclr", backbone="efficientnet_lite0", init="imagenet", layers=3, image_size=32)
    module = SSLModule(settings)
    assert torch.equal(module.backbone.state_dict()["_conv_stem.weight"], imagenet["_conv_stem.weight"])
    result = train(
        tiny_data,
        tmp_path / "lite",
        **{
            **FAST,
            "backbone": "efficientnet_lite0",
            "init": "imagenet",
            "layers": 3,
            "augment": "grayscale",
            "freeze_bn": True,
        },
    )
    trained = load_backbone(result.exported).state_dict()
    stem, start = trained["_conv_stem.weight"], imagenet["_conv_stem.weight"]
    assert not torch.equal(stem, start)
    assert torch.nn.functional.cosine_similarity(stem.flatten(), start.flatten(), dim=0) > 0.9
    assert torch.equal(trained["_bn0.running_mean"], imagenet["_bn0.running_mean"])
    assert not torch.equal(trained["_bn0.weight"], imagenet["_bn0.weight"])  # affine BN parameters still learn


DDP_SCRIPT = """
import json, sys
from embedlab.training import train
result = train(sys.argv[1], sys.argv[2], method="simclr", backbone="resnet18", init=None, small_images=False,
               layers=1, image_size=32,
               batch_size=4, epochs=1, accelerator="cpu", devices=2, strategy="ddp", progress=False,
               knn_images=40)
print("RESULT", json.dumps({"epochs": result.epochs, "loss": result.final_loss}))
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_data: Path, tmp_path: Path) -> None:
    """DDP with 2 CPU processes (gloo) in a subprocess (Lightning's ddp launcher re-runs the script)."""
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    run = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, str(script), str(tiny_data), str(run)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch_size"] == 8
    steps = _rows(run / "loss.csv")
    assert len(steps) == 5  # 40 images over 2 processes x 4 per batch
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["embedlab"]["epochs_completed"] == 1 and ckpt["hyper_parameters"]["world_size"] == 2
    assert "RESULT" in proc.stdout


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"method": "simsiam"}, "parameter 'method'.*'simsiam'"),
        ({"augment": "medical"}, "parameter 'augment'.*'medical'"),
        ({"backbone": "vgg16"}, "parameter 'backbone'.*'vgg16'"),
        ({"init": "places365"}, "parameter 'init'.*'places365'"),
        ({"epochs": 0}, "parameter 'epochs'"),
        ({"batch_size": 1}, "parameter 'batch_size'"),
        ({"learning_rate": -1.0}, "parameter 'learning_rate'"),
        ({"num_workers": -2}, "parameter 'num_workers'"),
        ({"max_steps": 0}, "parameter 'max_steps'"),
    ],
)
def test_bad_options_are_clear_errors(tiny_data: Path, tmp_path: Path, options: dict[str, Any], match: str) -> None:
    """Each bad option raises the settings' ParameterError naming it, before anything is read or written."""
    with pytest.raises(ParameterError, match=match):
        train(tiny_data, tmp_path / "run", **{**FAST, **options})
    assert not (tmp_path / "run").exists()


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    """A data folder that does not exist names the path and how to prepare data."""
    with pytest.raises(TrainingError, match="not found.*nowhere"):
        train(tmp_path / "nowhere", tmp_path / "run", **FAST)


def test_batch_larger_than_dataset_is_shrunk(tiny_data: Path, tmp_path: Path) -> None:
    """batch_size above the number of images is reduced (with a warning) so drop_last keeps one batch."""
    with pytest.warns(UserWarning, match="using batch_size=40"):
        result = train(tiny_data, tmp_path / "run", **{**FAST, "batch_size": 64, "knn_monitor": False})
    assert len(_rows(result.loss_log)) == 1 and result.knn_history == []


def test_max_steps_sizes_the_schedule(tiny_data: Path, tmp_path: Path) -> None:
    """max_steps stops training there; the schedule (no warmup: < 10 steps) decays to 0 at that step."""
    result = train(tiny_data, tmp_path / "run", **{**FAST, "epochs": 5, "max_steps": 7, "knn_monitor": False})
    steps = _rows(result.loss_log)
    assert [int(r["step"]) for r in steps] == list(range(1, 8))
    lrs = [float(r["lr"]) for r in steps]
    assert lrs[0] == pytest.approx(0.06 * 8 / 128) and lrs[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


@pytest.mark.parametrize("preset", ["natural", "aerial", "grayscale"])
@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_ssl_transform_gives_two_normalised_views(preset: str, method: str) -> None:
    """Every preset maps a PIL image to two [3, S, S] tensors that differ (random augmentation)."""
    torch.manual_seed(0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    views = ssl_transform(preset, 24, method=method)(image)
    assert len(views) == 2 and all(v.shape == (3, 24, 24) for v in views)
    assert not torch.equal(views[0], views[1])


def test_grayscale_preset_keeps_gray_images_gray() -> None:
    """The grayscale preset never adds colour: the three channels stay equal before normalisation."""
    from embedlab.registry import IMAGENET_MEAN, IMAGENET_STD

    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8)).convert("RGB")
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    for _ in range(10):
        for view in ssl_transform("grayscale", 32)(image):
            raw = view * std + mean
            torch.testing.assert_close(raw[0], raw[1], atol=1e-5, rtol=0)


def test_resolvers() -> None:
    """precision/accelerator/num_workers 'auto' choose sensible values on this CPU box."""
    from embedlab import runtime
    from embedlab.training import lr_factor

    assert runtime.resolve_precision("auto", "cpu") == "32-true"
    assert runtime.resolve_precision("16-mixed", "gpu") == "16-mixed"
    if not torch.cuda.is_available():
        assert runtime.resolve_accelerator("auto") == "cpu"
        with pytest.raises(ParameterError, match="no CUDA GPU"):
            runtime.resolve_accelerator("gpu")
    assert runtime.train_workers(3) == 3
    assert 0 <= runtime.train_workers("auto") <= 8
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(99, 100, 10) == pytest.approx(0.0)


def test_output_spread_tells_a_collapsed_model_from_a_healthy_one() -> None:
    """Spread-out embeddings give about 1/sqrt(d); identical ones (collapse) give 0."""
    from embedlab.training.monitor import output_spread

    torch.manual_seed(0)
    healthy = torch.randn(2000, 64)
    assert output_spread(healthy) == pytest.approx(1 / 64**0.5, rel=0.05)
    assert output_spread(torch.ones(2000, 64) + 1e-6 * torch.randn(2000, 64)) < 1e-3


def test_training_continues_from_an_exported_backbone(tiny_data: Path, tmp_path: Path) -> None:
    """init=<exported backbone.pt> (lightly-train #77): the new run starts from those weights; another architecture
    is one TrainingError naming it."""
    from embedlab import export_backbone, train
    from embedlab.methods.base import MethodContext
    from embedlab.models import create_backbone
    from embedlab.training.errors import TrainingError

    torch.manual_seed(3)
    start = create_backbone("resnet18", layers=1)
    exported = export_backbone(start, tmp_path / "first" / "exported" / "backbone.pt")
    settings = TrainSettings(**SCRATCH, layers=1, small_images=False, image_size=32).replace(init=str(exported))
    module = SSLModule(settings, MethodContext(num_images=40))
    assert all(torch.equal(a, b) for a, b in zip(module.backbone.state_dict().values(), start.state_dict().values()))
    result = train(tiny_data, tmp_path / "second", settings=settings.replace(epochs=1, batch_size=8, progress=False))
    assert result.exported.is_file()
    with pytest.raises(TrainingError, match="holds a resnet18 backbone"):
        SSLModule(settings.replace(layers=2), MethodContext(num_images=40))
    with pytest.raises(ParameterError, match="parameter 'init'"):
        TrainSettings(init=str(tmp_path / "missing.pt"))
