"""Typed, checked settings: one frozen dataclass per stage, shared by the notebooks, the CLI and the library.

Each field carries its check in its metadata: a bad value fails when the settings are made, in one ParameterError
naming the parameter. This is the only declaration, check and help of every option; the stages take these objects
and check nothing again, and the CLI's options are generated from them. Only the standard library is imported:
valid names come from the torch-free `embedlab.registry` and `embedlab.datasets`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from embedlab.paths import ROOT_ENV, base_dir, find_project_root, resolve_path  # noqa: F401 - re-exported
from embedlab.registry import (
    AUGMENT_PRESETS,
    DINOV2_PATCH,
    DINOV2_TEACHERS,
    METHODS,
    backbone_names,
    canonical_backbone,
    method_names,
    method_options,
    method_spec,
    teacher_names,
)

PROJECTION_METHODS = ("umap", "pca", "tsne")
CLASSIFIER_MODES = ("frozen", "finetune")

Check = Callable[[str, Any], Any]
S = TypeVar("S", bound="Settings")


class ParameterError(ValueError):
    """A parameter has the wrong type or value; the message names the parameter."""


# --------------------------------------------------------------------------------------------- checks
def _fail(name: str, value: Any, expected: str) -> ParameterError:
    return ParameterError(f"parameter {name!r}: expected {expected}, got {value!r} ({type(value).__name__})")


def _int(minimum: int, maximum: int = 10**9, optional: bool = False) -> Check:
    """A whole number in [minimum, maximum] (every number has an upper bound: a typo must not exhaust memory)."""
    expected = f"an integer from {minimum} to {maximum}" + (" or None" if optional else "")

    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise _fail(name, value, expected)
        return value

    check.range = f"{minimum}..{maximum}"  # type: ignore[attr-defined]  # named in the option's help
    return check


def _int_list(minimum: int, maximum: int) -> Check:
    """A non-empty list of integers in [minimum, maximum], returned sorted without repeats as a tuple."""

    def check(name: str, value: Any) -> Any:
        expected = f"a non-empty list of integers between {minimum} and {maximum}"
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
            raise _fail(name, value, expected)
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not minimum <= item <= maximum:
                raise _fail(name, value, expected)
        return tuple(sorted(set(value)))

    check.range = f"{minimum}..{maximum}"  # type: ignore[attr-defined]
    return check


def _float(minimum: float, maximum: float = 1e9, optional: bool = False, strict: bool = False) -> Check:
    """A finite number in [minimum, maximum] ((minimum, maximum] when strict); NaN and infinities never pass."""
    low = f"{'>' if strict else '>='} {minimum:g}"
    expected = f"a finite number {low} and <= {maximum:g}" + (" or None" if optional else "")

    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(name, value, expected)
        if value < minimum or (strict and value == minimum) or value > maximum:
            raise _fail(name, value, expected)
        return float(value)

    check.range = f"{'(' if strict else '['}{minimum:g}, {maximum:g}]"  # type: ignore[attr-defined]
    return check


def _choice(options: tuple[str, ...] | Callable[[], tuple[str, ...]], optional: bool = False) -> Check:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        allowed = options() if callable(options) else options
        if value is None and "none" in allowed:  # a command line reads 'none' as None: the mode named 'none'
            return "none"
        if isinstance(value, str) and value in allowed:
            return value
        listed = ", ".join(repr(o) for o in (*allowed, *((None,) if optional else ())))
        raise _fail(name, value, f"one of {listed}")

    return check


def _str(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(name, value, "a non-empty string")
    return str(value)


def _path(name: str, value: Any) -> Path:
    return resolve_path(_str(name, value))


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(name, value, "True or False")


def _auto_or_bool(name: str, value: Any) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise _fail(name, value, "True, False or 'auto'")


def _mapping(name: str, value: Any) -> dict[str, Any] | None:
    """None, a mapping of option names to values, or 'name=value,name=value' as typed on a command line."""
    if isinstance(value, str):
        pairs = [pair.partition("=") for pair in value.split(",") if pair.strip()]
        value = {k.strip(): parse_text(v) for k, _, v in pairs} if all(sep for _, sep, _ in pairs) else value
    if value is not None and not (isinstance(value, Mapping) and all(isinstance(k, str) for k in value)):
        raise _fail(name, value, "a mapping of option names to values, or name=value pairs joined by ','")
    return None if value is None else dict(value)


MAX_SEED = 2**32 - 1  # what NumPy and scikit-learn accept as a seed
MAX_BATCH = 65536
MAX_IMAGE_SIZE = 1024  # pixels per side: 1024 x 1024 x 3 floats is 12 MB per image
_seed = _int(0, MAX_SEED)


def _workers(name: str, value: Any) -> int | str:
    return value if value == "auto" else _int(0, 256)(name, value)


def _devices(name: str, value: Any) -> int | str:
    return value if isinstance(value, str) and value else _int(1, 4096)(name, value)


def _precision(name: str, value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _str(name, value)


_fraction = _float(0.0, 1.0, strict=True)
_min_scale = _float(0.0, 1.0, optional=True, strict=True)


def _dataset_names() -> tuple[str, ...]:
    """The registered dataset names (embedlab.datasets imports no torch)."""
    from embedlab.datasets import DATASETS

    return tuple(DATASETS)


def _verify_modes() -> tuple[str, ...]:
    """How thoroughly images are checked before use."""
    from embedlab.datasets import VERIFY_MODES

    return tuple(VERIFY_MODES)


def _dataset(name: str, value: Any) -> str:
    text = _str(name, value)
    names = _dataset_names()
    if text in names:
        return text
    folder = resolve_path(text)
    if folder.is_dir():
        return str(folder)
    raise ParameterError(
        f"parameter {name!r}: unknown dataset {text!r}; use one of {', '.join(sorted(names))} "
        f"or the path of an existing image folder (class subfolders)"
    )


def _teacher(name: str, value: Any) -> str:
    """A distillation teacher: a registered name or the path of an exported backbone / checkpoint."""
    text = _str(name, value)
    if text in teacher_names() or Path(text).expanduser().is_file():
        return text
    raise ParameterError(
        f"parameter {name!r}: unknown teacher {text!r}; use one of {', '.join(teacher_names())} "
        f"or the path of an exported backbone (.pt) or checkpoint (.ckpt)"
    )


def _init(name: str, value: Any) -> str | None:
    """None (random), 'imagenet', or an exported backbone file to continue training it."""
    if value is None or value == "imagenet":
        return value
    if isinstance(value, str) and Path(value).expanduser().is_file():
        return str(Path(value).expanduser())  # '~/runs/x/exported/backbone.pt' as the loader will open it
    raise _fail(name, value, "None, 'imagenet' or the path of an exported backbone.pt")


def _teachers(name: str, value: Any) -> str:
    """Multi-teacher distillation's teachers joined by '+', each 'pca' (raw pixels) or a distillation teacher."""
    parts = [part.strip() for part in _str(name, value).split("+")]
    if not all(parts) or len(set(parts)) != len(parts):
        raise ParameterError(f"parameter {name!r}: expected different teachers joined by '+', got {value!r}")
    return "+".join(part if part == "pca" else _teacher(name, part) for part in parts)


