"""The embedded Fashion-MNIST test split: read from the package's IDX files and written out as PNG class folders."""

from __future__ import annotations

import contextlib
import gzip
import importlib.resources
import logging
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from embedlab._io import atomic_path, remove_stale_temps, write_json
from embedlab._progress import tqdm
from embedlab.datasets.errors import DatasetError

logger = logging.getLogger(__name__)

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)

_PREPARED_MARKER = ".prepared.json"


def _read_idx(data: bytes, expected_magic: int, what: str) -> np.ndarray:
    """Parse an IDX (MNIST-format) byte string into a uint8 array; a wrong header is a DatasetError."""
    if len(data) < 8:
        raise DatasetError(f"{what}: IDX data too short ({len(data)} bytes)")
    magic = int.from_bytes(data[0:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{what}: IDX magic number {magic}, expected {expected_magic}")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(data) - offset != count:
        raise DatasetError(f"{what}: IDX header says {dims} ({count} values) but {len(data) - offset} bytes follow")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    """Return the embedded Fashion-MNIST test split as (images uint8 [10000, 28, 28], labels uint8 [10000])."""
    folder = importlib.resources.files("embedlab").joinpath("data", "fashion-mnist")
    try:
        images_gz = folder.joinpath("t10k-images-idx3-ubyte.gz").read_bytes()
        labels_gz = folder.joinpath("t10k-labels-idx1-ubyte.gz").read_bytes()
    except FileNotFoundError as exc:
        raise DatasetError(
            f"the embedded Fashion-MNIST files are missing from the installed package ({folder}); "
            "reinstall embedlab or run data_scripts/export_fashion_mnist.py"
        ) from exc
    images = _read_idx(gzip.decompress(images_gz), 2051, "t10k-images-idx3-ubyte.gz")
    labels = _read_idx(gzip.decompress(labels_gz), 2049, "t10k-labels-idx1-ubyte.gz")
    if len(images) != len(labels) or labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise DatasetError("embedded Fashion-MNIST: images and labels do not match")
    return images, labels


def _balanced_indices(labels: np.ndarray, limit: int | None) -> list[int]:
    """The first ``limit`` indices of each class (all when limit is None), in index order."""
    chosen: list[int] = []
    for label in range(len(FASHION_MNIST_CLASSES)):
        idx = np.flatnonzero(labels == label)
        chosen.extend(int(i) for i in (idx if limit is None else idx[:limit]))
    return sorted(chosen)


def _prepare_fashion_mnist(data_dir: Path, *, limit: int | None, progress: bool) -> Path:
    """Write the embedded Fashion-MNIST as raw/<ClassName>/<index>.png; skip finished files, prune extras."""
    base = data_dir / "fashion-mnist"
    raw = base / "raw"
    images, labels = load_fashion_mnist()
    chosen = _balanced_indices(labels, limit)
    wanted = {f"{FASHION_MNIST_CLASSES[labels[i]]}/{i:05d}.png": i for i in chosen}
    remove_stale_temps(raw)
    existing = _existing_pngs(raw)
    todo = [(rel, i) for rel, i in wanted.items() if rel not in existing]
    extras = sorted(existing - wanted.keys())
    for rel in extras:  # an earlier call with a larger limit: keep the folder equal to what was asked for
        (raw / rel).unlink()
    if extras:
        logger.info("fashion-mnist: removed %d images beyond limit=%s", len(extras), limit)
    for name in FASHION_MNIST_CLASSES:
        (raw / name).mkdir(parents=True, exist_ok=True)
    for rel, i in tqdm(todo, desc="fashion-mnist", unit="img", disable=not progress or not todo):
        with atomic_path(raw / rel) as tmp:
            Image.fromarray(images[i], mode="L").save(tmp, format="PNG")
    write_json(base / _PREPARED_MARKER, {"dataset": "fashion-mnist", "limit": limit, "images": len(wanted)})
    return raw


def _existing_pngs(raw: Path) -> set[str]:
    """Relative paths of the Fashion-MNIST PNGs already written (class folders listed once, no per-file stat)."""
    found: set[str] = set()
    for name in FASHION_MNIST_CLASSES:
        with contextlib.suppress(FileNotFoundError):
            found.update(f"{name}/{f}" for f in os.listdir(raw / name) if re.fullmatch(r"\d{5}\.png", f))
    return found
