#!/usr/bin/env python3
"""Copy and validate the Fashion-MNIST test split (two IDX .gz files) into the package data folder.

The source is Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`), which installs
the files under /usr/share/datasets/fashion-mnist/ (MIT licence, (c) 2017 Zalando SE). The files are checked
(gzip, IDX header, 10,000 28x28 images, 1,000 per class) before they are copied, and copied atomically.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DEST = REPO / "src" / "embedlab" / "data" / "fashion-mnist"
FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# SHA-256 of the *decompressed* IDX payloads as shipped by Debian (gzip headers differ between mirrors, so the
# upstream MD5s of the .gz files do not apply; the payload is what matters).
PAYLOAD_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def read_idx(path: Path) -> np.ndarray:
    """Decompress and parse one IDX file; raise ValueError when its header or length is wrong."""
    data = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(data[:4], "big")
    if magic not in (2049, 2051):
        raise ValueError(f"{path}: IDX magic {magic}, expected 2049 (labels) or 2051 (images)")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but {len(data) - offset} bytes follow")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def validate(folder: Path, check_sha: bool = True) -> str:
    """Check both files in ``folder``; return a one-line summary or raise ValueError."""
    for name in FILES:
        if not (folder / name).is_file():
            raise ValueError(f"{folder / name} is missing (apt-get install dataset-fashion-mnist?)")
        if check_sha:
            digest = hashlib.sha256(gzip.decompress((folder / name).read_bytes())).hexdigest()
            if digest != PAYLOAD_SHA256[name]:
                raise ValueError(f"{folder / name}: payload SHA-256 {digest} != expected {PAYLOAD_SHA256[name]}")
    images, labels = read_idx(folder / FILES[0]), read_idx(folder / FILES[1])
    if images.shape != (10_000, 28, 28) or labels.shape != (10_000,):
        raise ValueError(f"unexpected shapes: images {images.shape}, labels {labels.shape}")
    counts = np.bincount(labels, minlength=10)
    if len(counts) != 10 or not (counts == 1000).all():
        raise ValueError(f"expected 1,000 images per class, got {counts.tolist()}")
    return f"{folder}: 10,000 images 28x28, 10 classes x 1,000, payload checksums OK"


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy a file so that ``dst`` is either the old or the complete new file."""
    sys.path.insert(0, str(REPO / "src"))
    from embedlab._io import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def main(argv: list[str] | None = None) -> int:
    """Validate the source files, copy them into the package, validate the copies."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help=f"folder with the .gz files ({DEFAULT_SOURCE})"
    )
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="package data folder (default: %(default)s)")
    parser.add_argument("--check-only", action="store_true", help="only validate the files already in --dest")
    args = parser.parse_args(argv)
    try:
        if not args.check_only:
            print(validate(args.source))
            for name in FILES:
                copy_atomic(args.source / name, args.dest / name)
                print(f"copied {name} -> {args.dest}")
        print(validate(args.dest))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
