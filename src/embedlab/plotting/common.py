"""What every figure shares: the error type, class colours, label checks, `class_of`, `wrap_at_commas`, saving.

Colours come from `class_palette`: class names sorted, then a fixed list of 60 distinct colours, so a class
keeps its colour in every figure and every run (the published tutorial built the map from a `set`, and its
20 colours repeated for 30 classes).
"""

from __future__ import annotations

import colorsys
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab._io import atomic_path


class PlottingError(ValueError):
    """Plot inputs do not fit together (lengths, labels, missing images...)."""


def _base_colors() -> list[str]:
    """60 distinct colours: tab10, then the light halves of tab20, then tab20b and tab20c by hue blocks."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    tab20 = [to_hex(c) for c in colormaps["tab20"].colors]
    tab20b = [to_hex(c) for c in colormaps["tab20b"].colors]
    tab20c = [to_hex(c) for c in colormaps["tab20c"].colors]
    ordered = tab20[0::2] + tab20[1::2]
    for table in (tab20b, tab20c):  # darkest of each hue block first, then the next shades
        ordered += [table[i + shade] for shade in range(4) for i in range(0, 20, 4)]
    unique: list[str] = []
    for colour in ordered:
        if colour not in unique:
            unique.append(colour)
    return unique


def _extra_colors(n: int) -> list[str]:
    """Deterministic extra colours past the 60 base ones (golden-ratio hue steps)."""
    colours = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hls_to_rgb(hue, 0.45 + 0.15 * (i % 3) / 2, 0.75)
        colours.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return colours


def class_palette(class_names: Sequence[str]) -> dict[str, str]:
    """Map each class name to a hex colour: sorted names, distinct colours, identical in every run."""
    names = sorted({str(c) for c in class_names})
    colours = _base_colors()
    if len(names) > len(colours):
        colours += _extra_colors(len(names) - len(colours))
    return {name: colours[i] for i, name in enumerate(names)}


def _label_names(labels: Any, class_names: Sequence[str] | None) -> np.ndarray:
    """Turn integer labels (indices into class_names) or string labels into an array of class-name strings."""
    array = np.asarray(labels)
    if array.dtype.kind in "iu":
        if class_names is None:
            return array.astype(str)
        if len(array) and (array.min() < 0 or array.max() >= len(class_names)):
            raise PlottingError(
                f"labels run from {array.min()} to {array.max()} but there are {len(class_names)} class names"
            )
        return np.asarray(class_names, dtype=object)[array].astype(str)
    return array.astype(str)


def _check_points(points: Any, n_labels: int) -> np.ndarray:
    """Validate a [N, 2] points array against the number of labels."""
    array = np.asarray(points, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 2:
        raise PlottingError(f"points must have shape [N, 2], got {array.shape}")
    if len(array) != n_labels:
        raise PlottingError(f"{len(array)} points but {n_labels} labels: they must describe the same images")
    return array


def class_of(filename: str) -> str:
    """The class folder of a dataset-relative filename ("<Class>/<file>"), or "" for a flat filename."""
    return filename.split("/", 1)[0] if "/" in filename else ""


def wrap_at_commas(text: str, width: int) -> str:
    """Break a recipe name ("SimCLR continued from ImageNet, EfficientNet-Lite0, 32 px") into lines at its commas,
    each line at most `width` characters where the parts allow (a longer part is wrapped at spaces)."""
    lines: list[str] = []
    for part in text.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines += textwrap.wrap(part, width) or [""]
    return "\n".join(lines)


class SavedFigurePath(type(Path())):  # type: ignore[misc]
    """The path of a saved figure; shows nothing as a notebook cell's last value (the figure is the output)."""

    def _ipython_display_(self) -> None:
        """Display nothing (IPython would otherwise echo PosixPath('...') under every figure)."""


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Save a matplotlib figure (format from the suffix, PNG by default), atomically; returns its path."""
    target = SavedFigurePath(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return target
