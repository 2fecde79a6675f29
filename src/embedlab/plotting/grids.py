"""Image grids: any images with captions, example images per class, augmented views, nearest neighbours."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.plotting.common import PlottingError, class_of
from embedlab.registry import IMAGENET_MEAN, IMAGENET_STD


def _to_display(image: Any) -> np.ndarray:
    """PIL image, path, uint8 array or normalised CHW tensor -> HxWxC (or HxW) array for imshow."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as img:
            return np.asarray(img.convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.dtype.kind == "f" and (array.min() < 0 or array.max() > 1):  # ImageNet-normalised
        array = array * np.asarray(IMAGENET_STD[: array.shape[-1]]) + np.asarray(IMAGENET_MEAN[: array.shape[-1]])
    if array.dtype.kind == "f":
        array = np.clip(array, 0, 1)
    return array.squeeze()


def _report_skipped(skipped: list[tuple[str, str]], what: str) -> str:
    """Warn (DatasetWarning) naming every image a figure left out, as embed and train do; a line for the title."""
    if not skipped:
        return ""
    import warnings

    from embedlab.datasets import DatasetWarning

    names = "; ".join(f"{name} ({' '.join(str(why).split())})" for name, why in skipped)
    warnings.warn(f"{what}: skipped {len(skipped)} unreadable image(s): {names}", DatasetWarning, stacklevel=3)
    return (
        f"skipped {len(skipped)} unreadable image(s): "
        + ", ".join(name for name, _ in skipped[:3])
        + (", ..." if len(skipped) > 3 else "")
    )


def _readable(dataset: Any, index: int, skipped: list[tuple[str, str]]) -> tuple[Any, int] | None:
    """(image, label) of dataset[index], or None (recorded in `skipped`) when the file cannot be decoded."""
    from embedlab.datasets import DatasetError

    try:
        image, label, *_ = dataset[int(index)]
    except (DatasetError, OSError) as error:
        names = getattr(dataset, "filenames", None)
        skipped.append((names[int(index)] if names is not None else f"image {index}", str(error)))
        return None
    return image, int(label)


def image_grid(
    images: Sequence[Any],
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    row_labels: Sequence[str] | None = None,
    cell_size: float = 1.4,
    suptitle: str = "",
) -> Any:
    """Grid of images (PIL, paths, arrays or normalised tensors) with optional titles; returns the Figure."""
    import matplotlib.pyplot as plt

    if len(images) == 0:
        raise PlottingError("image_grid got no images")
    nrows = -(-len(images) // ncols)
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    height = nrows * (cell_size + 0.13 * title_lines) + (0.35 if suptitle else 0.1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size * ncols, height), squeeze=False, layout="constrained")
    unreadable: list[tuple[str, str]] = []
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i >= len(images):
            continue
        try:
            ax.imshow(_to_display(images[i]), cmap="gray")
        except (OSError, ValueError) as error:  # a damaged file given by path: an empty cell that says so
            unreadable.append((str(images[i]), str(error)))
            ax.set_title("unreadable", fontsize=7, color="red")
            continue
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    if row_labels is not None:
        for row, label in enumerate(row_labels[:nrows]):
            axes[row, 0].set_ylabel(str(label), rotation=0, ha="right", va="center", fontsize=8)
    note = _report_skipped(unreadable, "image_grid")
    suptitle = "\n".join(t for t in (suptitle, note) if t)
    if suptitle:
        fig.suptitle(textwrap.fill(suptitle, int(12 * cell_size * ncols), replace_whitespace=False), fontsize=10)
    return fig


def _per_class(dataset: Any, per_class: int, seed: int) -> list[tuple[str, list[int], list[int]]]:
    """Pick up to `per_class` random indices of every class of an ImageFolder-like dataset, plus the class's other
    images in random order (stand-ins for a picked image that cannot be decoded)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    rows = []
    for index, name in enumerate(dataset.classes):
        members = np.flatnonzero(labels == index)
        if len(members):
            chosen = sorted(rng.choice(members, size=min(per_class, len(members)), replace=False).tolist())
            rows.append((name, chosen, [int(m) for m in rng.permutation(members) if m not in chosen]))
    return rows


def samples_per_class(dataset: Any, per_class: int = 6, *, max_classes: int = 30, seed: int = 0) -> Any:
    """One row of example images per class (dataset: an ImageFolder or a dataset root folder).

    A damaged image is skipped and replaced by another of its class; the skipped files are named in a
    DatasetWarning and under the figure (as embed and train report them), never the end of the figure."""
    dataset = _as_image_folder(dataset)
    images, labels, skipped = [], [], []
    for name, indices, spare in _per_class(dataset, per_class, seed)[:max_classes]:
        row = []
        for index in [*indices, *spare]:
            if len(row) == len(indices):
                break
            if (item := _readable(dataset, index, skipped)) is not None:
                row.append(item[0])
        images += row + [None] * (per_class - len(row))
        labels.append(name)
    note = _report_skipped(skipped, str(getattr(dataset, "root", "samples_per_class")))
    return _grid_with_blanks(images, ncols=per_class, row_labels=labels, suptitle=note)


def _grid_with_blanks(
    images: list[Any],
    *,
    ncols: int,
    row_labels: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    suptitle: str = "",
) -> Any:
    """image_grid that tolerates None entries (drawn as empty cells)."""
    from PIL import Image

    blank = Image.new("RGB", (8, 8), "white")
    filled = [blank if img is None else img for img in images]
    return image_grid(filled, ncols=ncols, row_labels=row_labels, titles=titles, suptitle=suptitle)


def _as_image_folder(dataset: Any) -> Any:
    """Accept an ImageFolder or a dataset root path."""
    if isinstance(dataset, (str, os.PathLike)):
        from embedlab.datasets import ImageFolder

        return ImageFolder(dataset)
    return dataset


def _views(output: Any) -> list[Any]:
    """A transform's output as a list of views (a multi-view transform gives a list, a plain one a single image)."""
    return list(output) if isinstance(output, (list, tuple)) else [output]


def _two_views(transform: Callable[[Any], Any], image: Any) -> list[Any]:
    """Two augmented views of `image`: a one-view transform (distillation's) is called twice."""
    views = _views(transform(image))
    if len(views) < 2:
        views += _views(transform(image))
    return views[:2]


def augmented_pairs(dataset: Any, transform: Callable[[Any], Any], n: int = 6, *, seed: int = 0) -> Any:
    """For n random images: the original and two augmented views, as the self-supervised model sees them.

    A damaged image is skipped (another one is drawn) and named in a DatasetWarning and under the figure."""
    import torch

    dataset = _as_image_folder(dataset)
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False).tolist()
    spare = [int(i) for i in rng.permutation(len(dataset)) if i not in indices]
    torch.manual_seed(seed)
    images, titles, skipped = [], [], []
    for i in [*indices, *spare]:
        if len(titles) == 3 * len(indices):
            break
        if (item := _readable(dataset, i, skipped)) is None:
            continue
        image, label = item
        images += [image, *_two_views(transform, image)]
        titles += [dataset.classes[label], "view 1", "view 2"]
    if not images:
        raise PlottingError(f"none of the {len(dataset)} images could be decoded, e.g. {skipped[0][0]}")
    note = _report_skipped(skipped, str(getattr(dataset, "root", "augmented_pairs")))
    title = "original | view 1 | view 2" + (f"\n{note}" if note else "")
    return image_grid(images, titles=titles, ncols=6, suptitle=title)


