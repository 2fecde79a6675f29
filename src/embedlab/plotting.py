"""Figures: class-coloured scatter plots, side-by-side panels, image grids, loss curves and interactive HTML.

Colours come from `class_palette`: class names sorted, then a fixed list of 60 distinct colours, so a class
keeps its colour in every figure and every run (the published tutorial built the map from a `set`, and its
20 colours repeated for 30 classes). Every figure is written atomically with `save_figure`.
"""

from __future__ import annotations

import base64
import colorsys
import html
import io
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab._io import atomic_open, atomic_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PlottingError(ValueError):
    """Plot inputs do not fit together (lengths, labels, missing images...)."""


# ----------------------------------------------------------------------------------------------- colours
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


# ----------------------------------------------------------------------------------------------- scatter
def _draw_scatter(
    ax: Any,
    points: np.ndarray,
    names: np.ndarray,
    palette: Mapping[str, str],
    size: float | None,
    alpha: float,
    seed: int,
) -> None:
    """Draw all points in one shuffled call so no class is always painted on top."""
    order = np.random.default_rng(seed).permutation(len(points))
    colours = [palette[n] for n in names[order]]
    s = size if size is not None else float(np.clip(3000 / max(len(points), 1), 2, 40))
    ax.scatter(points[order, 0], points[order, 1], c=colours, s=s, alpha=alpha, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(target: Any, palette: Mapping[str, str], present: Sequence[str], *, figure_level: bool) -> None:
    """Legend outside the plot area (right side), one marker per class, two columns past 20 classes."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=palette[n], label=n, markersize=7) for n in present]
    ncol = 1 if len(present) <= 20 else 2
    if figure_level:
        target.legend(
            handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), ncol=ncol, frameon=False, fontsize="small"
        )
    else:
        target.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            ncol=ncol,
            frameon=False,
            fontsize="small",
            borderaxespad=0.0,
        )


def annotate_classes(ax: Any, points: np.ndarray, names: np.ndarray, *, fontsize: float | None = None) -> list[Any]:
    """Write each class name at the median of its points (white outline), so a projected map needs no legend lookup."""
    from matplotlib import patheffects

    classes = sorted(set(names))
    size = fontsize or (9 if len(classes) <= 12 else 7.5 if len(classes) <= 24 else 6.5)
    outline = [patheffects.withStroke(linewidth=2.5, foreground="white", alpha=0.9)]
    texts = []
    for name in classes:
        x, y = np.median(points[names == name], axis=0)
        texts.append(
            ax.text(
                x, y, name, fontsize=size, ha="center", va="center", weight="bold", path_effects=outline, clip_on=True
            )
        )
    return texts


def _spread_labels(ax: Any, texts: Sequence[Any], iterations: int = 60) -> None:
    """Nudge overlapping labels apart vertically (a few pixels at a time) so 30 class names stay readable.

    Call it once the figure's layout is final: it works in display coordinates. Labels end inside the axes."""
    if not texts:
        return
    ax.autoscale_view()
    renderer = ax.figure.canvas.get_renderer()
    to_data = ax.transData.inverted()
    _keep_inside(ax, texts, renderer)
    for _ in range(iterations if len(texts) > 1 else 0):
        boxes = [t.get_window_extent(renderer) for t in texts]
        shifts = np.zeros(len(texts))
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                a, b = boxes[i], boxes[j]
                if a.x1 < b.x0 or b.x1 < a.x0 or a.y1 < b.y0 or b.y1 < a.y0:
                    continue
                push = (min(a.y1, b.y1) - max(a.y0, b.y0)) / 2 + 1
                up = 1.0 if (a.y0 + a.y1) >= (b.y0 + b.y1) else -1.0
                shifts[i] += up * push
                shifts[j] -= up * push
        if not shifts.any():
            return
        for text, shift in zip(texts, shifts):
            if shift:
                x, y = ax.transData.transform(text.get_position())
                text.set_position(to_data.transform((x, y + float(np.clip(shift, -6, 6)))))
        _keep_inside(ax, texts, renderer)


def _keep_inside(ax: Any, texts: Sequence[Any], renderer: Any, margin: float = 2.0) -> None:
    """Move labels that stick out of the axes (a cluster at the edge) back inside, so none is cut off."""
    frame = ax.get_window_extent(renderer)
    to_data = ax.transData.inverted()
    for text in texts:
        box = text.get_window_extent(renderer)
        dx = max(0.0, frame.x0 + margin - box.x0) - max(0.0, box.x1 - (frame.x1 - margin))
        dy = max(0.0, frame.y0 + margin - box.y0) - max(0.0, box.y1 - (frame.y1 - margin))
        if dx or dy:
            x, y = ax.transData.transform(text.get_position())
            text.set_position(to_data.transform((x + dx, y + dy)))


def scatter(
    points: Any,
    labels: Any,
    class_names: Sequence[str] | None = None,
    *,
    title: str = "",
    ax: Any = None,
    palette: Mapping[str, str] | None = None,
    size: float | None = None,
    alpha: float = 0.8,
    legend: bool = True,
    annotate: bool = True,
    seed: int = 0,
) -> Any:
    """Class-coloured 2-D scatter, class names at their medians, legend outside the axes; returns the Figure."""
    import matplotlib.pyplot as plt

    names = _label_names(labels, class_names)
    array = _check_points(points, len(names))
    palette = palette or class_palette(class_names if class_names is not None else names)
    missing = sorted(set(names) - set(palette))
    if missing:
        raise PlottingError(f"palette has no colour for class(es) {missing[:5]}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 6))
    _draw_scatter(ax, array, names, palette, size, alpha, seed)
    labels = annotate_classes(ax, array, names) if annotate else []
    ax.set_title(title)
    if legend:
        _legend(ax, palette, sorted(set(names)), figure_level=False)
    ax.figure.tight_layout()
    _spread_labels(ax, labels)
    return ax.figure


def side_by_side(
    panels: Mapping[str, Any],
    labels: Any,
    class_names: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    palette: Mapping[str, str] | None = None,
    size: float | None = None,
    panel_size: float = 4.5,
    annotate: bool = True,
    seed: int = 0,
) -> Any:
    """One scatter panel per named 2-D projection of the same images (class names at their medians), one legend."""
    import matplotlib.pyplot as plt

    if not panels:
        raise PlottingError("side_by_side needs at least one panel")
    names = _label_names(labels, class_names)
    palette = palette or class_palette(class_names if class_names is not None else names)
    ncols = ncols or min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False)
    labels = {}
    for ax, (title, points) in zip(axes.flat, panels.items()):
        array = _check_points(points, len(names))
        _draw_scatter(ax, array, names, palette, size, 0.8, seed)
        labels[ax] = annotate_classes(ax, array, names) if annotate else []
        ax.set_title(wrap_at_commas(title, 42), fontsize=10)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    for ax, texts in labels.items():
        _spread_labels(ax, texts)
    _legend(fig, palette, sorted(set(names)), figure_level=True)
    return fig


# ----------------------------------------------------------------------------------------------- images
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
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i >= len(images):
            continue
        ax.imshow(_to_display(images[i]), cmap="gray")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    if row_labels is not None:
        for row, label in enumerate(row_labels[:nrows]):
            axes[row, 0].set_ylabel(str(label), rotation=0, ha="right", va="center", fontsize=8)
    if suptitle:
        fig.suptitle(textwrap.fill(suptitle, int(12 * cell_size * ncols)), fontsize=10)
    return fig


def _per_class(dataset: Any, per_class: int, seed: int) -> list[tuple[str, list[int]]]:
    """Pick up to `per_class` random indices of every class of an ImageFolder-like dataset."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset.labels)
    rows = []
    for index, name in enumerate(dataset.classes):
        members = np.flatnonzero(labels == index)
        if len(members):
            rows.append((name, sorted(rng.choice(members, size=min(per_class, len(members)), replace=False).tolist())))
    return rows


def samples_per_class(dataset: Any, per_class: int = 6, *, max_classes: int = 30, seed: int = 0) -> Any:
    """One row of example images per class (dataset: an ImageFolder or a dataset root folder)."""
    dataset = _as_image_folder(dataset)
    rows = _per_class(dataset, per_class, seed)[:max_classes]
    images, labels = [], []
    for name, indices in rows:
        images += [dataset[i][0] for i in indices] + [None] * (per_class - len(indices))
        labels.append(name)
    return _grid_with_blanks(images, ncols=per_class, row_labels=labels)


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


def augmented_pairs(dataset: Any, transform: Callable[[Any], Sequence[Any]], n: int = 6, *, seed: int = 0) -> Any:
    """For n random images: the original and two augmented views, as the self-supervised model sees them."""
    import torch

    dataset = _as_image_folder(dataset)
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    torch.manual_seed(seed)
    images, titles = [], []
    for i in indices:
        image, label, _ = dataset[int(i)]
        views = list(transform(image))[:2]
        images += [image, *views]
        titles += [dataset.classes[label], "view 1", "view 2"]
    return image_grid(images, titles=titles, ncols=6, suptitle="original | view 1 | view 2")


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
        titles.append(f"query\n{_class_of(filenames[int(q)])}")
        for rank, j in enumerate(top, 1):
            images.append(root / filenames[j])
            titles.append(f"#{rank} {_class_of(filenames[j])}\n{sims[j]:+.2f}")
    what = (
        "centred cosine similarity (mean vector subtracted; 0 = unrelated, 1 = same direction)"
        if centre
        else "cosine similarity (1 = same direction)"
    )
    return image_grid(images, titles=titles, ncols=k + 1, suptitle=f"nearest neighbours, ranked by {what}")


def _class_of(filename: str) -> str:
    """Class name of a dataset-relative filename ("<Class>/<file>")."""
    return filename.split("/", 1)[0]


def _training_config(loss_csv: Path) -> dict[str, Any]:
    """The run's config.json next to loss.csv (batch size, method), or {} when there is none."""
    import json

    config = Path(loss_csv).with_name("config.json")
    try:
        return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    except (OSError, ValueError):
        return {}


def contrastive_chance_level(batch_size: int) -> float:
    """SimCLR's loss when the model guesses: the partner is one of 2B-1 candidates, so log(2B-1)."""
    return float(np.log(2 * batch_size - 1))


def loss_curve(
    loss_csv: str | os.PathLike[str],
    epochs_csv: str | os.PathLike[str] | None = None,
    *,
    batch_size: int | None = None,
    method: str | None = None,
) -> Any:
    """Training loss per step (raw and smoothed), SimCLR's chance level log(2B-1) and, when logged, the kNN monitor.

    batch_size and method default to the run's config.json next to loss.csv; one legend below the axes.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    steps = pd.read_csv(loss_csv)
    if steps.empty:
        raise PlottingError(f"{loss_csv} has no rows: training logged no steps")
    config = _training_config(Path(loss_csv))
    batch_size = batch_size or config.get("global_batch_size") or config.get("batch_size")
    method = method or config.get("method")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.arange(1, len(steps) + 1)
    window = max(1, len(steps) // 20)
    ax.plot(
        x,
        steps["loss"],
        color="tab:blue",
        alpha=0.25 if window > 1 else 1.0,
        linewidth=1 if window > 1 else 2,
        label="loss per step",
    )
    if window > 1:
        ax.plot(
            x,
            steps["loss"].rolling(window, min_periods=1).mean(),
            color="tab:blue",
            linewidth=2,
            label=f"loss, smoothed over {window} steps",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if batch_size and method == "simclr":
        chance = contrastive_chance_level(int(batch_size))
        ax.axhline(
            chance,
            color="gray",
            linestyle="--",
            linewidth=1,
            label=f"chance: log(2B−1) = {chance:.2f} (B = {batch_size})",
        )
        ax.set_ylim(0, max(chance, float(steps["loss"].max())) * 1.05)
    ax.set_xlabel("training step")
    ax.set_ylabel("contrastive loss" if method in ("simclr", "moco", None) else "training loss")
    handles, labels = ax.get_legend_handles_labels()
    if epochs_csv is not None and Path(epochs_csv).exists():
        epochs = pd.read_csv(epochs_csv)
        if "knn_accuracy" in epochs and epochs["knn_accuracy"].notna().any():
            twin = ax.twinx()
            ends = epochs["steps"].cumsum() if "steps" in epochs else x[-1] * (epochs.index + 1) / len(epochs)
            twin.plot(ends, epochs["knn_accuracy"], "o-", color="tab:green", label="kNN accuracy (monitor, right axis)")
            twin.set_ylabel("kNN accuracy", color="tab:green")
            twin.set_ylim(0, 1)
            more_handles, more_labels = twin.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
    ax.set_title("self-supervised training")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


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


METRIC_LABELS = {
    "knn_accuracy": "kNN accuracy",
    "linear_probe_accuracy": "linear probe accuracy",
    "cluster_nmi": "cluster NMI",
}
KIND_COLOURS = {"self-supervised": "tab:orange", "ImageNet": "tab:blue", "floor": "tab:gray"}


def metrics_chart(
    table: Any, *, chance: float | None = None, title: str = "How good is each embedding?", label_width: int = 34
) -> Any:
    """One panel per metric (kNN, linear probe, NMI), one bar per embedding set named by its recipe, best on top.

    Bars are coloured by kind (self-supervised / ImageNet / floor); `chance` (1 / classes) is drawn on the two
    accuracy panels only (NMI's chance level is 0).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = table.to_dict("records")[::-1]  # barh draws bottom-up: the best row ends on top
    names = [wrap_at_commas(str(r.get("recipe") or r["name"]), label_width) for r in rows]
    colours = [KIND_COLOURS.get(str(r.get("kind")), "tab:purple") for r in rows]
    height = 0.9 + 0.42 * len(rows) * max(n.count("\n") + 1 for n in names)
    fig, axes = plt.subplots(1, len(METRIC_LABELS), figsize=(12, height), sharey=True)
    positions = np.arange(len(rows))
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items()):
        values = [float(r[metric]) for r in rows]
        ax.barh(positions, values, color=colours, height=0.7)
        for y, value in zip(positions, values):
            ax.text(value + 0.01, y, f"{value:.3f}", va="center", fontsize=8)
        if chance is not None and metric != "cluster_nmi":
            ax.axvline(chance, color="black", linestyle=":", linewidth=1)
            ax.text(chance, len(rows) - 0.45, " chance", fontsize=7, va="bottom")
        ax.set_xlim(0, 1.12)
        ax.set_title(label, fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(positions, names, fontsize=8)
    kinds = [k for k in KIND_COLOURS if any(r.get("kind") == k for r in rows)]
    if kinds:
        fig.legend(
            [Patch(color=KIND_COLOURS[k]) for k in kinds],
            kinds,
            loc="upper center",
            ncol=len(kinds),
            bbox_to_anchor=(0.5, 0.0),
            frameon=False,
            fontsize="small",
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def classifier_curve(result: Any) -> Any:
    """Loss and training accuracy per epoch of `train_classifier`, with the held-out accuracy, probe and chance."""
    import matplotlib.pyplot as plt

    history = list(getattr(result, "history", []) or [])
    if not history:
        raise PlottingError("the classifier result has no training history")
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(epochs, [h["loss"] for h in history], color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy loss")
    left.set_title("training loss")
    right.plot(epochs, [h["train_accuracy"] for h in history], color="tab:blue", label="training accuracy")
    right.axhline(
        result.accuracy,
        color="tab:red",
        linestyle="--",
        label=f"held-out accuracy {result.accuracy:.3f} ({result.test_images} images)",
    )
    if getattr(result, "probe_accuracy", None) is not None:
        right.axhline(
            result.probe_accuracy,
            color="tab:green",
            linestyle="-.",
            label=f"linear probe (same split) {result.probe_accuracy:.3f}",
        )
    right.axhline(result.chance, color="gray", linestyle=":", label=f"chance {result.chance:.3f}")
    right.set_ylim(0, 1.02)
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_title(f"{result.mode} classifier")
    right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


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


# ----------------------------------------------------------------------------------------------- interactive
def thumbnail_data_uri(path: str | os.PathLike[str], size: int = 64) -> str:
    """A small JPEG of the image as a base64 data URI, so the HTML works offline and can be e-mailed."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


TOOLTIP = """
<div style="max-width: 240px">
  <img src="@thumb" alt="" style="width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated"/>
  <div style="font-size: 12px; word-break: break-all">@filename{safe}</div>
  <div style="font-size: 12px; font-weight: bold">@label{safe}</div>
</div>
"""
# `{safe}` only because filename and label are html.escape'd in the data: they show as text, never run as HTML.


def interactive_scatter(
    points: Any,
    filenames: Sequence[str],
    labels: Any,
    class_names: Sequence[str] | None,
    image_root: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    *,
    title: str = "",
    thumbnail_size: int = 64,
    point_size: float = 6.0,
) -> Path:
    """Self-contained bokeh HTML: hover shows thumbnail, filename and class; click a legend entry to hide a class."""
    from bokeh.embed import file_html
    from bokeh.models import ColumnDataSource, HoverTool, Legend, LegendItem
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    from embedlab._progress import tqdm

    names = _label_names(labels, class_names)
    array = _check_points(points, len(names))
    if len(filenames) != len(array):
        raise PlottingError(f"{len(filenames)} filenames but {len(array)} points")
    palette = class_palette(class_names if class_names is not None else names)
    root = Path(image_root)
    thumbs = [thumbnail_data_uri(root / f, thumbnail_size) for f in tqdm(filenames, desc="thumbnails", leave=False)]
    plot = figure(
        title=title,
        width=900,
        height=700,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        match_aspect=True,
    )
    items = []
    for name in sorted(set(names)):
        idx = np.flatnonzero(names == name)
        source = ColumnDataSource(
            {
                "x": array[idx, 0],
                "y": array[idx, 1],
                "thumb": [thumbs[i] for i in idx],
                "filename": [html.escape(str(filenames[i])) for i in idx],
                "label": [html.escape(name)] * len(idx),
            }
        )
        renderer = plot.scatter(
            "x", "y", source=source, size=point_size, color=palette[name], alpha=0.8, line_color=None
        )
        items.append(LegendItem(label=name, renderers=[renderer]))
    plot.add_tools(HoverTool(tooltips=TOOLTIP, renderers=[item.renderers[0] for item in items]))
    legend = Legend(items=items, click_policy="hide", label_text_font_size="9pt", spacing=0)
    plot.add_layout(legend, "right")
    plot.axis.visible = False
    plot.grid.visible = False
    document = file_html(plot, resources=INLINE, title=title or "embedlab embeddings")
    target = Path(out_html)
    with atomic_open(target, "w", encoding="utf-8") as handle:
        handle.write(document)
    return target
