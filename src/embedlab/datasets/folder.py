"""ImageFolder: the images of ``root/<class>/<file>`` as (image, label, filename), bad files skipped and reported."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedlab.datasets.errors import DatasetError, DatasetWarning, name_skipped
from embedlab.datasets.images import _probe, _visible, open_rgb


def _check_limit(limit: int | None) -> None:
    """Refuse a limit that would select nothing."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive number of images per class or None, got {limit!r}")


UNLABELED = "unlabeled"
SUBSTITUTED = -1  # the label of a stand-in for a file that failed to decode (on_error="substitute")
VERIFY_MODES = ("header", "full", "none")
_SUBSTITUTE_TRIES = 64
LEFT_OUT = ".skipped.json"  # in a subset made by prepare(limit=...): the unusable files of the folder it came from


def _left_out(root: Path) -> list[tuple[str, str]]:
    """The unusable files a subset was made without (prepare lists them in it): reported as this folder's own
    skips, so that every later skip list names them too."""
    path = root / LEFT_OUT
    if not path.is_file():
        return []
    try:
        return [(str(e["filename"]), str(e["reason"])) for e in json.loads(path.read_text("utf-8"))["skipped"]]
    except (ValueError, KeyError, TypeError):
        return []


def _walk_files(folder: str, prefix: str) -> list[str]:
    """Relative paths ('/' separators) of the visible files under ``folder``, recursively, sorted."""
    found: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not _visible(entry.name):
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_dir():
                found.extend(_walk_files(entry.path, rel + "/"))
            elif entry.is_file():
                found.append(rel)
    return sorted(found)


