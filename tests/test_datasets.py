"""The embedded Fashion-MNIST, prepare() on local folders, and ImageFolder on good and bad inputs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedlab import datasets
from embedlab.datasets import FASHION_MNIST_CLASSES, DatasetError, DatasetWarning, ImageFolder

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- Fashion-MNIST


def pngs(root: Path) -> list[str]:
    """Relative paths of all PNGs under root (hidden temp files included on purpose: none may remain)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_fashion_mnist_limit_100_writes_exactly_1000_pngs(tmp_path):
    root = datasets.prepare("fashion-mnist", tmp_path / "data", limit=100, progress=False)
    assert root == tmp_path / "data" / "fashion-mnist" / "raw"
    assert sorted(p.name for p in root.iterdir()) == sorted(FASHION_MNIST_CLASSES)
    files = pngs(root)
    assert len(files) == 1000 and all(f.endswith(".png") for f in files)
    assert all(len(os.listdir(root / name)) == 100 for name in FASHION_MNIST_CLASSES)


def test_fashion_mnist_pixels_and_labels_match_the_idx_files(tmp_path):
    images, labels = datasets.load_fashion_mnist()
    assert images.shape == (10_000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    root = datasets.prepare("fashion-mnist", tmp_path, limit=3, progress=False)
    folder = ImageFolder(root)
    assert folder.class_counts() == {name: 3 for name in sorted(FASHION_MNIST_CLASSES)}
    for filename in folder.filenames:
        cls, name = filename.split("/")
        index = int(name[:-4])
        assert FASHION_MNIST_CLASSES[labels[index]] == cls
        with Image.open(root / filename) as image:
            assert image.mode == "L" and np.array_equal(np.asarray(image), images[index])
    first = np.flatnonzero(labels == 0)[:3]  # balanced = the first indices of each class
    assert sorted(os.listdir(root / "T-shirt_top")) == [f"{i:05d}.png" for i in first]


def test_fashion_mnist_rerun_skips_finished_and_repairs_interruptions(tmp_path):
    root = datasets.prepare("fashion-mnist", tmp_path, limit=4, progress=False)
    mtimes = {f: (root / f).stat().st_mtime_ns for f in pngs(root)}
    victim = sorted(mtimes)[5]
    (root / victim).unlink()
    (root / "Bag" / ".00042.png.x1y2.tmp").write_bytes(b"\x89PNG half")  # what a kill mid-write leaves
    datasets.prepare("fashion-mnist", tmp_path, limit=4, progress=False)
    after = {f: (root / f).stat().st_mtime_ns for f in pngs(root)}
    assert set(after) == set(mtimes)  # temp file gone, victim back
    assert [f for f in after if after[f] != mtimes.get(f)] == [victim]  # only the missing one was written
    with Image.open(root / victim) as image:
        image.load()


def test_fashion_mnist_smaller_limit_prunes_and_bad_limit_is_refused(tmp_path):
    root = datasets.prepare("fashion-mnist", tmp_path, limit=5, progress=False)
    assert len(pngs(root)) == 50
    datasets.prepare("fashion-mnist", tmp_path, limit=2, progress=False)
    assert len(pngs(root)) == 20
    for bad in (0, -3, 2.5):
        with pytest.raises(DatasetError, match="limit"):
            datasets.prepare("fashion-mnist", tmp_path, limit=bad, progress=False)


# --------------------------------------------------------------------------------- helpers for folders


def save(path: Path, image: Image.Image, fmt: str | None = None, **kwargs) -> Path:
    """Save an image, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **kwargs)
    return path


def rgb(color: tuple[int, int, int] = (10, 120, 230), size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.fixture()
def good_folder(tmp_path) -> Path:
    """Three classes (one with a nested subfolder), jpg/png files, deliberately created out of order."""
    root = tmp_path / "ds"
    for cls, names in {
        "zebra": ["b.png", "a.png", "c.jpg"],
        "Apple": ["2.png", "10.png"],
        "mango": ["x.png", "sub/y.png"],
    }.items():
        for name in names:
            save(root / cls / name, rgb())
    return root


# ------------------------------------------------------------------------------------- ImageFolder


def test_image_folder_order_classes_and_filenames(good_folder):
    folder = ImageFolder(good_folder)
    assert folder.classes == ["Apple", "mango", "zebra"]
    assert folder.filenames == [
        "Apple/10.png",
        "Apple/2.png",
        "mango/sub/y.png",
        "mango/x.png",
        "zebra/a.png",
        "zebra/b.png",
        "zebra/c.jpg",
    ]
    assert folder.labels == [0, 0, 1, 1, 2, 2, 2] and folder.targets == folder.labels
    assert folder.labeled and folder.skipped == [] and len(folder) == 7
    image, label, filename = folder[6]
    assert image.mode == "RGB" and image.size == (8, 6) and label == 2 and filename == "zebra/c.jpg"
    assert ImageFolder(good_folder).filenames == folder.filenames  # deterministic


def test_limit_per_class_is_balanced_and_deterministic(good_folder):
    folder = ImageFolder(good_folder, limit_per_class=2)
    assert folder.filenames == [
        "Apple/10.png",
        "Apple/2.png",
        "mango/sub/y.png",
        "mango/x.png",
        "zebra/a.png",
        "zebra/b.png",
    ]
    assert ImageFolder(good_folder, limit_per_class=1).class_counts() == {"Apple": 1, "mango": 1, "zebra": 1}
    with pytest.raises(DatasetError, match="limit"):
        ImageFolder(good_folder, limit_per_class=0)


def test_transform_is_applied(good_folder):
    folder = ImageFolder(good_folder, transform=lambda im: np.asarray(im).shape)
    assert folder[0][0] == (6, 8, 3)


def test_nonexistent_file_and_empty_paths_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as info:
        ImageFolder(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="is a file"):
        ImageFolder(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty") as info:
        ImageFolder(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)
    (tmp_path / "hidden_only" / ".git").mkdir(parents=True)
    (tmp_path / "hidden_only" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(DatasetError, match="empty"):
        ImageFolder(tmp_path / "hidden_only")


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "docs" / "cls").mkdir(parents=True)
    (tmp_path / "docs" / "cls" / "readme.txt").write_text("not an image")
    (tmp_path / "docs" / "cls" / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="no readable images") as info:
        ImageFolder(tmp_path / "docs")
    assert str(tmp_path / "docs") in str(info.value) and "cls/readme.txt" in str(info.value)


def test_bad_files_are_skipped_and_reported_hidden_ignored(good_folder):
    (good_folder / "zebra" / "notes.txt").write_text("hello")
    (good_folder / "zebra" / "empty.jpg").write_bytes(b"")
    (good_folder / "zebra" / "garbage.png").write_bytes(os.urandom(200))
    (good_folder / "stray.png").write_bytes((good_folder / "zebra" / "a.png").read_bytes())
    (good_folder / "zebra" / ".hidden.png").write_bytes(b"not even an image")
    save(good_folder / ".cache" / "x" / "y.png", rgb())
    save(good_folder / "zebra" / ".thumbs" / "z.png", rgb())
    (good_folder / "EmptyClass").mkdir()
    with pytest.warns(DatasetWarning, match="skipped 5 file"):
        folder = ImageFolder(good_folder)
    skipped = dict(folder.skipped)
    assert set(skipped) == {"zebra/notes.txt", "zebra/empty.jpg", "zebra/garbage.png", "stray.png", "EmptyClass/"}
    assert "not an image" in skipped["zebra/notes.txt"]
    assert folder.classes == ["Apple", "mango", "zebra"] and len(folder) == 7
    for i in range(len(folder)):  # a whole epoch: no crash
        folder[i]


def test_damaged_after_header_raises_naming_the_file_or_is_skipped_with_full_verify(good_folder):
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG")
    (good_folder / "zebra" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    folder = ImageFolder(good_folder)  # the header is fine: passes the fast check
    index = folder.filenames.index("zebra/truncated.jpg")
    with pytest.raises(DatasetError, match="truncated.jpg"):
        folder[index]
    with pytest.warns(DatasetWarning, match="skipped 1"):
        full = ImageFolder(good_folder, verify="full")
    assert "zebra/truncated.jpg" not in full.filenames and full.skipped[0][0] == "zebra/truncated.jpg"


def test_flat_folder_is_one_unlabeled_class(tmp_path):
    for name in ("b.png", "a.jpg"):
        save(tmp_path / "flat" / name, rgb())
    folder = ImageFolder(tmp_path / "flat")
    assert folder.classes == ["unlabeled"] and not folder.labeled
    assert folder.filenames == ["a.jpg", "b.png"] and folder.labels == [0, 0]
    assert folder[0][2] == "a.jpg"


# ------------------------------------------------------------------------------------ pixel modes


def pixel(folder: ImageFolder, name: str, xy: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    return folder[folder.filenames.index(name)][0].getpixel(xy)


def test_every_pil_mode_becomes_rgb(tmp_path):
    root = tmp_path / "modes"
    save(root / "c" / "gray.png", Image.new("L", (4, 4), 100))
    save(root / "c" / "bw.png", Image.new("1", (4, 4), 1))
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    save(root / "c" / "palette.png", palette)
    transparent_palette = palette.copy()
    save(root / "c" / "palette_t.png", transparent_palette, transparency=1)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    save(root / "c" / "rgba.png", rgba)
    save(root / "c" / "la.png", Image.new("LA", (4, 4), (0, 128)))
    save(root / "c" / "cmyk.jpg", Image.new("CMYK", (4, 4), (0, 255, 255, 0)))
    save(root / "c" / "cmyk.tif", Image.new("CMYK", (4, 4), (255, 0, 0, 0)))
    deep = Image.fromarray(np.array([[0, 32768], [65535, 1000]], dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    save(root / "c" / "deep16.png", deep)
    save(root / "c" / "deep16.tif", deep)
    save(root / "c" / "int32.tif", Image.fromarray(np.array([[0, 200]], dtype=np.int32)))
    save(root / "c" / "float.tif", Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    folder = ImageFolder(root)
    assert folder.skipped == []
    assert all(folder[i][0].mode == "RGB" for i in range(len(folder)))
    assert pixel(folder, "c/gray.png") == (100, 100, 100)
    assert pixel(folder, "c/bw.png") == (255, 255, 255)
    assert pixel(folder, "c/palette.png") == (200, 10, 20)
    assert pixel(folder, "c/palette_t.png") == (255, 255, 255)
    assert pixel(folder, "c/rgba.png") == (255, 255, 255) and pixel(folder, "c/rgba.png", (1, 1)) == (0, 0, 255)
    assert pixel(folder, "c/la.png")[0] in (127, 128)  # black at half opacity on white
    assert pixel(folder, "c/cmyk.tif") == (0, 255, 255)
    r, g, b = pixel(folder, "c/cmyk.jpg")
    assert r > 200 and g < 60 and b < 60
    for name in ("c/deep16.png", "c/deep16.tif"):  # scaled by the 16-bit range, not clipped to white
        assert [pixel(folder, name, xy)[0] for xy in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 128, 255, 4]
    assert [pixel(folder, "c/int32.tif", xy)[0] for xy in [(0, 0), (1, 0)]] == [0, 200]  # 8-bit data kept
    assert [pixel(folder, "c/float.tif", xy)[0] for xy in [(0, 0), (1, 0), (2, 0)]] == [0, 128, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 10))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    save(tmp_path / "ex" / "c" / "rot.jpg", image, exif=exif.tobytes(), quality=95)
    out = ImageFolder(tmp_path / "ex")[0][0]
    assert out.size == (10, 20)
    r, _g, b = out.getpixel((5, 2))  # the left (blue) half ends up on top
    assert b > 200 and r < 60


# ------------------------------------------------------------------------------- prepare (local)


def test_prepare_local_folder_returns_it_and_subsets_into_data_dir(good_folder, tmp_path):
    assert datasets.prepare(good_folder, tmp_path / "data", progress=False) == good_folder
    assert datasets.prepare(str(good_folder), tmp_path / "data", progress=False) == good_folder
    subset = datasets.prepare(good_folder, tmp_path / "data", limit=1, progress=False)
    assert subset == tmp_path / "data" / "ds" / "subset-1"
    assert ImageFolder(subset).filenames == ["Apple/10.png", "mango/sub/y.png", "zebra/a.png"]
    assert sorted(p.name for p in good_folder.iterdir()) == ["Apple", "mango", "zebra"]  # untouched
    prepared = datasets.prepare("fashion-mnist", tmp_path / "data", limit=1, progress=False)
    assert datasets.prepare(prepared.parent, progress=False) == prepared  # data/<name> -> its raw folder


def test_prepare_unknown_name_and_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'.*aid"):
        datasets.prepare("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.prepare(tmp_path / "missing", tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.prepare(f"{tmp_path}/missing", tmp_path)


# ------------------------------------------------------------------------------------- scripts


def test_scripts_have_help_and_export_validates_the_package_copy():
    for script in ("download_dataset.py", "make_thumbnails.py", "export_fashion_mnist.py"):
        result = subprocess.run(
            [sys.executable, str(REPO / "data_scripts" / script), "--help"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0 and "usage:" in result.stdout, result.stderr
    check = subprocess.run(
        [sys.executable, str(REPO / "data_scripts" / "export_fashion_mnist.py"), "--check-only"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "checksums OK" in check.stdout, check.stderr


def test_download_script_writes_fashion_mnist(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "data_scripts" / "download_dataset.py"),
            "fashion-mnist",
            "--data-dir",
            str(tmp_path),
            "--limit",
            "2",
            "--quiet",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "20 images in 10 classes" in result.stdout
