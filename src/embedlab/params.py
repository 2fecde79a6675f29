"""Notebook parameters: validate them in the step after the `parameters` cell and resolve run-directory paths.

Papermill injects parameters after the `parameters` cell and nbmake replaces them with a mock; either way the
next cell calls `validate_params(...)`, so a bad value fails there with a message naming the parameter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT_ENV = "EMBEDLAB_ROOT"

KNOWN_DATASETS = ("aid", "eurosat", "ucmerced", "fashion-mnist")
KNOWN_BACKBONES = ("resnet18", "resnet34", "resnet50", "efficientnet_lite0")
KNOWN_METHODS = ("simclr", "moco", "byol", "simsiam", "dino", "barlowtwins", "vicreg")
KNOWN_AUGMENTS = ("natural", "aerial", "grayscale")
PROJECTION_METHODS = ("umap", "pca", "tsne")


class ParameterError(ValueError):
    """A notebook parameter has the wrong type or value; the message names the parameter."""


class MissingInputError(FileNotFoundError):
    """A file that an earlier notebook writes is missing; the message names that notebook."""


def find_project_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the embedlab checkout containing `start` (a folder with pyproject.toml and notebooks/), or None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def base_dir() -> Path:
    """Folder that relative paths resolve against: $EMBEDLAB_ROOT, else the repo root above the cwd, else the cwd."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return find_project_root() or Path.cwd().resolve()


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Make `path` absolute predictably, whether nbmake (notebook folder) or papermill (caller's cwd) runs us."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir() / p).resolve()


# --- checks: each returns the cleaned value or raises ParameterError naming the parameter -------------------------

def _fail(name: str, value: Any, expected: str) -> ParameterError:
    return ParameterError(f"parameter {name!r}: expected {expected}, got {value!r} ({type(value).__name__})")


def _int(minimum: int, maximum: int | None = None, optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        expected = f"an integer {bound}" + (" or None" if optional else "")
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, value, expected)
        if value < minimum or (maximum is not None and value > maximum):
            raise _fail(name, value, expected)
        return value
    return check


def _float(minimum: float, optional: bool = False, strict: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        expected = f"a number {'>' if strict else '>='} {minimum}" + (" or None" if optional else "")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(name, value, expected)
        if value < minimum or (strict and value == minimum):
            raise _fail(name, value, expected)
        return float(value)
    return check


def _choice(options: tuple[str, ...], optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, str) and value in options:
            return value
        allowed = ", ".join(repr(o) for o in (*options, *((None,) if optional else ())))
        raise _fail(name, value, f"one of {allowed}")
    return check


def _str(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise _fail(name, value, "a non-empty string")
    return str(value)


def _path(name: str, value: Any) -> Path:
    return resolve_path(_str(name, value))


def _small_images(name: str, value: Any) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise _fail(name, value, "True, False or 'auto'")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(name, value, "True or False")


def _min_scale(name: str, value: Any) -> float | None:
    value = _float(0.0, optional=True, strict=True)(name, value)
    if value is not None and value > 1:
        raise _fail(name, value, "a number in (0, 1] or None")
    return value


def _workers(name: str, value: Any) -> int | str:
    if value == "auto":
        return value
    return _int(0)(name, value)


def _devices(name: str, value: Any) -> int | str:
    if isinstance(value, str) and value:
        return value
    return _int(1)(name, value)


def _known(module: str, attr: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
    """Names from a sibling module when it is importable (the source of truth), else the fallback list."""
    try:
        import importlib
        found = getattr(importlib.import_module(f"embedlab.{module}"), attr)
        return tuple(found)
    except (ImportError, AttributeError):
        return fallback


def _dataset(name: str, value: Any) -> str:
    text = _str(name, value)
    names = _known("datasets", "DATASETS", KNOWN_DATASETS)
    if text in names:
        return text
    folder = resolve_path(text)
    if folder.is_dir():
        return str(folder)
    raise ParameterError(
        f"parameter {name!r}: unknown dataset {text!r}; use one of {', '.join(sorted(names))} "
        f"or the path of an existing image folder (class subfolders)"
    )


def _backbone(name: str, value: Any) -> str:
    return _choice(_known("models", "BACKBONE_NAMES", KNOWN_BACKBONES))(name, value)


def _method(name: str, value: Any) -> str:
    return _choice(_known("training", "METHODS", KNOWN_METHODS))(name, value)


def _init(name: str, value: Any) -> str | None:
    return _choice(("imagenet",), optional=True)(name, value)


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "dataset": _dataset,
    "data_dir": _path,
    "run_dir": _path,
    "limit_per_class": _int(1, optional=True),
    "thumbnail_size": _int(8, 1024),
    "seed": _int(0),
    "method": _method,
    "backbone": _backbone,
    "init": _init,
    "small_images": _small_images,
    "augment": _choice(KNOWN_AUGMENTS),
    "epochs": _int(1),
    "batch_size": _int(2),
    "image_size": _int(16, 1024),
    "learning_rate": _float(0.0, optional=True, strict=True),
    "num_workers": _workers,
    "accelerator": _str,
    "precision": _str,
    "devices": _devices,
    "imagenet_model": _backbone,
    "imagenet_image_size": _int(16, 1024),
    "embed_batch_size": _int(1),
    "pca_dimensions": _int(2),
    "projection": _choice(PROJECTION_METHODS),
    "umap_n_neighbors": _int(2),
    "umap_min_dist": _float(0.0),
    "knn_k": _int(1),
    "max_train_minutes": _float(0.0, optional=True, strict=True),
    "temperature": _float(0.0, strict=True),
    "min_scale": _min_scale,
    "freeze_bn": _bool,
    "backbone_lr_scale": _float(0.0, strict=True),
    "max_steps": _int(1, optional=True),
}


def validate_params(**params: Any) -> dict[str, Any]:
    """Check every known parameter (type and range) and resolve paths; unknown names pass through unchanged."""
    clean: dict[str, Any] = {}
    for name, value in params.items():
        check = CHECKS.get(name)
        clean[name] = check(name, value) if check else value
    return clean


def check_overrides(overrides: Mapping[str, Any], known: set[str]) -> None:
    """Reject override names no notebook declares (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; the notebooks take: {', '.join(sorted(known))}"
        )


class RunPaths:
    """Where each notebook reads and writes inside one run directory (the only link between notebooks)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = resolve_path(run_dir)
        self.config = self.root / "config.json"
        self.checkpoint = self.root / "checkpoints" / "last.ckpt"
        self.exported = self.root / "exported" / "backbone.pt"
        self.loss_log = self.root / "loss.csv"
        self.metrics = self.root / "metrics.json"
        self.embeddings_dir = self.root / "embeddings"
        self.umap_dir = self.root / "umap"
        self.figures_dir = self.root / "figures"
        self.interactive_dir = self.root / "interactive"
        self.notebooks_dir = self.root / "notebooks"

    def __repr__(self) -> str:
        return f"RunPaths({str(self.root)!r})"

    def embedding(self, name: str) -> Path:
        """Path of embedding set `name` (written by 03_embed_images)."""
        return self.embeddings_dir / f"{name}.pt"

    def umap(self, name: str) -> Path:
        """Path of the 2-D UMAP points of embedding set `name` (written by 04_visualize_umap)."""
        return self.umap_dir / f"{name}.npy"

    def figure(self, name: str) -> Path:
        """Path of a saved figure (PNG)."""
        return self.figures_dir / (name if name.endswith(".png") else f"{name}.png")

    def interactive(self, name: str) -> Path:
        """Path of an interactive HTML plot."""
        return self.interactive_dir / f"{name}.html"

    def embedding_names(self) -> list[str]:
        """Names of the embedding sets present, sorted."""
        return sorted(p.stem for p in self.embeddings_dir.glob("*.pt"))

    @property
    def dataset_info(self) -> Path:
        """JSON written by 01_download_data: where the images of this run are."""
        return self.root / "dataset.json"

    def record_dataset(self, root: str | os.PathLike[str], *, dataset: str, thumbnail_size: int | None = None) -> Path:
        """Remember the dataset root (and thumbnail folder) for the later notebooks of this run."""
        from embedlab._io import write_json

        info = {"dataset": dataset, "root": str(Path(root).resolve()), "thumbnail_size": thumbnail_size}
        return write_json(self.dataset_info, info)

    def dataset_root(self) -> Path:
        """The dataset root recorded by 01_download_data (raises MissingInputError naming 01 when absent)."""
        import json

        info = json.loads(self.require(self.dataset_info, made_by="01_download_data").read_text(encoding="utf-8"))
        return self.require(Path(info["root"]), made_by="01_download_data")

    def image_root(self, image_size: int) -> Path:
        """Thumbnails when they are complete and big enough for `image_size` (much faster to decode), else raw."""
        import json

        root = self.dataset_root()
        info = json.loads(self.dataset_info.read_text(encoding="utf-8"))
        size = info.get("thumbnail_size")
        if not size or image_size > size:
            return root
        thumbs = root.parent / f"thumbnails-{size}"
        return thumbs if thumbs.is_dir() and _same_files(root, thumbs) else root

    def require(self, path: str | os.PathLike[str], made_by: str) -> Path:
        """Return `path` if it exists, else raise MissingInputError telling which notebook makes it."""
        target = Path(path)
        if not target.exists():
            raise MissingInputError(
                f"missing input {target}: run notebooks/{made_by}.ipynb first with the same run_dir "
                f"({self.root}) and data_dir"
            )
        return target


def _relative_files(folder: Path) -> set[str]:
    """Relative paths of the files in class subfolders of `folder`."""
    return {f"{d.name}/{f.name}" for d in folder.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file()
            and not f.name.startswith(".")}


def _same_files(raw: Path, thumbs: Path) -> bool:
    """True when the thumbnail cache holds exactly the raw images (same relative names)."""
    return _relative_files(raw) == _relative_files(thumbs)


def show_versions() -> None:
    """Print the versions of the packages the tutorial depends on, and the device torch will use."""
    from importlib import metadata
    import platform

    names = ("embedlab", "torch", "torchvision", "lightly", "pytorch-lightning", "umap-learn", "bokeh", "papermill")
    parts = [f"python {platform.python_version()}"]
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    print(" | ".join(parts))
    import torch

    device = f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}")
