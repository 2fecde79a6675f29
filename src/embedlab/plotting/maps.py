"""Maps of any size: which tier a map gets, linked thumbnails on disk, the WebGL page, and the map as a table.

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

import contextlib
import html
import json
import os
import shutil
import urllib.parse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab._io import atomic_open, remove_stale_temps
from embedlab.plotting.common import PlottingError
from embedlab.plotting.interactive import (
    _add_hover_and_legend,
    _class_renderers,
    _map_inputs,
    _map_plot,
    write_page,
)

# Inline pages cost ~2 kB and ~14 ms a point (measured on AID-sized photos), so 20,000 points already make a
# ~40 MB page written in ~5 min. Linked pages, measured by benchmarks/bench_scale.py (2 cores, headless Chromium
# drawing WebGL without a GPU): 20,000 points 106 bytes a point, first paint 1.4 s; 100,000 points 47 bytes a
# point, first paint 3.4 s, hover 0.1 s; 300,000 points 37 bytes a point, first paint 8.4 s, hover 0.17 s.
LINKED_MIN_POINTS = 20_000
# Past this the first paint passes ~5 s (interpolated between the 100,000 and 300,000 measurements above): the page
# is still written, with a warning that points to the table and a large-scale viewer (embedding-atlas).
LINKED_MAX_POINTS = 150_000
THUMBNAIL_MODES = ("auto", "inline", "linked")
MANIFEST = "sources.json"  # in the thumbs folder: which image and size made each row's thumbnail
VIEWER_COMMAND = "embedding-atlas {table} --x x --y y --image image --disable-projection"


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


def thumbnail_url_prefix(out_html: str | os.PathLike[str]) -> str:
    """The relative URL of the thumbs folder as seen from the page (the page's name percent-encoded)."""
    return urllib.parse.quote(map_files_folder(out_html).name) + "/thumbs/"


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The previous run's sources and size ({} when there is none or it cannot be read)."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return {}


def _stale_and_kept(folder: Path, sources: list[str], size: int) -> tuple[list[str], set[int]]:
    """Existing thumbnails that no longer match their row (another image or size), and the rows that do."""
    old = _read_manifest(folder)
    old_sources = old.get("sources", []) if old.get("size") == size else []
    present = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".jpg")]
    stale, kept = [], set()
    for name in present:
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

    Resumable: a thumbnail already made from the same image at the same size is kept, so a rerun after an
    interruption only writes the rest. Runs in `workers` processes (default: all CPUs) with a progress bar; an
    image listed twice is decoded once. An unreadable image gets no thumbnail (its tooltip shows no picture) and
    is warned about.
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


LINKED_TOOLTIP = """
<div style="max-width: 240px">
  <img src="@row{thumb}" alt="" style="width: 96px; height: 96px; object-fit: contain; image-rendering: pixelated"/>
  <div style="font-size: 12px; word-break: break-all">@filename{safe}</div>
  <div style="font-size: 12px; font-weight: bold">$name{safe}</div>
</div>
"""
# The thumbnail URL is made in the browser from the row number (5 bytes a point instead of ~35); the renderer's
# name is its html.escape'd class. `{safe}` only because filename and class are html.escape'd in the data.
THUMB_URL_JS = "return prefix + String(value).padStart(8, '0') + '.jpg'"


def linked_map_figure(
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
) -> Any:
    """The map drawn with WebGL whose hover loads each point's thumbnail from ``<page>_files/thumbs/``."""
    from bokeh.models import CustomJSHover, HoverTool

    array, names, palette = _map_inputs(points, filenames, labels, class_names)
    root = Path(image_root)
    folder = map_files_folder(out_html) / "thumbs"
    write_thumbnails([root / f for f in filenames], folder, thumbnail_size, workers=workers, progress=progress)
    escaped = np.asarray([html.escape(str(f)) for f in filenames], dtype=object)

    def columns(idx: np.ndarray) -> dict[str, Any]:
        return {"row": idx.astype(np.int32), "filename": escaped[idx].tolist()}

    plot = _map_plot(title, backend="webgl")
    items = _class_renderers(plot, array, names, columns, palette, point_size)
    thumb = CustomJSHover(code=THUMB_URL_JS, args={"prefix": thumbnail_url_prefix(out_html)})
    hover = HoverTool(tooltips=LINKED_TOOLTIP, formatters={"@row": thumb}, limit=5)
    return _add_hover_and_legend(plot, items, hover)


def linked_page(
    points: Any,
    filenames: Sequence[str],
    labels: Any,
    class_names: Sequence[str] | None,
    image_root: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    *,
    title: str = "",
    **options: Any,
) -> Path:
    """Write the linked map (thumbnails beside it, WebGL); past LINKED_MAX_POINTS say how to open it at scale."""
    plot = linked_map_figure(points, filenames, labels, class_names, image_root, out_html, title=title, **options)
    if len(filenames) > LINKED_MAX_POINTS:
        table = map_files_folder(out_html) / "map.parquet"
        warnings.warn(
            f"{len(filenames):,} points: past {LINKED_MAX_POINTS:,} the page opens and hovers slowly; for a "
            f"large-scale viewer write the table (export_map_table(..., {str(table)!r}, thumbs=..., "
            f"with_images=True)) and run: {viewer_command(table)}",
            stacklevel=3,
        )
    return write_page(plot, out_html, title)


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
        columns["image"] = pa.array([_read_or_none(Path(thumbs) / thumbnail_name(r)) for r in range(len(array))])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as handle:
        pq.write_table(pa.table(columns), handle)
    return out


def _read_or_none(path: Path) -> bytes | None:
    """A file's bytes, or None when it is missing (an image that could not be read has no thumbnail)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def viewer_command(table: str | os.PathLike[str]) -> str:
    """The shell command that opens a map table in embedding-atlas (`pip install "embedlab[atlas]"`, Python 3.11+)."""
    import shlex

    return VIEWER_COMMAND.format(table=shlex.quote(os.fspath(table)))
