"""The interactive map at any size: a bokeh scatter whose points show their thumbnail on hover.

=========================  ===========================================================================
below LINKED_MIN_POINTS    "inline": one self-contained HTML file, every thumbnail a base64 data URI
from LINKED_MIN_POINTS     "linked": thumbnails once as files in ``<page>_files/thumbs/<row>.jpg``, the
                           page refers to them by relative URL and draws with WebGL
past LINKED_MAX_POINTS     also the map as a Parquet table (`export_map_table`) for a large-scale viewer
=========================  ===========================================================================

Thumbnails are named by row number, never by the image's own name, so a hostile filename never becomes a path
or markup; filenames and class names reach the page html.escape'd and are shown as text.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
import shutil
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab._io import atomic_open, remove_stale_temps
from embedlab.plotting.common import PlottingError, _check_points, _label_names, class_palette

# Inline pages cost ~2 kB and ~14 ms a point (measured on AID-sized photos), so 20,000 points already make a
# ~40 MB page written in ~5 min. Linked pages, measured by benchmarks/bench_scale.py (2 cores, headless Chromium
# drawing WebGL without a GPU): 20,000 points 106 bytes a point, first paint 1.4 s; 100,000 points 47 bytes a
# point, first paint 3.4 s, hover 0.1 s; 300,000 points 37 bytes a point, first paint 8.4 s, hover 0.17 s.
LINKED_MIN_POINTS = 20_000
# Past this the first paint passes ~5 s (interpolated between the 100,000 and 300,000 measurements above): the page
# is still written, with a warning that points to the table and a large-scale viewer (embedding-atlas).
LINKED_MAX_POINTS = 150_000
INLINE_MAX_POINTS = 2000  # about 3 MB of notebook output with 48 px thumbnails (bokeh's own script included)
THUMBNAIL_MODES = ("auto", "inline", "linked")
MANIFEST = "sources.json"  # in the thumbs folder: which image and size made each row's thumbnail
VIEWER_COMMAND = "embedding-atlas {table} --x x --y y --image image --disable-projection"
_TOOLTIP = """
<div style="max-width: 240px">
  <img src="IMAGE" alt="" style="width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated"/>
  <div style="font-size: 12px; word-break: break-all">@filename{safe}</div>
  <div style="font-size: 12px; font-weight: bold">LABEL{safe}</div>
