"""The thumbnail cache: sizes, formats, parallel workers, unreadable files, and resuming after an interruption."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedlab import datasets
from embedlab.datasets import DatasetError, DatasetWarning, make_thumbnails, thumbnail_root

REPO = Path(__file__).resolve().parents[1]


def noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """A random image (so JPEG files have real content)."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = np.random.default_rng(seed).integers(0, 255, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze() if channels == 1 else array, mode)


@pytest.fixture()
def dataset(tmp_path) -> Path:
    """data/ds/raw with 3 classes: 120x80 JPEGs, PNGs (gray, RGBA), an EXIF-rotated JPEG and one broken file."""
    root = tmp_path / "data" / "ds" / "raw"
    for c, cls in enumerate(["a", "b", "c"]):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            noise(120, 80, seed=10 * c + i).save(root / cls / f"{i:02d}.jpg", quality=85)
    noise(50, 100, 1, "L").save(root / "a" / "gray.png")
    noise(90, 60, 2, "RGBA").save(root / "b" / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    noise(120, 80, 3).save(root / "c" / "rotated.jpg", exif=exif.tobytes())
    (root / "c" / "broken.jpg").write_bytes(b"this is not a jpeg")
    return root


GOOD = 21  # 18 JPEGs + gray + alpha + rotated


def thumbs(out: Path) -> dict[str, int]:
    """Relative path -> mtime (ns) of every file under ``out``, hidden ones included."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_thumbnails_sizes_formats_and_report(dataset):
    with pytest.warns(DatasetWarning, match="1 image"):
        report = make_thumbnails(dataset, 32, workers=2, progress=False)
    out = thumbnail_root(dataset, 32)
    assert out == dataset.parent / "thumbnails-32" and report.out_root == out
    assert (report.total, report.written, report.skipped) == (GOOD + 1, GOOD, 0)
    assert [rel for rel, _why in report.failed] == ["c/broken.jpg"]
    assert report.images_per_second > 0 and report.seconds > 0
    assert set(thumbs(out)) == {str(p.relative_to(dataset)) for p in dataset.rglob("*.*")} - {"c/broken.jpg"}
    expected = {
        "a/00.jpg": ((48, 32), "JPEG"),
        "a/gray.png": ((32, 64), "PNG"),
        "b/alpha.png": ((48, 32), "PNG"),
        "c/rotated.jpg": ((32, 48), "JPEG"),
    }
    for rel, (size, fmt) in expected.items():
        with Image.open(out / rel) as image:
            assert (image.size, image.format, image.mode) == (size, fmt, "RGB"), rel
    folder = datasets.ImageFolder(out)  # the cache is itself a valid dataset with the same filenames
    assert folder.filenames == [
        f for f in datasets.ImageFolder(dataset, verify="none").filenames if f != "c/broken.jpg"
    ]


def test_thumbnail_content_matches_a_plain_resize(tmp_path):
    root = tmp_path / "raw"
    (root / "x").mkdir(parents=True)
    smooth = Image.linear_gradient("L").convert("RGB").resize((600, 600))
    smooth.save(root / "x" / "big.jpg", quality=95)
    make_thumbnails(root, 64, workers=1, progress=False)
    with Image.open(tmp_path / "thumbnails-64" / "x" / "big.jpg") as thumb:
        reference = smooth.resize((64, 64), Image.Resampling.BICUBIC)
        difference = np.abs(np.asarray(thumb, dtype=int) - np.asarray(reference, dtype=int)).mean()
    assert difference < 4  # draft() decoding at reduced scale keeps the picture


def test_interrupted_run_resumes_only_the_missing_files(dataset):
    with pytest.warns(DatasetWarning):
        make_thumbnails(dataset, 32, workers=2, progress=False)
    out = thumbnail_root(dataset, 32)
    before = thumbs(out)
    deleted = ["a/01.jpg", "b/alpha.png", "c/05.jpg"]
    for rel in deleted:
        (out / rel).unlink()
    planted = out / "a" / ".02.jpg.k3j4.tmp"  # a half-written temporary file from a killed worker
    planted.write_bytes((out / "a" / "02.jpg").read_bytes()[:100])
    time.sleep(0.01)
    with pytest.warns(DatasetWarning):
        report = make_thumbnails(dataset, 32, workers=2, progress=False)
    assert (report.written, report.skipped, len(report.failed)) == (3, GOOD - 3, 1)
    after = thumbs(out)
    assert set(after) == set(before)  # the temp file is gone, the deleted ones are back
    assert sorted(rel for rel in after if after[rel] != before.get(rel)) == sorted(deleted)
    for rel in after:
        with Image.open(out / rel) as image:
            image.load()
            assert min(image.size) == 32


def test_changed_source_is_redone_and_nothing_else(dataset):
    with pytest.warns(DatasetWarning):
        make_thumbnails(dataset, 16, workers=1, progress=False)
    source = dataset / "b" / "03.jpg"
    future = time.time() + 5
    os.utime(source, (future, future))
    with pytest.warns(DatasetWarning):
        report = make_thumbnails(dataset, 16, workers=1, progress=False)
    assert (report.written, report.skipped) == (1, GOOD - 1)


def test_bad_arguments(dataset, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        make_thumbnails(tmp_path / "nope", 32)
    with pytest.raises(DatasetError, match="overwrite"):
        make_thumbnails(dataset, 32, out_root=dataset)
    with pytest.raises(DatasetError, match="positive"):
        make_thumbnails(dataset, 0)


def test_script_prints_images_per_second(tmp_path):
    root = tmp_path / "raw"
    (root / "k").mkdir(parents=True)
    for i in range(4):
        noise(64, 48, i).save(root / "k" / f"{i}.jpg")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "data_scripts" / "make_thumbnails.py"),
            str(root),
            "--size",
            "24",
            "--workers",
            "1",
            "--quiet",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "images/s:" in result.stdout and "4 written" in result.stdout
    assert (tmp_path / "thumbnails-24" / "k" / "3.jpg").is_file()