def nearest_neighbor_grid(
    vectors: Any,
    filenames: Sequence[str],
    image_root: str | os.PathLike[str],
    queries: Sequence[int],
    *,
    k: int = 5,
    centre: bool = True,
) -> Any:
    """Each row: a query image, then its k nearest neighbours (titles: rank, class, cosine similarity).

    With centre=True the mean vector is subtracted first: raw CNN features all point into one corner, so every raw
    cosine similarity is 0.9 or more; centred ones run from about -1 (opposite) through 0 (unrelated) to 1.
    """
    import torch

    matrix = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    if len(matrix) != len(filenames):
        raise PlottingError(f"{len(matrix)} vectors but {len(filenames)} filenames")
    if centre:
        matrix = matrix - matrix.mean(dim=0, keepdim=True)
    matrix = torch.nn.functional.normalize(matrix, dim=1)
    k = min(k, len(matrix) - 1)
    root = Path(image_root)
    images, titles = [], []
    for q in queries:
        sims = matrix @ matrix[int(q)]
        sims[int(q)] = -2.0
        top = torch.topk(sims, k).indices.tolist()
        images.append(root / filenames[int(q)])
        titles.append(f"query\n{class_of(filenames[int(q)])}")
        for rank, j in enumerate(top, 1):
            images.append(root / filenames[j])
            titles.append(f"#{rank} {class_of(filenames[j])}\n{sims[j]:+.2f}")
    what = (
        "centred cosine similarity (mean vector subtracted; 0 = unrelated, 1 = same direction)"
        if centre
        else "cosine similarity (1 = same direction)"
    )
    return image_grid(images, titles=titles, ncols=k + 1, suptitle=f"nearest neighbours, ranked by {what}")
