"""The map at scale: inline against linked pages by size; seconds to write, HTML bytes per point, and first paint
and hover in headless Chromium (benchmarks/_chromium.py). bench_scale.py imports these functions.

Each map's points cycle over `distinct` generated 600x600 photo-like JPEGs (bench_thumbnails.make_images): an
inline page encodes every point's thumbnail anyway, a linked one thumbnails each distinct image once and links the
repeats, so its write seconds stand for a library of `distinct` images. Hover is the median of 3 points, timed
from the mouse move until a tooltip with a filename shows (dense: the point itself may be one of several;
polled every 20 ms).

    .venv/bin/python benchmarks/_scale_map.py                      # a quick look: inline 1k, linked 1k and 100k
    .venv/bin/python benchmarks/_scale_map.py --inline 1000 5000 20000 --linked 100000 300000 1000000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _chromium import WEBGL_IN_USE, chromium, find_chromium, hover, open_page, point_position
from _machine import machine_info
from bench_thumbnails import make_images

CLASSES = [f"class{i:02d}" for i in range(10)]


def distinct_images(root: Path, count: int) -> list[str]:
    """`count` photo-like JPEGs under root (made once), as relative filenames like a photo library's."""
    if not root.is_dir():
        make_images(root, count, classes=len(CLASSES))
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))


def write_map(root: Path, sources: list[str], n: int, mode: str, out: Path) -> dict[str, Any]:
    """Write an n-point map in `mode` ("inline" or "linked"): seconds and HTML bytes per point."""
    from embedlab.plotting import interactive_scatter

    files = [sources[i % len(sources)] for i in range(n)]
    labels = [int(f[5:7]) for f in files]  # class07/00017.jpg -> 7
    points = np.random.default_rng(0).normal(size=(n, 2))
    start = time.perf_counter()
    page = interactive_scatter(points, files, labels, CLASSES, root, out, thumbnails=mode, progress=False)
    seconds = time.perf_counter() - start
    return {"page": page, "points": points, "files": files, "seconds": seconds, "bytes": page.stat().st_size}


def browser_timings(page: Path, points: np.ndarray, files: list[str]) -> dict[str, Any]:
    """First paint (ms from navigation to the plot drawn) and the median hover (ms) over 3 points."""
    with chromium() as browser:
        frame = open_page(browser, page, timeout=600)
        webgl = bool(browser.evaluate(WEBGL_IN_USE))
        hovers = []
        for row in (0, len(files) // 3, 2 * len(files) // 3):
            state = hover(browser, point_position(browser, *points[row]), "/", timeout=120)  # any point there
            hovers.append(state["hover_ms"])
    return {
        "first_paint_ms": round(frame["first_paint_ms"]),
        "hover_ms": round(statistics.median(hovers)),
        "webgl": webgl,
    }


def map_rows(work: Path, inline: list[int], linked: list[int], distinct: int) -> list[dict[str, Any]]:
    """One row per (mode, size): points, write seconds, HTML bytes per point, first paint and hover in Chromium."""
    root = work / "photos"
    sources = distinct_images(root, distinct)
    rows = []
    for mode, sizes in (("inline", inline), ("linked", linked)):
        for n in sizes:
            written = write_map(root, sources, n, mode, work / f"{mode}-{n}.html")
            row = {
                "stage": "map",
                "mode": mode,
                "points": n,
                "distinct_images": len(sources),
                "seconds": round(written["seconds"], 1),
                "html_bytes_per_point": round(written["bytes"] / n, 1),
                "html_mb": round(written["bytes"] / 1e6, 1),
            }
            if find_chromium() is not None:
                row.update(browser_timings(written["page"], written["points"], written["files"]))
            rows.append(row)
            print(f"  {row}", flush=True)
            shutil.rmtree(work / f"{mode}-{n}_files", ignore_errors=True)
    return rows


def atlas_export_row(work: Path, n: int, distinct: int) -> dict[str, Any] | None:
    """embedding-atlas (if installed): seconds to export an n-point map table (with thumbnails) as its static
    viewer; None when its command is not on PATH. Its in-browser load needs an HTTP server, not timed here."""
    from embedlab.plotting.maps import export_map_table, viewer_command, write_thumbnails

    if shutil.which("embedding-atlas") is None:
        return None
    root = work / "photos"
    sources = distinct_images(root, distinct)
    files = [sources[i % len(sources)] for i in range(n)]
    thumbs = work / "atlas_files" / "thumbs"
    write_thumbnails([root / f for f in files], thumbs, progress=False)
    points = np.random.default_rng(0).normal(size=(n, 2))
    labels = [int(f[5:7]) for f in files]
    table = export_map_table(points, files, labels, CLASSES, work / "atlas.parquet", thumbs=thumbs, with_images=True)
    start = time.perf_counter()
    command = [*viewer_command(table).split(), "--export-application", str(work / "atlas")]
    subprocess.run(command, check=True, capture_output=True)
    return {"stage": "map", "mode": "embedding-atlas export", "points": n, "seconds": time.perf_counter() - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inline", type=int, nargs="*", default=[1000], help="sizes of inline maps")
    parser.add_argument("--linked", type=int, nargs="*", default=[1000, 100_000], help="sizes of linked maps")
    parser.add_argument("--distinct", type=int, default=300, help="distinct generated images the points cycle over")
    parser.add_argument("--atlas", type=int, default=0, help="also time embedding-atlas's export at this size")
    args = parser.parse_args()
    print("embedlab map scale:", machine_info(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = map_rows(Path(tmp), args.inline, args.linked, args.distinct)
        atlas = atlas_export_row(Path(tmp), args.atlas, args.distinct) if args.atlas else None
    if atlas:
        print(f"  {atlas}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
