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

from embedlab.paths import DRIVE_MOUNT
from embedlab.rundir import MissingInputError, RunDir
from embedlab.settings import (
    ALL_SETTINGS,
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
    _str,
    base_dir,
    field_check,
    find_project_root,
    resolve_path,
)

__all__ = [
    "NOTEBOOK_STAGES",
    "PROJECTION_METHODS",
    "ROOT_ENV",
    "MissingInputError",
    "NotebookParams",
    "ParameterError",
    "RunDir",
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
DRIVE_FOLDER = Path("MyDrive") / "embedlab"


def _train_if_missing(name: str, value: Any) -> dict[str, Any]:
    """A dict of TrainSettings options (plus max_train_minutes) for the model a notebook trains when none exists;
    its values are checked when check() builds the notebook's TrainSettings from it."""
    if not isinstance(value, Mapping):
        raise ParameterError(f"parameter {name!r}: expected a dict of training options, got {value!r}")
    return dict(value)


def _url(name: str, value: Any) -> str | None:
    """None, or where a published run archive is (standalone.pack_run): an http(s) address, or a local file such as
    a download or a file on Google Drive (/content/drive/MyDrive/...)."""
    if value is None or (isinstance(value, str) and value.startswith(("http://", "https://"))):
        return value
    if isinstance(value, (str, os.PathLike)) and "://" not in str(value) and str(value).strip():
        return str(Path(value).expanduser())
    raise ParameterError(
        f"parameter {name!r}: expected None, an http(s):// address or the path of a results archive, got {value!r}"
    )


def _runs(name: str, value: Any) -> list[Path]:
    """Other runs to compare with (notebook 05): a list of run folders or results archives, paths resolved."""
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"parameter {name!r}: expected a list of run folders or results archives, got {value!r}")
    return [_path(name, item) for item in value]


def _preset(name: str, value: Any) -> str | None:
    """None, a shipped preset name (embedlab.course.presets) or the path of a YAML parameter file."""
    from embedlab.course.presets import PresetError, preset_path

    if value is None:
        return None
    try:
        preset_path(_str(name, value))
    except PresetError as error:
        raise ParameterError(f"parameter {name!r}: {error}") from None
    return str(value)


# Notebook-level names that are no stage's field: the run, Google Drive, and the notebook's spelling of a cap.
EXTRA_CHECKS = {
    "preset": _preset,
    "run_dir": _path,
    "use_drive": _bool,
    "max_train_minutes": _float(0.0, optional=True, strict=True),
    "train_if_missing": _train_if_missing,
    "pretrained_url": _url,
    "compare_runs": _runs,
}