def _backbone(name: str, value: Any) -> str:
    """A registered backbone, also spelt as LightlyTrain does ('torchvision/resnet18'; 'timm/<model>' with timm)."""
    try:
        return _choice(backbone_names)(name, canonical_backbone(value))
    except LookupError as error:  # 'timm/<model>' without timm installed
        raise ParameterError(f"parameter {name!r}: {error.args[0]}") from None


_method = _choice(method_names)
_augment = _choice(AUGMENT_PRESETS)


def setting(default: Any, check: Check | None, help: str = "", cli: str | None = None) -> Any:  # noqa: A002
    """A dataclass field whose value `check(name, value)` cleans or rejects; `help` documents it (CLI, docs);
    `cli` is the command's short spelling (`--k` for knn_k), accepted beside `--field-name`."""
    return field(default=default, metadata={"check": check, "help": help, "cli": cli})


# --------------------------------------------------------------------------------------------- the base class
@dataclass(frozen=True)
class Settings:
    """Base of the stage settings: checks every field on creation; `replace`, `options` and `from_mapping`."""

    stage: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))

    def options(self) -> dict[str, Any]:
        """The fields as a plain dict (keyword arguments for the stage's function)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, in order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any], *, strict: bool = False) -> S:
        """Settings from the fields found in `values` (other keys ignored, or rejected when strict)."""
        own = cls.names()
        if strict and (unknown := sorted(set(values) - set(own))):
            raise ParameterError(
                f"unknown {cls.__name__} option(s) {', '.join(map(repr, unknown))}; known: {', '.join(own)}"
            )
        return cls(**{k: v for k, v in values.items() if k in own})


def field_check(name: str) -> Check | None:
    """The check of a field called `name` in any stage's settings (the same name means the same thing)."""
    for cls in ALL_SETTINGS:
        for f in fields(cls):
            if f.name == name and f.metadata.get("check") is not None:
                return f.metadata["check"]
    return None


