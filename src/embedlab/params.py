"""Notebook parameters: check them in one call right after the `parameters` cell, and where a run's files live.

    p = params.check(globals(), "02")      # typed settings per stage (embedlab.settings), paths resolved
    result = train(train_root, p.run.root, **p.train_args)

Papermill injects parameters after the `parameters` cell and nbmake replaces them with a mock; either way the
next cell calls `check`, so a bad value fails there with a one-line message naming the parameter. On Colab,
`use_drive=True` mounts Google Drive and keeps relative `data_dir` / `run_dir` there, so results survive
disconnects and each notebook's fresh runtime finds what the others wrote.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedlab.settings import (
    ALL_SETTINGS,
    KNOWN_AUGMENTS,
    KNOWN_BACKBONES,
    KNOWN_DATASETS,
    KNOWN_METHODS,
    PROJECTION_METHODS,
    ROOT_ENV,
    CompareSettings,
    CurationSettings,
    DataSettings,
    EmbedSettings,
    ParameterError,
    ProjectionSettings,
    Settings,
    TrainSettings,
    _bool,
    _float,
    _path,
    base_dir,
    field_check,
    find_project_root,
    resolve_path,
)

__all__ = [
    "KNOWN_AUGMENTS",
    "KNOWN_BACKBONES",
    "KNOWN_DATASETS",
    "KNOWN_METHODS",
    "NOTEBOOK_STAGES",
    "PROJECTION_METHODS",
    "ROOT_ENV",
    "MissingInputError",
    "NotebookParams",
    "ParameterError",
    "RunPaths",
    "base_dir",
    "check",
    "check_overrides",
    "find_project_root",
    "resolve_path",
    "show_versions",
    "storage_base",
    "validate_params",
]

# The stages whose settings each notebook declares (and so gets as p.data, p.train, ...).
NOTEBOOK_STAGES: dict[str, tuple[str, ...]] = {
    "00": ("data", "train", "embed", "projection", "compare"),
    "01": ("data",),
    "02": ("data", "train"),
    "03": ("data", "train", "embed"),
    "04": ("data", "train", "embed", "projection"),
    "05": ("data", "train", "embed", "projection", "compare"),
    "06": ("data", "train", "embed", "curation"),
}
DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = Path("MyDrive") / "embedlab"


class MissingInputError(FileNotFoundError):
    """A file that an earlier notebook writes is missing; the message names that notebook."""


def _train_if_missing(name: str, value: Any) -> dict[str, Any]:
    """A dict of TrainSettings options (plus max_train_minutes) for the model a notebook trains when none exists."""
    if not isinstance(value, Mapping):
        raise ParameterError(f"parameter {name!r}: expected a dict of training options, got {value!r}")
    options = _train_options(value)
    try:
        TrainSettings.from_mapping(options, strict=True)
    except ParameterError as error:
        raise ParameterError(f"parameter {name!r}: {error}") from None
    return dict(value)


def _url(name: str, value: Any) -> str | None:
    """None, or the http(s) address of a published run archive (see embedlab.workflow.pack_run)."""
    if value is None or (isinstance(value, str) and value.startswith(("http://", "https://"))):
        return value
    raise ParameterError(f"parameter {name!r}: expected None or an http(s):// address, got {value!r}")


# Notebook-level names that are no stage's field: the run, Google Drive, and the notebook's spelling of a cap.
EXTRA_CHECKS = {
    "run_dir": _path,
    "use_drive": _bool,
    "max_train_minutes": _float(0.0, optional=True, strict=True),
    "train_if_missing": _train_if_missing,
    "pretrained_url": _url,
}


def _train_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook names -> train() options: max_train_minutes (what a learner thinks in) becomes max_time seconds."""
    options = {k: v for k, v in values.items() if k != "max_train_minutes"}
    minutes = values.get("max_train_minutes")
    if minutes is not None and "max_time" not in options:
        options["max_time"] = 60 * float(minutes)
    return options


def validate_params(**params: Any) -> dict[str, Any]:
    """Check every known parameter (type and range) and resolve paths; unknown names pass through unchanged."""
    clean: dict[str, Any] = {}
    for name, value in params.items():
        check = EXTRA_CHECKS.get(name) or field_check(name)
        clean[name] = check(name, value) if check else value
    return clean