</div>
"""
# `{safe}` only because filename and class are html.escape'd in the data: they show as text, never run as HTML.
TOOLTIP = _TOOLTIP.replace("IMAGE", "@thumb").replace("LABEL", "@label")
# Linked: the thumbnail URL is made in the browser from the row number (5 bytes a point instead of ~35); the
# renderer's name is its html.escape'd class.
LINKED_TOOLTIP = _TOOLTIP.replace("IMAGE", "@row{thumb}").replace("LABEL", "$name")
THUMB_URL_JS = "return prefix + String(value).padStart(8, '0') + '.jpg'"


def map_tier(n_points: int, thumbnails: str = "auto") -> str:
    """'inline' or 'linked': the mode asked for, or for 'auto' the one that suits `n_points` (LINKED_MIN_POINTS)."""
    if thumbnails not in THUMBNAIL_MODES:
        raise PlottingError(f"thumbnails={thumbnails!r}: choose one of {', '.join(THUMBNAIL_MODES)}")
    if thumbnails != "auto":
        return thumbnails
    return "linked" if n_points >= LINKED_MIN_POINTS else "inline"


def map_files_folder(out_html: str | os.PathLike[str]) -> Path:
    """The folder beside a page that holds its linked files: ``maps/ssl.html`` -> ``maps/ssl_files``."""
    page = Path(out_html)
    return page.parent / f"{page.stem}_files"


def thumbnail_name(row: int) -> str:
    """A thumbnail's file name: the row number, zero-padded (sorts in order; no part of the image's name)."""
    return f"{row:08d}.jpg"


def thumbnail_data_uri(path: str | os.PathLike[str], size: int = 64) -> str:
    """A small JPEG of the image as a base64 data URI, so the HTML works offline and can be e-mailed."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _stale_and_kept(folder: Path, sources: list[str], size: int) -> tuple[list[str], set[int]]:
    """Existing thumbnails that no longer match their row (another image or size), and the rows that do."""
    old: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # no previous manifest, or an unreadable one: remake all
        old = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    old_sources = old.get("sources", []) if old.get("size") == size else []
    stale, kept = [], set()
    for name in (entry.name for entry in os.scandir(folder) if entry.name.endswith(".jpg")):
        row = int(name[:-4]) if name[:-4].isdigit() else -1
        if 0 <= row < min(len(sources), len(old_sources)) and old_sources[row] == sources[row]:
            kept.add(row)
        else:
            stale.append(name)
    return stale, kept


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` the same file as `src`: a hard link where the file system allows, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _make_missing(
    folder: Path, names: list[str], kept: set[int], size: int, workers: int | None, progress: bool
) -> tuple[int, dict[str, str]]:
    """Thumbnail each image without one once, in a process pool; a row whose image has one already links it.
    Returns how many rows got a thumbnail, and the unreadable images with the reason."""
    from embedlab._progress import tqdm
    from embedlab.datasets.thumbnails import _run_batches  # the thumbnail cache's pool: atomic, draft decoding

    first = {}  # image -> the row whose thumbnail it has (or will have)
    for row in sorted(kept):
        first.setdefault(names[row], row)
    missing = [row for row in range(len(names)) if row not in kept]
    jobs = []
    for row in missing:
        if first.setdefault(names[row], row) == row:
            jobs.append((str(row), names[row], str(folder / thumbnail_name(row))))
    processes = 1 if len(jobs) < 64 else max(1, workers or os.cpu_count() or 1)
    failed: dict[str, str] = {}
    with tqdm(total=len(missing), desc="map thumbnails", unit="img", disable=not progress or not missing) as bar:
        for results in _run_batches(jobs, size, processes):
            failed.update({names[int(row)]: error for row, error in results if error is not None})
            bar.update(len(results))
        for row in missing:  # the same image listed again: its thumbnail once, linked
            if first[names[row]] != row and names[row] not in failed:
                _link_or_copy(folder / thumbnail_name(first[names[row]]), folder / thumbnail_name(row))
                bar.update(1)
    return sum(names[row] not in failed for row in missing), failed


def write_thumbnails(
    sources: Sequence[str | os.PathLike[str]],
    folder: str | os.PathLike[str],
    size: int = 64,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> int:
    """Write a JPEG thumbnail (shorter side `size` px) of every source as ``folder/<row>.jpg``; return how many.

    Resumable: a thumbnail already made from the same image at the same size is kept. Runs in `workers` processes
    (default: all CPUs); an image listed twice is decoded once; an unreadable image gets none and is warned about.
    """
    if size < 1:
        raise PlottingError(f"thumbnail size must be a positive number of pixels, got {size}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=False)
    names = [os.fspath(source) for source in sources]
    stale, kept = _stale_and_kept(out, names, size)
    for name in stale:  # before the manifest changes: every file on disk always matches the manifest
        (out / name).unlink()
    with atomic_open(out / MANIFEST, "w", encoding="utf-8") as handle:
        json.dump({"size": size, "sources": names}, handle)
    written, failed = _make_missing(out, names, kept, size, workers, progress)
    if failed:
        image, why = next(iter(failed.items()))
        warnings.warn(f"{len(failed)} image(s) got no thumbnail, e.g. {image} ({why})", stacklevel=2)
    return written


def _map_inputs(
    points: Any, filenames: Sequence[str], labels: Any, class_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Checked [N, 2] float32 points, class name per point and the class colours; one error line on a mismatch."""
    names = _label_names(labels, class_names)
    array = _check_points(points, len(names))
    if len(filenames) != len(array):
        raise PlottingError(f"{len(filenames)} filenames but {len(array)} points")
    return array, names, class_palette(class_names if class_names is not None else names)


def _draw(
    title: str,
    inputs: tuple[np.ndarray, np.ndarray, dict[str, str]],
    columns: Callable[[np.ndarray], dict[str, Any]],
    hover: Any,
    point_size: float,
    backend: str = "canvas",
) -> Any:
    """The map figure: one renderer per class (`columns(rows)` adds what `hover` shows), no axes or grid (UMAP's
    axes mean nothing), wheel zoom on, and a legend beside it whose entries hide their class."""
    from bokeh.models import ColumnDataSource, Legend, LegendItem
    from bokeh.plotting import figure

    array, names, palette = inputs
    plot = figure(
        title=title,
        width=900,
        height=700,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        match_aspect=True,
        output_backend=backend,
    )
    plot.axis.visible = False
    plot.grid.visible = False
    items = []
    for name in sorted(set(names)):
        idx = np.flatnonzero(names == name)
        source = ColumnDataSource({"x": array[idx, 0], "y": array[idx, 1], **columns(idx)})
        style = {"size": point_size, "color": palette[name], "alpha": 0.8, "line_color": None}
        renderer = plot.scatter("x", "y", source=source, name=html.escape(name), **style)
        items.append(LegendItem(label=name, renderers=[renderer]))
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

    inputs = _map_inputs(points, filenames, labels, class_names)
    root = Path(image_root)
    thumbs = [thumbnail_data_uri(root / f, thumbnail_size) for f in tqdm(filenames, desc="thumbnails", leave=False)]

    def columns(idx: np.ndarray) -> dict[str, Any]:
        return {
            "thumb": [thumbs[i] for i in idx],
            "filename": [html.escape(str(filenames[i])) for i in idx],
            "label": [html.escape(str(inputs[1][idx[0]]))] * len(idx),
        }

    return _draw(title, inputs, columns, HoverTool(tooltips=TOOLTIP), point_size)


def linked_page(
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
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the map drawn with WebGL whose hover loads each point's thumbnail from ``<page>_files/thumbs/``;
    past LINKED_MAX_POINTS warn how to open it at scale."""
    from bokeh.models import CustomJSHover, HoverTool

    inputs = _map_inputs(points, filenames, labels, class_names)
    folder = map_files_folder(out_html)
    sources = [Path(image_root) / f for f in filenames]
    write_thumbnails(sources, folder / "thumbs", thumbnail_size, workers=workers, progress=progress)
    escaped = np.asarray([html.escape(str(f)) for f in filenames], dtype=object)

    def columns(idx: np.ndarray) -> dict[str, Any]:
        return {"row": idx.astype(np.int32), "filename": escaped[idx].tolist()}

    prefix = urllib.parse.quote(folder.name) + "/thumbs/"  # relative to the page, its name percent-encoded
    thumb = CustomJSHover(code=THUMB_URL_JS, args={"prefix": prefix})
    hover = HoverTool(tooltips=LINKED_TOOLTIP, formatters={"@row": thumb}, limit=5)
    plot = _draw(title, inputs, columns, hover, point_size, backend="webgl")
    if len(filenames) > LINKED_MAX_POINTS:
        table = folder / "map.parquet"
        warnings.warn(
            f"{len(filenames):,} points: past {LINKED_MAX_POINTS:,} the page opens and hovers slowly; for a "
            f"large-scale viewer write the table (export_map_table(..., {str(table)!r}, thumbs=..., "
            f"with_images=True)) and run: {viewer_command(table)}",
            stacklevel=3,
        )
    return write_page(plot, out_html, title)


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
    processes) and draws with WebGL, so 100,000 points stay a page of a few MB.
    """
    data = (points, filenames, labels, class_names, image_root)
    shared: dict[str, Any] = {"title": title, "thumbnail_size": thumbnail_size, "point_size": point_size}
    if map_tier(len(filenames), thumbnails) == "linked":
        return linked_page(*data, out_html, workers=workers, progress=progress, **shared)
    return write_page(map_figure(*data, **shared), out_html, title)


def export_map_table(
    points: Any,
    filenames: Sequence[str],
    labels: Any,
    class_names: Sequence[str] | None,
    out_parquet: str | os.PathLike[str],
    *,
    thumbs: str | os.PathLike[str] | None = None,
    with_images: bool = False,
) -> Path:
    """The map as a Parquet table for a large-scale viewer: x, y, filename, class, and with `thumbs` (a folder
    of `write_thumbnails`) each row's thumbnail path relative to the table; `with_images` also stores the JPEG
    bytes (column image, ~2 kB a row), which embedding-atlas shows on hover. Needs pyarrow (embedlab[scale])."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    array, names, _ = _map_inputs(points, filenames, labels, class_names)
    out = Path(out_parquet)
    columns: dict[str, Any] = {
        "x": pa.array(array[:, 0]),
        "y": pa.array(array[:, 1]),
        "filename": pa.array([str(f) for f in filenames], pa.string()),  # as is: a viewer shows it as text
        "class": pa.array(names.tolist(), pa.string()).dictionary_encode(),
    }
    if thumbs is not None:
        folder = Path(os.path.relpath(thumbs, out.parent)).as_posix()
        columns["thumbnail"] = pa.array([f"{folder}/{thumbnail_name(row)}" for row in range(len(array))])
    if with_images:
        if thumbs is None:
            raise PlottingError("with_images=True needs thumbs=, the folder of the map's thumbnails")
        files = [Path(thumbs) / thumbnail_name(row) for row in range(len(array))]
        columns["image"] = pa.array([p.read_bytes() if p.is_file() else None for p in files])  # None: unreadable
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as handle:
        pq.write_table(pa.table(columns), handle)
    return out


def viewer_command(table: str | os.PathLike[str]) -> str:
    """The shell command that opens a map table in embedding-atlas (`pip install "embedlab[atlas]"`, Python 3.11+)."""
    import shlex

    return VIEWER_COMMAND.format(table=shlex.quote(os.fspath(table)))


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

    keep = map_sample(len(filenames), max_points, seed)
    shown = f"{len(keep):,} of {len(filenames):,} points" if len(keep) < len(filenames) else f"{len(keep):,} points"
    plot = map_figure(
        np.asarray(points)[keep],
        [filenames[i] for i in keep],
        np.asarray(labels)[keep],
        class_names,
        image_root,
        title=f"{title} ({shown})" if title else shown,
        thumbnail_size=thumbnail_size,
    )
    script, div = components(plot)
    return MapHTML(INLINE.render() + div + script, len(keep), len(filenames))