# --------------------------------------------------------------------------------------------- the stages
@dataclass(frozen=True)
class DataSettings(Settings):
    """Which images, where they live, and the thumbnail cache (notebook 01)."""

    stage: ClassVar[str] = "data"
    dataset: str = setting("aid", _dataset, "aid | eurosat | ucmerced | fashion-mnist | an image folder")
    data_dir: Path = setting("data", _path, "where datasets are stored (relative: from the project root)")
    limit_per_class: int | None = setting(None, _int(1, 10**9, True), "images per class; None: all", cli="limit")
    thumbnail_size: int = setting(64, _int(8, 1024), "the thumbnail cache's short side in pixels", cli="size")
    thumbnail_workers: int | None = setting(None, _int(1, 256, True), "processes; None: one per CPU", cli="workers")
    seed: int = setting(0, _seed, "seed for the image sample shown")


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Every option of a training run (`embedlab.train(data, run_dir, settings)`); config.json records them. Method,
    backbone and init default to bench_quality's best offline recipe (multi-64, quality_pays_3k_ablation.json)."""

    stage: ClassVar[str] = "train"
    method: str = setting("multi_teacher", _method, "self-supervised method")
    backbone: str = setting("efficientnet_lite0", _backbone, "network to train")
    init: str | None = setting("imagenet", _init, "None: random; 'imagenet'; or an exported backbone.pt to continue")
    small_images: bool | str = setting("auto", _auto_or_bool, "CIFAR-style stem; auto: for images <= 64 px")
    layers: int | None = setting(None, _int(1, 16, True), "keep only the first N stages of the backbone")
    augment: str = setting("natural", _augment, "augmentation preset: natural | aerial | grayscale")
    epochs: int = setting(10, _int(1, 100_000), "passes over the images")
    batch_size: int = setting(128, _int(2, MAX_BATCH), "images per batch and device")
    image_size: int = setting(64, _int(16, MAX_IMAGE_SIZE), "training resolution in pixels (stored with the model)")
    learning_rate: float | None = setting(None, _float(0.0, 10.0, True, True), "None: 0.06 x global batch / 128")
    warmup_epochs: float = setting(1, _float(0.0, 100_000.0), "linear warmup length (at most 10% of the steps)")
    precision: str | int = setting("auto", _precision, "auto: bf16-mixed from capability 8.0, else 16-mixed; 32 on CPU")
    accelerator: str = setting("auto", _str, "auto | cpu | gpu | ...")
    devices: int | str = setting(1, _devices, "devices per node (1..4096 or a Lightning device string)")
    num_nodes: int = setting(1, _int(1, 4096), "machines (DDP)")
    strategy: str = setting("auto", _str, "Lightning strategy")
    num_workers: int | str = setting("auto", _workers, "data-loading processes (0..256); auto: measured choice")
    seed: int = setting(0, _seed, "random seed")
    limit: int | None = setting(None, _int(1, 10**9, True), "images per class to train on; None: all")
    knn_monitor: bool = setting(True, _bool, "kNN accuracy on a labelled subset after each epoch")
    progress: bool = setting(True, _bool, "progress bar")
    temperature: float = setting(0.5, _float(0.0, 100.0, strict=True), "contrastive temperature")
    min_scale: float | None = setting(None, _min_scale, "smallest crop's share of the image; None: the preset's")
    max_time: float | None = setting(None, _float(0.0, 1e9, True, True), "wall-clock cap in seconds")
    knn_images: int = setting(2000, _int(1, 10**6), "images the kNN monitor uses")
    freeze_bn: bool = setting(False, _bool, "keep the backbone's BatchNorm statistics fixed")
    backbone_lr_scale: float = setting(1.0, _float(0.0, 10.0), "backbone learning rate relative to the heads")
    max_steps: int | None = setting(None, _int(1, 10**9, True), "optimizer steps; the schedule fits them")
    teacher: str = setting("dinov2_vitb14", _teacher, "method 'distillation': the teacher (a name or a weights file)")
    teacher_image_size: int | None = setting(None, _int(16, MAX_IMAGE_SIZE, True), "teacher's input; None: default")
    teachers: str = setting(
        "efficientnet_lite0+pca", _teachers, "method 'multi_teacher': teachers joined by '+' (names, files, 'pca')"
    )
    verify: str = setting(
        "header", _choice(_verify_modes), "check images first: header (fast), full (decode all) or none (no check)"
    )
    method_args: dict[str, Any] | None = setting(None, _mapping, "the method's own options (its registered args class)")

    def __post_init__(self) -> None:
        super().__post_init__()
        spec = method_spec(self.method)
        reads, args = spec.reads, spec.load_args()
        if args is not None or self.method_args:  # the method's own settings check its args; defaults filled in
            if args is None:
                raise ParameterError(f"parameter 'method_args': method {self.method!r} takes none")
            object.__setattr__(self, "method_args", args.from_mapping(self.method_args or {}, strict=True).options())
        for f in (f for f in fields(self) if f.name in method_options() - set(reads)):
            if getattr(self, f.name) != f.default:  # set for a method that ignores it: say so instead
                users = ", ".join(spec.name for spec in METHODS.values() if f.name in spec.reads)
                raise ParameterError(f"parameter {f.name!r}: method {self.method!r} does not use it (only {users} do)")
        size = self.teacher_image_size
        if "teacher" in reads and self.teacher in DINOV2_TEACHERS and size and size % DINOV2_PATCH:
            raise _fail("teacher_image_size", size, f"a multiple of {DINOV2_PATCH} for a DINOv2 teacher (its patch)")


