"""The photo-library path end to end, with the commands docs/datasets.md gives: thumbnails -> sharded embedding
on 2 CPU processes under DDP -> near-duplicates -> map; every photo embedded exactly once, each step resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedlab.embedding import embed, load_embeddings

PHOTOS = 243  # not a multiple of the shard size, nor of the number of processes
COPIES = {7: 120, 33: 201}  # planted duplicates: photo 120 is a copy of photo 7, 201 of 33


def make_photos(folder: Path) -> None:
    """Photo-like JPEGs (a smooth random colour field: each one different) in albums, with two exact copies."""
    rng = np.random.default_rng(0)
    pictures = [
        np.asarray(Image.fromarray(rng.integers(0, 255, (3, 4, 3), dtype=np.uint8)).resize((64, 48), Image.BICUBIC))
        for _ in range(PHOTOS)
    ]
    for original, copy in COPIES.items():
        pictures[copy] = pictures[original]
    for i, picture in enumerate(pictures):
        album = folder / f"album{i % 4}"
        album.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(album / f"IMG_{i:04d}.jpg", quality=95)


def embedlab(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the `embedlab` command (a real process: DDP starts its second process by re-running it)."""
    done = subprocess.run(
        [sys.executable, "-m", "embedlab.cli", *argv], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"embedlab {' '.join(argv)} failed:\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_photo_library_commands_with_two_processes(tmp_path: Path) -> None:
    make_photos(tmp_path / "photos")
    embedlab("thumbnails", "photos", "--thumbnail-size", "32", "--output", "thumbs", "--quiet", cwd=tmp_path)
    again = embedlab("thumbnails", "photos", "--thumbnail-size", "32", "--output", "thumbs", cwd=tmp_path)
    assert f"0 written, {PHOTOS} up to date" in again.stdout + again.stderr  # resumable: nothing redone

    command = ["embed", "thumbs", "library", "--model", "efficientnet_lite0", "--image-size", "32"]
    command += ["--shard-size", "50", "--batch-size", "8", "--quiet"]
    command += ["--device", "cpu", "--devices", "2", "--strategy", "ddp"]
    embedlab(*command, cwd=tmp_path)
    manifest = json.loads((tmp_path / "library" / "manifest.json").read_text())
    assert manifest["complete"] and [s["rows"] for s in manifest["shards"]] == [50, 50, 50, 50, 43]
    library = load_embeddings(tmp_path / "library")
    photos = sorted(str(p.relative_to(tmp_path / "photos")) for p in (tmp_path / "photos").rglob("*.jpg"))
    assert sorted(library.filenames) == photos  # every photo exactly once, across both processes

    one_process = embed(tmp_path / "thumbs", "efficientnet_lite0", image_size=32, progress=False)
    order = [library.filenames.index(name) for name in one_process.filenames]
    np.testing.assert_allclose(library.numpy()[order], one_process.numpy(), atol=1e-4, rtol=1e-3)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "library" / "img_emb").iterdir()}
    embedlab(*command, cwd=tmp_path)  # a finished job run again: nothing is recomputed
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "library" / "img_emb").iterdir()} == stamps

    embedlab("duplicates", "library", "--threshold", "0.999", "--output", "duplicates.tsv", "--quiet", cwd=tmp_path)
    groups = [set(line.split("\t")) for line in (tmp_path / "duplicates.tsv").read_text().splitlines()]
    for original, copy in COPIES.items():
        names = {f"album{original % 4}/IMG_{original:04d}.jpg", f"album{copy % 4}/IMG_{copy:04d}.jpg"}
        assert names in groups  # the copies, and nothing else with them

    embedlab("umap", "library", "--method", "pca", "--image-root", "thumbs", "--output-dir", "map", cwd=tmp_path)
    page = (tmp_path / "map" / "library-pca.html").read_text(encoding="utf-8")
    assert "IMG_0120.jpg" in page and (tmp_path / "map" / "library-pca.png").is_file()