class ImageFolder:
    """Images in ``root/<class>/<file>`` as (image, label, filename); bad files are skipped and reported.

    Classes are the sorted visible subfolders; files are sorted within each class; filenames are relative to
    ``root`` with '/' separators. Every image becomes RGB (see to_rgb). At scan time each file's header is
    checked (``verify="header"``, ~0.1 ms per file) or fully decoded (``verify="full"``); skipped files are in
    ``.skipped`` and announced with a DatasetWarning. A file that still fails to decode in ``__getitem__``
    (damaged after its header) raises DatasetError naming it; with ``on_error="substitute"`` (what training
    uses, so one bad file cannot end an epoch) the next readable image stands in for it and the label is
    ``SUBSTITUTED`` (-1), so the caller can report the filename: never a silent substitution.
    A folder of loose images without class subfolders is one class named "unlabeled" (``labeled`` is False).
    It is a map-style dataset: use it with torch's DataLoader, Subset or random_split.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        limit_per_class: int | None = None,
        verify: str = "header",
        on_error: str = "raise",
    ) -> None:
        if verify not in VERIFY_MODES:
            raise DatasetError(f"verify must be 'header', 'full' or 'none', got {verify!r}")
        if on_error not in ("raise", "substitute"):
            raise DatasetError(f"on_error must be 'raise' or 'substitute', got {on_error!r}")
        self.on_error = on_error
        _check_limit(limit_per_class)
        self.root = _check_folder(root)
        self.transform = transform
        self.skipped: list[tuple[str, str]] = _left_out(self.root)
        per_class = self._scan(verify)
        self.classes: list[str] = sorted(per_class)
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.filenames: list[str] = []
        self.labels: list[int] = []
        for name in self.classes:
            files = per_class[name] if limit_per_class is None else per_class[name][:limit_per_class]
            self.filenames.extend(files)
            self.labels.extend([self.class_to_idx[name]] * len(files))
        if self.skipped:
            warnings.warn(
                f"{self.root}: skipped {len(self.skipped)} file(s) that are not usable images: "
                f"{name_skipped(self.skipped, '.skipped')}",
                DatasetWarning,
                stacklevel=2,
            )

    def _scan(self, verify: str) -> dict[str, list[str]]:
        """Find class folders and their readable images; record everything skipped with a reason."""
        with os.scandir(self.root) as entries:
            visible = sorted((e for e in entries if _visible(e.name)), key=lambda e: e.name)
        class_dirs = [e for e in visible if e.is_dir()]
        loose = [e.name for e in visible if e.is_file()]
        if class_dirs:
            self.labeled = True
            candidates = {e.name: _walk_files(e.path, e.name + "/") for e in class_dirs}
            self.skipped.extend((name, "not inside a class folder") for name in loose)
        else:
            self.labeled = False
            candidates = {UNLABELED: loose}
        per_class: dict[str, list[str]] = {}
        for name, files in candidates.items():
            good = self._verified(files, verify)
            if good:
                per_class[name] = good
            elif self.labeled:
                self.skipped.append((name + "/", "class folder has no readable images"))
        if not per_class:
            examples = "; ".join(f"{rel} ({why})" for rel, why in self.skipped[:3])
            raise DatasetError(
                f"no readable images in {self.root} ({len(self.skipped)} file(s) skipped: {examples or 'none'}). "
                f"Expected {self.root}/<class>/<image> (or images directly inside it)."
            )
        return per_class

    def _verified(self, files: list[str], verify: str) -> list[str]:
        """The files that pass the chosen check; the others go to ``.skipped``."""
        if verify == "none":
            return files
        good = []
        for rel in files:
            reason = _probe(os.path.join(self.root, rel), verify == "full")
            if reason is None:
                good.append(rel)
            else:
                self.skipped.append((rel, reason))
        return good

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        """(image, label, filename): the RGB image (or transform(image)), the class index, the relative path."""
        filename = self.filenames[index]
        try:
            image, label = open_rgb(self.root / filename), self.labels[index]
        except DatasetError:
            if self.on_error == "raise":
                raise
            image, label = self._substitute(index), SUBSTITUTED
        return (self.transform(image) if self.transform else image), label, filename

    def _substitute(self, index: int) -> Image.Image:
        """The next image after ``index`` that decodes (wrapping around): a stand-in for a damaged file."""
        tries = min(len(self), _SUBSTITUTE_TRIES)
        for step in range(1, tries):
            with contextlib.suppress(DatasetError):
                return open_rgb(self.root / self.filenames[(index + step) % len(self)])
        raise DatasetError(
            f"{self.root / self.filenames[index]} and the {tries - 1} images after it cannot be "
            "decoded: check the folder (ImageFolder(..., verify='full') lists every bad file)"
        )

    @property
    def targets(self) -> list[int]:
        """Class index per image (torchvision's name for ``labels``)."""
        return self.labels

    @property
    def paths(self) -> list[Path]:
        """Absolute path per image."""
        return [self.root / f for f in self.filenames]

    def class_counts(self) -> dict[str, int]:
        """Number of images per class, in class order."""
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    def subset(self, limit_per_class: int) -> list[str]:
        """Filenames of the first ``limit_per_class`` images of each class (balanced, deterministic)."""
        _check_limit(limit_per_class)
        taken: dict[int, int] = {}
        chosen = []
        for filename, label in zip(self.filenames, self.labels):
            if taken.get(label, 0) < limit_per_class:
                taken[label] = taken.get(label, 0) + 1
                chosen.append(filename)
        return chosen

    def __repr__(self) -> str:
        return (
            f"ImageFolder(root={str(self.root)!r}, images={len(self)}, classes={len(self.classes)}, "
            f"skipped={len(self.skipped)})"
        )


def _check_folder(root: str | os.PathLike[str]) -> Path:
    """Return ``root`` as an existing folder, or raise DatasetError naming what is wrong with it."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset folder {path} does not exist (use embedlab.datasets.prepare(...) to make one)")
    if not path.is_dir():
        raise DatasetError(f"{path} is a file, not a folder of images")
    with os.scandir(path) as entries:
        if not any(_visible(e.name) for e in entries):
            raise DatasetError(f"dataset folder {path} is empty: expected {path}/<class>/<image>")
    return path