def _train_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook names -> train() options: max_train_minutes (what a learner thinks in) becomes max_time seconds."""
    options = {k: v for k, v in values.items() if k != "max_train_minutes"}
    minutes = values.get("max_train_minutes")
    if minutes is not None and "max_time" not in options:
        options["max_time"] = 60 * float(minutes)
    return options


def validate_params(**params: Any) -> dict[str, Any]:
    """Check every known parameter with its one declared check and resolve paths; unknown names pass unchanged."""
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


def _storage_paths(values: dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """A relative run_dir under Google Drive when use_drive applies (Colab), and the Drive folder (else None).

    The raw dataset stays on the runtime's local disk (gigabytes of small files are slow through the Drive mount
    and fill a free Drive); its thumbnail cache, the run directory and results archives go to Drive, so a fresh
    runtime finds the thumbnails and results of the earlier notebooks.
    """
    base = storage_base(bool(values.get("use_drive", False)))
    if base is None:
        return values, None
    moved = {k: str(resolve_path(values[k], base)) for k in ("run_dir",) if k in values}
    print(f"Google Drive: run_dir and thumbnails live under {base}; the raw images stay on this runtime's disk")
    return {**values, **moved}, base


@dataclass(frozen=True, eq=False)
class NotebookParams(Mapping[str, Any]):
    """A notebook's checked parameters: p["name"] as declared, p.run (paths) and one typed settings per stage."""

    notebook: str
    declared: Mapping[str, Any]
    run: RunDir
    data: DataSettings
    train: TrainSettings | None = None
    embed: EmbedSettings | None = None
    projection: ProjectionSettings | None = None
    compare: CompareSettings | None = None
    curation: CurationSettings | None = None
    drive: Path | None = None  # the Google Drive folder (Colab with use_drive), else None

    def thumbnail_dir(self, root: str | os.PathLike[str]) -> Path:
        """Where the thumbnail cache of dataset `root` goes: on Drive when used (it survives the runtime), else
        next to the dataset (<data_dir>/<name>/thumbnails-<px>)."""
        from embedlab.datasets import thumbnail_root

        size = self.data.thumbnail_size
        if self.drive is None:
            return thumbnail_root(root, size)
        return self.drive / "thumbnails" / f"{Path(root).resolve().parent.name}-{size}"

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
    given = with_preset({k: namespace[k] for k in namespace if k in known}, notebook)
    raw, drive = _storage_paths({k: v for k, v in given.items() if k in known})
    extras = {k: EXTRA_CHECKS[k](k, v) for k, v in raw.items() if k in EXTRA_CHECKS}
    settings: dict[str, Settings] = {}
    for cls in classes:  # each stage's settings check its own fields: the one check of each value
        if cls is TrainSettings and "train_if_missing" in extras:
            settings[cls.stage] = _fallback_training(extras["train_if_missing"], raw.get("seed", 0))
        else:
            settings[cls.stage] = cls.from_mapping(_train_options(raw) if cls is TrainSettings else raw)
    checked = {name: getattr(s, name) for s in settings.values() for name in s.names() if name in raw}
    values = {k: extras.get(k, checked.get(k, v)) for k, v in raw.items()}
    data = settings.pop("data", None) or DataSettings()
    run = RunDir(values.get("run_dir", "runs/default"))
    return NotebookParams(notebook, values, run, data, drive=drive, **settings)  # type: ignore[arg-type]


def with_preset(values: Mapping[str, Any], notebook: str) -> dict[str, Any]:
    """A notebook's values with its `preset` expanded: the preset replaces the notebook's defaults, and every value
    that differs from the notebook's own default (changed by the learner, or injected by papermill) wins."""
    preset = _preset("preset", values.get("preset"))
    if preset is None:
        return dict(values)
    from embedlab.course.presets import load_preset, notebook_defaults

    defaults = notebook_defaults().get(notebook, {})
    changed = {k: v for k, v in values.items() if k not in defaults or v != defaults[k]}
    chosen = _for_method(load_preset(preset), changed)
    if "train_if_missing" in values and "train_if_missing" not in changed:  # 03-06: the preset's training recipe
        names = {*TrainSettings.names(), "max_train_minutes"} - {"seed"}
        chosen["train_if_missing"] = {k: v for k, v in chosen.items() if k in names}
    return {**values, **chosen, **changed}


def _for_method(preset: dict[str, Any], changed: Mapping[str, Any]) -> dict[str, Any]:
    """The preset without the method options (a teacher, ...) that the method finally chosen does not read: a
    learner who picks method='simclr' under the demo preset is not told that SimCLR ignores its teacher."""
    from embedlab.registry import method_options, method_spec

    method = changed.get("method", preset.get("method"))
    try:
        reads = method_spec(str(method)).reads if method is not None else ()
    except KeyError:
        return preset  # an unknown method: TrainSettings names it in one line
    return {k: v for k, v in preset.items() if k not in method_options() or k in reads or method is None}


def _fallback_training(options: Mapping[str, Any], seed: Any) -> TrainSettings:
    """The TrainSettings of `train_if_missing` (every key must be a training option); errors name the dict."""
    try:
        return TrainSettings.from_mapping({"seed": seed, **_train_options(options)}, strict=True)
    except ParameterError as error:
        raise ParameterError(f"parameter 'train_if_missing': {error}") from None


def show_versions() -> None:
    """Print the versions of the installed packages the tutorial uses, and the device torch will use.

    Packages that are not installed are left out: the notebook runner (papermill) is an extra that Colab and Jupyter
    do not need, and a line saying "not installed" reads like an error there.
    """
    import platform
    from importlib import metadata

    names = ("embedlab", "torch", "torchvision", "lightly", "pytorch-lightning", "umap-learn", "bokeh", "papermill")
    parts = [f"python {platform.python_version()}"]
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    print(" | ".join(parts))
    import torch

    device = f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}")
