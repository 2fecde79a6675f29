"""Interactive HTML: a self-contained bokeh scatter whose points show their image thumbnail on hover."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab._io import atomic_open
from embedlab.plotting.common import PlottingError, _check_points, _label_names, class_palette


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


def _class_renderers(
    plot: Any,
    array: np.ndarray,
    names: np.ndarray,
    columns: Callable[[np.ndarray], dict[str, Any]],
    palette: Mapping[str, str],
    point_size: float,
) -> list[Any]:
    """One scatter renderer per class (so the legend can hide a class); `columns(rows)` adds what hover shows."""
    from bokeh.models import ColumnDataSource, LegendItem

    items = []
    for name in sorted(set(names)):
        idx = np.flatnonzero(names == name)
        source = ColumnDataSource({"x": array[idx, 0], "y": array[idx, 1], **columns(idx)})
        renderer = plot.scatter(
            "x",
            "y",
            source=source,
            size=point_size,
            color=palette[name],
            alpha=0.8,
            line_color=None,
            name=html.escape(name),
        )
        items.append(LegendItem(label=name, renderers=[renderer]))
    return items


def _map_inputs(
    points: Any, filenames: Sequence[str], labels: Any, class_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Checked [N, 2] float32 points, class name per point and the class colours; one error line on a mismatch."""
    names = _label_names(labels, class_names)
    array = _check_points(points, len(names))
    if len(filenames) != len(array):
        raise PlottingError(f"{len(filenames)} filenames but {len(array)} points")
    return array, names, class_palette(class_names if class_names is not None else names)


def _map_plot(title: str, backend: str = "canvas") -> Any:
    """An empty map figure: no axes or grid (UMAP's axes mean nothing), wheel zoom on."""
    from bokeh.plotting import figure

    tools = "pan,wheel_zoom,box_zoom,reset,save"
    plot = figure(
        title=title,
        width=900,
        height=700,
        tools=tools,
        active_scroll="wheel_zoom",
        match_aspect=True,
        output_backend=backend,
    )
    plot.axis.visible = False
    plot.grid.visible = False
    return plot


def _add_hover_and_legend(plot: Any, items: list[Any], hover: Any) -> Any:
    """Attach `hover` to the class renderers and a legend beside the plot whose entries hide their class."""
    from bokeh.models import Legend

    hover.renderers = [item.renderers[0] for item in items]
    plot.add_tools(hover)
    plot.add_layout(Legend(items=items, click_policy="hide", label_text_font_size="9pt", spacing=0), "right")
    return plot


def map_figure(
    points: Any,
    filenames: Sequence[str],
    labels: Any,
    class_names: Sequence[str] | None,
    image_root: str | os.PathLike[str],
    *,
    title: str = "",
    thumbnail_size: int = 64,
    point_size: float = 6.0,
) -> Any:
    """The bokeh figure of the map with thumbnails inline: hover shows thumbnail, filename and class."""
    from bokeh.models import HoverTool

    from embedlab._progress import tqdm

    array, names, palette = _map_inputs(points, filenames, labels, class_names)
    root = Path(image_root)
    thumbs = [thumbnail_data_uri(root / f, thumbnail_size) for f in tqdm(filenames, desc="thumbnails", leave=False)]

    def columns(idx: np.ndarray) -> dict[str, Any]:
        return {
            "thumb": [thumbs[i] for i in idx],
            "filename": [html.escape(str(filenames[i])) for i in idx],
            "label": [html.escape(str(names[idx[0]]))] * len(idx),
        }

    plot = _map_plot(title)
    items = _class_renderers(plot, array, names, columns, palette, point_size)
    return _add_hover_and_legend(plot, items, HoverTool(tooltips=TOOLTIP))


def write_page(plot: Any, out_html: str | os.PathLike[str], title: str) -> Path:
    """The figure as one HTML file with BokehJS inline (opens offline), written atomically."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    document = file_html(plot, resources=INLINE, title=title or "embedlab embeddings")
    target = Path(out_html)
    with atomic_open(target, "w", encoding="utf-8") as handle:
        handle.write(document)
    return target


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
    thumbnails: str = "auto",
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """A bokeh HTML map: hover shows thumbnail, filename and class; click a legend entry to hide a class.

    `thumbnails="inline"` embeds them (one self-contained file; the default below LINKED_MIN_POINTS points);
    `"linked"` writes them once as JPEG files beside the page (`<page>_files/thumbs/`, resumable, `workers`
    processes) and draws with WebGL, so 100,000 points stay a page of a few MB (see embedlab.plotting.maps).
    """
    from embedlab.plotting.maps import linked_page, map_tier

    if map_tier(len(filenames), thumbnails) == "linked":
        return linked_page(
            points,
            filenames,
            labels,
            class_names,
            image_root,
            out_html,
            title=title,
            thumbnail_size=thumbnail_size,
            point_size=point_size,
            workers=workers,
            progress=progress,
        )
    plot = map_figure(
        points,
        filenames,
        labels,
        class_names,
        image_root,
        title=title,
        thumbnail_size=thumbnail_size,
        point_size=point_size,
    )
    return write_page(plot, out_html, title)


INLINE_MAX_POINTS = 2000  # about 3 MB of notebook output with 48 px thumbnails (bokeh's own script included)


def map_sample(n: int, max_points: int | None, seed: int = 0) -> np.ndarray:
    """Indices of the points an inline map shows: all of them, or a seeded random `max_points`, in order."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


class MapHTML:
    """An inline map for a notebook: rich HTML output (bokeh's script inline, so it works offline, in Colab,
    Jupyter and VS Code); `.html` holds the markup, `.points` how many points it shows of how many."""

    def __init__(self, html: str, shown: int, total: int) -> None:
        self.html, self.shown, self.total = html, shown, total

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<interactive map: {self.shown:,} of {self.total:,} points; display it in a notebook>"


def show_map(
    points: Any,
    filenames: Sequence[str],
    labels: Any,
    class_names: Sequence[str] | None,
    image_root: str | os.PathLike[str],
    out_html: str | os.PathLike[str] | None = None,
    *,
    title: str = "",
    max_points: int | None = INLINE_MAX_POINTS,
    thumbnail_size: int = 48,
    seed: int = 0,
) -> MapHTML:
    """The interactive map inside the notebook: hover a point to see its image. Past `max_points` a seeded random
    sample is shown, so the notebook stays small (the full map is the standalone HTML of `interactive_scatter`).
    `out_html` is accepted (and ignored) so the same arguments as interactive_scatter's can be passed."""
    from bokeh.embed import components
    from bokeh.resources import INLINE

    labels_array = np.asarray(labels)
    keep = map_sample(len(filenames), max_points, seed)
    shown = f"{len(keep):,} of {len(filenames):,} points" if len(keep) < len(filenames) else f"{len(keep):,} points"
    plot = map_figure(
        np.asarray(points)[keep],
        [filenames[i] for i in keep],
        labels_array[keep],
        class_names,
        image_root,
        title=f"{title} ({shown})" if title else shown,
        thumbnail_size=thumbnail_size,
    )
    script, div = components(plot)
    return MapHTML(INLINE.render() + div + script, len(keep), len(filenames))
