"""Map tiers: inline below LINKED_MIN_POINTS, linked thumbnails (named by row, resumable) past it, a small page per
point, and the map as a Parquet table for a large-scale viewer."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedlab.plotting import PlottingError, interactive_scatter
from embedlab.plotting.maps import (
    LINKED_MIN_POINTS,
    export_map_table,
    map_files_folder,
    map_tier,
    thumbnail_name,
    viewer_command,
    write_thumbnails,
)

EVIL = "<img src=x onerror=alert(1)>.png"


def _images(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 12), (i * 40 % 256, 90, 200)).save(root / name)


def _map(tmp_path: Path, n: int, name: str) -> Path:
    """A linked map of n points over 4 small images (two classes), one of them named like an injection."""
    sources = ["a/1.png", "a/2.png", "b/3.png", f"b/{EVIL}"]
    _images(tmp_path / "img", sources)
    files = [sources[i % 4] for i in range(n)]
    points = np.random.default_rng(n).normal(size=(n, 2))
    labels = [i % 4 // 2 for i in range(n)]
    return interactive_scatter(
        points, files, labels, ["a", "b"], tmp_path / "img", tmp_path / name, thumbnails="linked", progress=False
    )


def test_the_tier_follows_the_number_of_points_unless_asked() -> None:
    assert map_tier(LINKED_MIN_POINTS - 1) == "inline" and map_tier(LINKED_MIN_POINTS) == "linked"
    assert map_tier(10, "linked") == "linked" and map_tier(10**6, "inline") == "inline"
    with pytest.raises(PlottingError, match="thumbnails='webp': choose one of auto, inline, linked"):
        map_tier(10, "webp")


def test_a_linked_page_costs_under_100_bytes_a_point_and_names_thumbnails_by_row(tmp_path: Path) -> None:
    small, large = _map(tmp_path, 2000, "small.html"), _map(tmp_path, 6000, "map.html")
    per_point = (large.stat().st_size - small.stat().st_size) / 4000  # bokeh's own script cancels out
    assert per_point < 100, per_point
    folder = map_files_folder(large) / "thumbs"
    assert folder == tmp_path / "map_files" / "thumbs"
    assert sorted(p.name for p in folder.glob("*.jpg"))[:2] == ["00000000.jpg", "00000001.jpg"]
    assert len(list(folder.glob("*.jpg"))) == 6000 and thumbnail_name(5999) == "05999.jpg".rjust(12, "0")
    assert not any("<" in p.name or "onerror" in p.name for p in folder.parent.rglob("*"))  # no name becomes a path
    text = large.read_text(encoding="utf-8")
    assert EVIL not in text and "<img src=x" not in text  # escaped in the data, shown as text
    assert '"output_backend":"webgl"' in text.replace(" ", "") and "map_files/thumbs/" in text
    assert "data:image/jpeg;base64," not in text


def test_thumbnails_resume_and_remake_only_what_changed(tmp_path: Path) -> None:
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    sources = [tmp_path / n for n in ("a.png", "b.png", "c.png", "a.png")]
    folder = tmp_path / "thumbs"
    assert write_thumbnails(sources, folder, 16, progress=False) == 4
    assert os.path.samefile(folder / thumbnail_name(0), folder / thumbnail_name(3))  # the same image, linked
    before = (folder / thumbnail_name(0)).stat().st_mtime_ns
    assert write_thumbnails(sources, folder, 16, progress=False) == 0  # nothing rewritten
    assert (folder / thumbnail_name(0)).stat().st_mtime_ns == before
    (folder / thumbnail_name(2)).unlink()  # interrupted before row 2 was written
    assert write_thumbnails(sources, folder, 16, progress=False) == 1
    assert write_thumbnails([sources[1], *sources[1:3]], folder, 16, progress=False) == 1  # row 0 is another image
    assert not (folder / thumbnail_name(3)).exists()  # a row that is gone leaves no thumbnail behind
    assert write_thumbnails(sources[:3], folder, 8, progress=False) == 3  # another size: all again
    assert json.loads((folder / "sources.json").read_text())["size"] == 8
    with Image.open(folder / thumbnail_name(0)) as thumb:
        assert min(thumb.size) == 8
    with pytest.warns(UserWarning, match="1 image"):
        assert write_thumbnails([*sources[:3], tmp_path / "missing.png"], folder, 8, progress=False) == 0


def test_the_map_table_has_coordinates_names_classes_and_thumbnails(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    names = ["a/1.png", f"b/{EVIL}"]
    _images(tmp_path / "img", names)
    write_thumbnails([tmp_path / "img" / n for n in names], tmp_path / "map_files" / "thumbs", progress=False)
    points = np.array([[0.5, 1.5], [2.0, -1.0]])
    out = export_map_table(
        points, names, [0, 1], ["cats", "dogs"], tmp_path / "map.parquet", thumbs=tmp_path / "map_files" / "thumbs"
    )
    table = pq.read_table(out).to_pydict()
    assert table["x"] == [0.5, 2.0] and table["y"] == [1.5, -1.0]
    assert table["filename"] == names and table["class"] == ["cats", "dogs"]  # as is: the viewer shows text
    assert table["thumbnail"] == ["map_files/thumbs/00000000.jpg", "map_files/thumbs/00000001.jpg"]
    assert all((tmp_path / t).is_file() for t in table["thumbnail"])
    with_images = export_map_table(
        points,
        names,
        [0, 1],
        ["cats", "dogs"],
        tmp_path / "m2.parquet",
        thumbs=tmp_path / "map_files/thumbs",
        with_images=True,
    )
    assert pq.read_table(with_images).column("image")[1].as_py()[:2] == b"\xff\xd8"  # JPEG bytes
    assert re.fullmatch(
        r"embedding-atlas '?.*map\.parquet'? --x x --y y --image image --disable-projection", viewer_command(out)
    )
    with pytest.raises(PlottingError, match="with_images=True needs thumbs="):
        export_map_table(points, names, [0, 1], None, tmp_path / "x.parquet", with_images=True)
    with pytest.raises(PlottingError, match="1 filenames but 2 points"):
        export_map_table(points, names[:1], [0, 1], None, tmp_path / "x.parquet")