@dataclass(frozen=True)
class EmbedSettings(Settings):
    """How images are embedded: notebook 03's ImageNet model, PCA baseline and batch size; `embedlab embed`'s size,
    dimensions and stages."""

    stage: ClassVar[str] = "embed"
    imagenet_model: str = setting("resnet18", _backbone, "the ImageNet-pretrained model to compare with")
    imagenet_image_size: int = setting(224, _int(16, MAX_IMAGE_SIZE), "its input size (the 'imagenet' embedding set)")
    imagenet_image_sizes: tuple[int, ...] = setting(
        (64, 112, 224), _int_list(16, MAX_IMAGE_SIZE), "input sizes to embed with it; the best is the baseline"
    )
    embed_batch_size: int = setting(64, _int(1, MAX_BATCH), "images per batch", cli="batch-size")
    pca_dimensions: int = setting(50, _int(2, 4096), "components of the raw-pixel PCA baseline")
    num_workers: int | str = setting("auto", _workers, "data-loading processes (0..256)")
    seed: int = setting(0, _seed, "seed of the random-init and PCA baselines")
    embed_image_size: int | None = setting(
        None, _int(8, MAX_IMAGE_SIZE, True), "None: a checkpoint's size, 224 for names, 32 for pca", cli="image-size"
    )
    embed_dimensions: int | None = setting(
        None, _int(1, 4096, True), "PCA components (pca: 50; other models: all, or a PCA to N)", cli="dimensions"
    )
    embed_layers: int | None = setting(None, _int(1, 16, True), "keep a named backbone's first N stages", cli="layers")
    embed_limit: int | None = setting(None, _int(1, 10**9, True), "images per class; None: all", cli="limit")
    embed_shard_size: int = setting(  # at D=2048 a shard's vectors are 80 MB, its loss on a kill minutes of work
        10_000, _int(1, 10**7), "images per shard when the output is a folder (embed_to_shards)", cli="shard-size"
    )

    def loader_args(self) -> dict[str, Any]:
        """Keyword arguments of `embed()` shared by every embedding set."""
        return {"batch_size": self.embed_batch_size, "num_workers": self.num_workers}