def check_overrides(overrides: Mapping[str, Any], known: set[str]) -> None:
    """Reject override names no notebook declares (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; the notebooks take: {', '.join(sorted(known))}"
        )


def storage_base(
    use_drive: bool, *, modules: Mapping[str, Any] | None = None, mount_point: Path = DRIVE_MOUNT
) -> Path | None:
    """On Colab with use_drive: mount Google Drive once and return MyDrive/embedlab; elsewhere None (local disk)."""
    modules = sys.modules if modules is None else modules
    if not use_drive or "google.colab" not in modules:
        return None
    drive = modules.get("google.colab.drive") or importlib.import_module("google.colab.drive")
    if not (mount_point / "MyDrive").is_dir():
        drive.mount(str(mount_point))
    base = mount_point / DRIVE_FOLDER
    base.mkdir(parents=True, exist_ok=True)
    return base


def _storage_paths(values: dict[str, Any]) -> dict[str, Any]:
    """Relative data_dir / run_dir under Google Drive when use_drive applies (Colab), else unchanged."""
    base = storage_base(bool(values.get("use_drive", False)))
    if base is None:
        return values
    moved = {k: str(resolve_path(values[k], base)) for k in ("data_dir", "run_dir") if k in values}
    print(f"Google Drive: data_dir and run_dir live under {base} (set use_drive=False to keep them local)")
    return {**values, **moved}


@dataclass(frozen=True, eq=False)
class NotebookParams(Mapping[str, Any]):
    """A notebook's checked parameters: p["name"] as declared, p.run (paths) and one typed settings per stage."""

    notebook: str
    declared: Mapping[str, Any]
    run: RunPaths
    data: DataSettings
    train: TrainSettings | None = None
    embed: EmbedSettings | None = None
    projection: ProjectionSettings | None = None
    compare: CompareSettings | None = None
    curation: CurationSettings | None = None

    def __getitem__(self, name: str) -> Any:
        try:
            return self.declared[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not a parameter of notebook {self.notebook} (it declares: {', '.join(self.declared)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.declared)

    def __len__(self) -> int:
        return len(self.declared)

    @property
    def train_args(self) -> dict[str, Any]:
        """Keyword arguments for `embedlab.train` (every option, from this notebook's TrainSettings)."""
        if self.train is None:
            raise ParameterError(f"notebook {self.notebook} has no training settings")
        return self.train.options()

    def stages(self) -> dict[str, Settings]:
        """The settings objects this notebook has, by stage name."""
        found = {s: getattr(self, s) for s in NOTEBOOK_STAGES.get(self.notebook, ())}
        return {name: value for name, value in found.items() if value is not None}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.declared.items() if k != "run_dir")
        return f"notebook {self.notebook} · run_dir {self.run.root}\n  {shown}"


def check(namespace: Mapping[str, Any], notebook: str) -> NotebookParams:
    """Check notebook `notebook`'s parameters (taken from `namespace`, i.e. globals()) and build its settings.

    Each stage's fields present in the namespace are checked and used; missing ones keep their defaults. Notebooks
    03-06 train only when no model exists yet, with the options of their `train_if_missing` dict.
    """
    if notebook not in NOTEBOOK_STAGES:
        raise ParameterError(f"unknown notebook {notebook!r}; use one of {', '.join(NOTEBOOK_STAGES)}")
    stages = NOTEBOOK_STAGES[notebook]
    classes = [cls for cls in ALL_SETTINGS if cls.stage in stages]
    known = {*EXTRA_CHECKS, *(name for cls in classes for name in cls.names())}
    if "train_if_missing" in namespace:  # the fallback's options come from the dict, not from loose names
        known -= set(TrainSettings.names()) - {n for cls in classes if cls is not TrainSettings for n in cls.names()}
    values = validate_params(**_storage_paths({k: namespace[k] for k in namespace if k in known}))
    settings: dict[str, Settings] = {}
    for cls in classes:
        if cls is TrainSettings and "train_if_missing" in values:
            own = {"seed": values.get("seed", 0), **_train_options(values["train_if_missing"])}
        else:
            own = _train_options(values) if cls is TrainSettings else values
        settings[cls.stage] = cls.from_mapping(own)
    data = settings.pop("data", None) or DataSettings()
    run = RunPaths(values.get("run_dir", "runs/default"))
    return NotebookParams(notebook, values, run, data, **settings)  # type: ignore[arg-type]


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
    return {
        f"{d.name}/{f.name}"
        for d in folder.iterdir()
        if d.is_dir()
        for f in d.iterdir()
        if f.is_file() and not f.name.startswith(".")
    }


def _same_files(raw: Path, thumbs: Path) -> bool:
    """True when the thumbnail cache holds exactly the raw images (same relative names)."""
    return _relative_files(raw) == _relative_files(thumbs)


def show_versions() -> None:
    """Print the versions of the packages the tutorial depends on, and the device torch will use."""
    import platform
    from importlib import metadata

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
