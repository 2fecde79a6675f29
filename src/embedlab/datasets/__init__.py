"""Datasets: the registry, safe resumable downloads, safe extraction, the image-folder dataset, thumbnails.

Every dataset ends up in the same shape on disk, ``<data_dir>/<name>/raw/<class>/<file>``, so the rest of
embedlab only ever sees "a folder whose subfolders are classes". One file per concern, each importing only the
ones listed before it:

=================  ===========================================================================
errors.py          DatasetError and its kinds, DatasetWarning
images.py          decoding one image: any mode to RGB, pixel budget, extreme aspect cropped
folder.py          ImageFolder: (image, label, filename) from class folders, bad files skipped
archives.py        safe zip / tar extraction, full-read verification, finding the image root
downloads.py       resumable HTTP download; size / SHA-256 / archive checks before "complete"
thumbnails.py      the thumbnail cache (parallel, resumable, workers die with their parent)
fashion_mnist.py   the embedded Fashion-MNIST written as PNG class folders
registry.py        DatasetSpec, DATASETS and prepare()
=================  ===========================================================================

This package imports no torch: preparing data and building thumbnails stay fast, and thumbnail worker
processes start quickly. Every public name is re-exported here (``from embedlab.datasets import prepare``).
"""

from __future__ import annotations

from embedlab.datasets.archives import extract, find_image_root, verify_archive
from embedlab.datasets.downloads import download, file_sha256
from embedlab.datasets.errors import ChecksumError, DatasetError, DatasetWarning, DownloadError, UnsafeArchiveError
from embedlab.datasets.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from embedlab.datasets.folder import SUBSTITUTED, UNLABELED, VERIFY_MODES, ImageFolder
from embedlab.datasets.images import limit_aspect, open_rgb, to_rgb
from embedlab.datasets.registry import DATASETS, DatasetSpec, prepare
from embedlab.datasets.thumbnails import ThumbnailReport, _resize_short_side, make_thumbnails, thumbnail_root

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "SUBSTITUTED",
    "UNLABELED",
    "VERIFY_MODES",
    "ChecksumError",
    "DatasetError",
    "DatasetSpec",
    "DatasetWarning",
    "DownloadError",
    "ImageFolder",
    "ThumbnailReport",
    "UnsafeArchiveError",
    "download",
    "extract",
    "file_sha256",
    "find_image_root",
    "limit_aspect",
    "load_fashion_mnist",
    "make_thumbnails",
    "open_rgb",
    "prepare",
    "thumbnail_root",
    "to_rgb",
    "verify_archive",
]
_ = _resize_short_side  # kept importable as embedlab.datasets._resize_short_side (benchmarks/bench_thumbnails.py)