@dataclass(frozen=True)
class ProjectionSettings(Settings):
    """2-D maps of the embeddings (notebooks 04 and 05)."""

    stage: ClassVar[str] = "projection"
    projection: str = setting("umap", _choice(PROJECTION_METHODS), "umap | pca | tsne", cli="method")
    umap_n_neighbors: int = setting(
        15, _int(2, 10_000), "bigger: more global structure; smaller: more local detail", cli="n-neighbors"
    )
    umap_min_dist: float = setting(0.1, _float(0.0, 1.0), "how tightly points may pack together", cli="min-dist")
    seed: int = setting(0, _seed, "seed of the reducer")

    def projector_args(self) -> dict[str, Any]:
        """Keyword arguments of `project_all` / `load_or_project`."""
        return {
            "method": self.projection,
            "seed": self.seed,
            "n_neighbors": self.umap_n_neighbors,
            "min_dist": self.umap_min_dist,
        }


@dataclass(frozen=True)
class CompareSettings(Settings):
    """Grading the embeddings with the held-back labels (notebook 05)."""

    stage: ClassVar[str] = "compare"
    knn_k: int = setting(20, _int(1, 10_000), "neighbours that vote in the kNN accuracy", cli="k")
    seed: int = setting(0, _seed, "seed of the linear probe's split")


@dataclass(frozen=True)
class CurationSettings(Settings):
    """Search, outliers, duplicates, subsets and a classifier (notebook 06)."""

    stage: ClassVar[str] = "curation"
    SEARCH_BACKENDS: ClassVar[tuple[str, ...]] = ("auto", "exact", "faiss")  # curation.graph.BACKENDS
    embedding_name: str = setting("ssl", _str, "which set: auto (notebook 05's choice) | ssl | imagenet | pca | ...")
    neighbors_k: int = setting(8, _int(1, 10_000), "neighbours shown per query", cli="k")
    outlier_k: int = setting(5, _int(1, 10_000), "outlier score: cosine distance to the k-th neighbour", cli="k")
    outlier_count: int = setting(20, _int(1, 10**9), "how many of the most unusual images to list", cli="n")
    duplicate_threshold: float = setting(0.97, _fraction, "near-duplicates' cosine similarity, (0, 1]", cli="threshold")
    subset_size: int = setting(60, _int(1, 10**9), "images in the diverse subset", cli="n")
    search_backend: str = setting(
        "auto",
        _choice(SEARCH_BACKENDS),
        "neighbour search: exact (all pairs, N^2) | faiss (approximate, embedlab[scale]) | auto (exact for small sets)",
        cli="backend",
    )
    classifier_mode: str = setting("frozen", _choice(CLASSIFIER_MODES), "frozen (head only) | finetune", cli="mode")
    classifier_epochs: int | None = setting(None, _int(1, 10_000, True), "None: 50 frozen, 2 finetune", cli="epochs")
    classifier_batch_size: int = setting(64, _int(1, MAX_BATCH), "images per batch", cli="batch-size")
    classifier_images_per_class: int | None = setting(
        None, _int(2, 10**9, True), "None: all labelled images", cli="limit"
    )
    classifier_learning_rate: float = setting(
        1e-3,
        _float(0.0, 10.0, strict=True),
        "the head's learning rate (the backbone's is 10x lower)",
        cli="learning-rate",
    )
    classifier_image_size: int | None = setting(
        None, _int(16, MAX_IMAGE_SIZE, True), "None: the backbone's training size", cli="image-size"
    )
    classifier_verify: str = setting(
        "header",
        _choice(_verify_modes),
        "check images first: header (fast), full (decode every file) or none; unusable files are skipped and named",
        cli="verify",
    )
    seed: int = setting(0, _seed, "seed")


ALL_SETTINGS: tuple[type[Settings], ...] = (
    DataSettings,
    TrainSettings,
    EmbedSettings,
    ProjectionSettings,
    CompareSettings,
    CurationSettings,
)


# --------------------------------------------------------------------------------------------- command line
def parse_text(text: str) -> Any:
    """A command-line value as Python: none/null -> None, true/false -> bool, numbers -> int/float, else the text.

    The settings' checks then say whether the value fits (e.g. `--epochs 2.5` fails naming 'epochs').
    """
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text
