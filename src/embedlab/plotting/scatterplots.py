"""Class-coloured 2-D scatter plots: one panel or several side by side, class names at their medians."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embedlab.plotting.common import PlottingError, _check_points, _label_names, class_palette, wrap_at_commas


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
