"""Datasets: the registry, safe resumable downloads, the embedded Fashion-MNIST, an image-folder dataset, thumbnails.

Every dataset ends up in the same shape on disk, ``<data_dir>/<name>/raw/<class>/<file>``, so the rest of
embedlab only ever sees "a folder whose subfolders are classes". This module imports no torch: preparing data
and building thumbnails stay fast, and thumbnail worker processes start quickly.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import importlib.resources
import logging
import math
import os
import re
import shutil
import socket
import stat
import tarfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from embedlab._io import atomic_open, atomic_path, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
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
    "find_image_root",
    "make_thumbnails",
    "open_rgb",
    "prepare",
    "thumbnail_root",
    "to_rgb",
]


# --------------------------------------------------------------------------------------------- errors


class DatasetError(Exception):
    """A dataset cannot be found, downloaded, extracted or read; the message names the path or URL."""


class DownloadError(DatasetError):
    """A transfer failed (network, HTTP status); rerunning resumes from the partial file."""


class ChecksumError(DownloadError):
    """A downloaded file has the wrong size or SHA-256; the bad file has been removed."""


class UnsafeArchiveError(DatasetError):
    """An archive member would land outside the target folder (../, absolute path, link); nothing was written."""


class DatasetWarning(UserWarning):
    """Files were skipped (unreadable or not images); the dataset still works without them."""


# ------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from, what it holds, and how to credit it."""

    name: str
    title: str
    url: str | None  # None = embedded in the package
    filename: str | None = None  # archive file name under <data_dir>/<name>/downloads/
    sha256: str | None = None
    size: int | None = None  # archive size in bytes, when known
    num_images: int | None = None
    num_classes: int | None = None
    image_format: str = ""
    homepage: str = ""
    license: str = ""
    citation: str = ""


FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot",
)

DATASETS: dict[str, DatasetSpec] = {
    "aid": DatasetSpec(
        name="aid",
        title="AID: Aerial Image Dataset (30 scene classes)",
        url="https://www.kaggle.com/api/v1/datasets/download/jiayuanchengala/aid-scene-classification-datasets",
        filename="aid-scene-classification-datasets.zip",
        num_images=10_000,
        num_classes=30,
        image_format="600x600 RGB JPEG, about 2.5 GB",
        homepage="https://www.kaggle.com/datasets/jiayuanchengala/aid-scene-classification-datasets",
        license="For research and education; the Kaggle upload states no licence. Cite the paper below.",
        citation=(
            "G.-S. Xia, J. Hu, F. Hu, B. Shi, X. Bai, Y. Zhong, L. Zhang, X. Lu. AID: A Benchmark Data Set for "
            "Performance Evaluation of Aerial Scene Classification. IEEE Transactions on Geoscience and Remote "
            "Sensing 55(7):3965-3981, 2017."
        ),
    ),
    "eurosat": DatasetSpec(
        name="eurosat",
        title="EuroSAT RGB: Sentinel-2 land use / land cover (10 classes)",
        url="https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip",
        filename="EuroSAT_RGB.zip",
        num_images=27_000,
        num_classes=10,
        image_format="64x64 RGB JPEG, about 90 MB",
        homepage="https://github.com/phelber/EuroSAT",
        license="MIT (contains modified Copernicus Sentinel data)",
        citation=(
            "P. Helber, B. Bischke, A. Dengel, D. Borth. EuroSAT: A Novel Dataset and Deep Learning Benchmark for "
            "Land Use and Land Cover Classification. IEEE Journal of Selected Topics in Applied Earth Observations "
            "and Remote Sensing 12(7):2217-2226, 2019."
        ),
    ),
    "ucmerced": DatasetSpec(
        name="ucmerced",
        title="UC Merced Land Use (21 classes)",
        url="http://weegee.vision.ucmerced.edu/datasets/UCMerced_LandUse.zip",
        filename="UCMerced_LandUse.zip",
        num_images=2_100,
        num_classes=21,
        image_format="256x256 RGB TIFF, about 320 MB",
        homepage="http://weegee.vision.ucmerced.edu/datasets/landuse.html",
        license=(
            "Images from the USGS National Map Urban Area Imagery collection (public domain); "
            "the authors ask that research use cite the paper below."
        ),
        citation=(
            "Y. Yang, S. Newsam. Bag-Of-Visual-Words and Spatial Extensions for Land-Use Classification. "
            "ACM SIGSPATIAL International Conference on Advances in Geographic Information Systems (GIS), 2010."
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST test split (10 classes), embedded in the package",
        url=None,
        num_images=10_000,
        num_classes=10,
        image_format="28x28 grayscale, written as PNG",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        license="MIT, (c) 2017 Zalando SE (copied from Debian's dataset-fashion-mnist package)",
        citation=(
            "H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine "
            "Learning Algorithms. arXiv:1708.07747, 2017."
        ),
    ),
}

_PREPARED_MARKER = ".prepared.json"
_EXTRACTED_MARKER = ".embedlab-extracted.json"
_USER_AGENT = "embedlab/0.1 (+https://github.com/embedlab)"


# ------------------------------------------------------------------------------------------- prepare


def prepare(
    name_or_path: str | os.PathLike[str] | DatasetSpec,
    data_dir: str | os.PathLike[str] = "data",
    *,
    limit: int | None = None,
    progress: bool = True,
    url: str | None = None,
) -> Path:
    """Make a dataset ready on disk and return its root (the folder whose subfolders are classes).

    A registry name (see DATASETS) is downloaded/written under ``data_dir/<name>/raw``; a Path or a string
    that is not a registry name is treated as a local folder of images and validated. ``limit`` keeps that many
    images per class (balanced). ``url`` overrides the registry's download URL (a mirror, or a test server).
    """
    _check_limit(limit)
    spec = _resolve_spec(name_or_path)
    if spec is None:
        return _prepare_local(Path(name_or_path), Path(data_dir), limit=limit, progress=progress)  # type: ignore[arg-type]
    if spec.url is None and url is None:
        return _prepare_fashion_mnist(Path(data_dir), limit=limit, progress=progress)
    if url is not None:  # another source: the registry's size/checksum describe a different file
        spec = dataclasses.replace(spec, url=url, sha256=None, size=None)
    raw = _prepare_download(spec, Path(data_dir) / spec.name, progress=progress)
    return raw if limit is None else _make_subset(raw, raw.parent / f"subset-{limit}", limit, progress=progress)


def _check_limit(limit: int | None) -> None:
    """Refuse a limit that would select nothing."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive number of images per class or None, got {limit!r}")


def _resolve_spec(name_or_path: str | os.PathLike[str] | DatasetSpec) -> DatasetSpec | None:
    """Return the registry entry for a name, or None for a local folder (a Path, or a str naming a folder)."""
    if isinstance(name_or_path, DatasetSpec):
        return name_or_path
    if isinstance(name_or_path, os.PathLike):
        return None
    key = str(name_or_path).strip().lower().replace("_", "-")
    if key in DATASETS:
        return DATASETS[key]
    if Path(name_or_path).exists() or any(sep in str(name_or_path) for sep in ("/", os.sep)):
        return None
    raise DatasetError(
        f"unknown dataset {name_or_path!r}: not a registry name ({', '.join(sorted(DATASETS))}) "
        f"and not an existing folder"
    )


def _prepare_local(path: Path, data_dir: Path, *, limit: int | None, progress: bool) -> Path:
    """Validate a local image folder and return its root (``<path>/raw`` when it is a prepared dataset folder).

    With ``limit`` the balanced subset is built as hard links in ``data_dir/<folder name>/subset-<limit>``,
    leaving the user's folder untouched.
    """
    if not path.exists():
        raise DatasetError(f"dataset folder {path} does not exist")
    if (path / "raw").is_dir() and (path / _PREPARED_MARKER).is_file():
        path = path / "raw"
    folder = ImageFolder(path)  # raises DatasetError when empty or without images
    if limit is None:
        return folder.root
    name = folder.root.resolve().name if folder.root.name != "raw" else folder.root.resolve().parent.name
    return _make_subset(folder.root, data_dir / name / f"subset-{limit}", limit, progress=progress, folder=folder)


# ---------------------------------------------------------------------------- embedded Fashion-MNIST


def _read_idx(data: bytes, expected_magic: int, what: str) -> np.ndarray:
    """Parse an IDX (MNIST-format) byte string into a uint8 array; a wrong header is a DatasetError."""
    if len(data) < 8:
        raise DatasetError(f"{what}: IDX data too short ({len(data)} bytes)")
    magic = int.from_bytes(data[0:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{what}: IDX magic number {magic}, expected {expected_magic}")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
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


def _remove_stale_temps(folder: Path) -> int:
    """Delete temporary files (``.<name>.*.tmp``) an interrupted atomic write left behind; return how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed


def _prepare_fashion_mnist(data_dir: Path, *, limit: int | None, progress: bool) -> Path:
    """Write the embedded Fashion-MNIST as raw/<ClassName>/<index>.png; skip finished files, prune extras."""
    base = data_dir / "fashion-mnist"
    raw = base / "raw"
    images, labels = load_fashion_mnist()
    chosen = _balanced_indices(labels, limit)
    wanted = {f"{FASHION_MNIST_CLASSES[labels[i]]}/{i:05d}.png": i for i in chosen}
    _remove_stale_temps(raw)
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


# ---------------------------------------------------------------------------------- download + extract


def _prepare_download(spec: DatasetSpec, base: Path, *, progress: bool) -> Path:
    """Download, extract and normalize a registry dataset into base/raw; a completion marker makes reruns free."""
    raw = base / "raw"
    marker = base / _PREPARED_MARKER
    if marker.is_file() and raw.is_dir():
        logger.info("%s: already prepared in %s", spec.name, raw)
        return raw
    assert spec.url is not None
    target = base / "downloads" / (spec.filename or _filename_from_url(spec.url))
    try:
        archive = download(spec.url, target, sha256=spec.sha256, size=spec.size, progress=progress)
    except DownloadError as exc:
        raise type(exc)(
            f"{exc}\nAlternatively download {spec.homepage or spec.url} in a browser and save the archive as "
            f"{target}; prepare() then extracts it without downloading."
        ) from exc
    staging = base / ".extracting"
    if staging.exists():
        shutil.rmtree(staging)
    extract(archive, staging, progress=progress)
    image_root = find_image_root(staging)
    if raw.exists():  # a raw folder without a marker is from an interrupted run: replace it
        shutil.rmtree(raw)
    os.replace(image_root, raw)
    shutil.rmtree(staging, ignore_errors=True)
    (raw / _EXTRACTED_MARKER).unlink(missing_ok=True)
    counts = {d.name: sum(1 for f in d.rglob("*") if f.is_file()) for d in sorted(raw.iterdir()) if d.is_dir()}
    write_json(marker, {"dataset": spec.name, "url": spec.url, "archive": archive.name, "classes": counts})
    return raw


def _filename_from_url(url: str) -> str:
    """A file name for a download: the last URL path segment (without a query string)."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return name or "download"


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    retries: int = 3,
    retry_wait: float = 1.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with HTTP Range; verify, then rename into place.

    An existing ``dest`` is complete (it only appears by an atomic rename after verification) and is returned
    at once. A dropped connection is retried ``retries`` times from where it stopped; a server that ignores
    Range is restarted cleanly from byte 0. A size or SHA-256 mismatch removes the file and raises ChecksumError.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, size=size, progress=progress, timeout=timeout, chunk_size=chunk_size)
            break
        except _Interrupted as exc:
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"download of {url} was interrupted ({exc}); {have} bytes are kept in {part}: "
                    "run again to resume"
                ) from exc
            logger.warning("download of %s interrupted at %d bytes (%s); resuming", url, have, exc)
            time.sleep(retry_wait * (attempt + 1))
    _verify(part, url, sha256=sha256, size=size)
    os.replace(part, dest)
    return dest


class _Interrupted(Exception):
    """A transfer stopped early for a reason worth retrying (dropped connection, timeout, 5xx)."""


def _fetch(url: str, part: Path, *, size: int | None, progress: bool, timeout: float, chunk_size: int) -> None:
    """Append the rest of ``url`` to ``part`` (or rewrite it when the server cannot resume)."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            total = _content_range_total(exc.headers.get("Content-Range", ""))
            if total == have:  # the partial file already holds everything
                return
            part.unlink()
            raise _Interrupted(f"server refused to resume at byte {have}; restarting") from exc
        if exc.code >= 500 or exc.code == 429:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}: check the URL (or your access rights)") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout, ConnectionResetError)):
            raise _Interrupted(str(reason)) from exc
        raise DownloadError(f"cannot reach {url}: {reason}. Are you online? A rerun resumes the download.") from exc
    with response:
        _receive(response, part, have, url=url, size=size, progress=progress, chunk_size=chunk_size)


def _receive(response: Any, part: Path, have: int, *, url: str, size: int | None, progress: bool,
             chunk_size: int) -> None:
    """Write the response body to ``part``: append on 206 at the right offset, else rewrite from zero."""
    mode, start = "wb", 0
    if have and response.status == 206:
        start = _content_range_start(response.headers.get("Content-Range", ""))
        if start != have:
            part.unlink()
            raise _Interrupted(f"server resumed at byte {start}, not {have}; restarting")
        mode = "ab"
    elif have:
        logger.warning("%s ignores Range requests: restarting the download from the beginning", url)
    length = response.headers.get("Content-Length")
    expected = int(length) if length is not None and length.isdigit() else None
    total = start + expected if expected is not None else size
    received = 0
    with open(part, mode) as handle, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                          unit_divisor=1024, desc=part.name[:-5], disable=not progress) as bar:
        try:
            while chunk := response.read(chunk_size):
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
            raise _Interrupted(f"connection lost after {start + received} bytes") from exc
    if expected is not None and received < expected:
        raise _Interrupted(f"connection closed after {start + received} of {start + expected} bytes")


def _content_range_start(value: str) -> int:
    """The first byte of a ``Content-Range: bytes a-b/n`` header (-1 when unparsable)."""
    match = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value)
    return int(match.group(1)) if match else -1


def _content_range_total(value: str) -> int | None:
    """The total size in a ``Content-Range: bytes */n`` header (None when unknown)."""
    match = re.search(r"/(\d+)\s*$", value)
    return int(match.group(1)) if match else None


def _verify(path: Path, url: str, *, sha256: str | None, size: int | None) -> None:
    """Check size and SHA-256 where known; on mismatch remove the file and raise ChecksumError."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        path.unlink()
        raise ChecksumError(f"{url}: got {actual_size} bytes, expected {size}; the file was removed, run again")
    if sha256 is not None:
        digest = file_sha256(path)
        if digest.lower() != sha256.lower():
            path.unlink()
            raise ChecksumError(
                f"{url}: SHA-256 {digest} does not match the expected {sha256}; the file was removed. "
                "Run again to re-download; if it keeps failing the source has changed."
            )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _safe_member_path(name: str, archive: Path) -> PurePosixPath | None:
    """The relative path of an archive member, or UnsafeArchiveError when it is absolute or climbs out."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract anything")
    parts = [p for p in normalized.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} points outside the target (..); refusing to extract")
    return PurePosixPath(*parts) if parts else None


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[tuple[PurePosixPath, bool, Any]]:
    """Validate every zip member; return (relative path, is_dir, info) for all of them."""
    members = []
    for info in zf.infolist():
        rel = _safe_member_path(info.filename, archive)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; refusing to extract")
        if rel is not None:
            members.append((rel, info.is_dir(), info))
    return members


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[tuple[PurePosixPath, bool, Any]]:
    """Validate every tar member (no links, devices or escaping paths); return (path, is_dir, member)."""
    members = []
    for member in tf.getmembers():
        rel = _safe_member_path(member.name, archive)
        if member.issym() or member.islnk():
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r} is a {'symbolic' if member.issym() else 'hard'} link "
                f"(to {member.linkname!r}); refusing to extract"
            )
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device/fifo; refusing to extract")
        if rel is not None:
            members.append((rel, member.isdir(), member))
    return members


def extract(archive: str | os.PathLike[str], target: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """Safely extract a zip or tar(.gz/.bz2/.xz) into ``target`` and mark it done; return ``target``.

    Every member is validated before anything is written: absolute paths, ``..`` and links raise
    UnsafeArchiveError and leave the disk untouched. A marker file makes a second call a no-op.
    """
    archive, target = Path(archive), Path(target)
    marker = target / _EXTRACTED_MARKER
    if marker.is_file():
        return target
    if not archive.is_file():
        raise DatasetError(f"archive {archive} does not exist")
    with _open_archive(archive) as (members, read):
        target.mkdir(parents=True, exist_ok=True)
        resolved = target.resolve()
        for rel, _is_dir, _info in members:  # a second check against links already inside target
            if not (resolved / rel).resolve().is_relative_to(resolved):
                raise UnsafeArchiveError(f"{archive}: member {rel} would be written outside {target}")
        for rel, is_dir, info in tqdm(members, desc=f"extract {archive.name}", unit="file", disable=not progress):
            out = target / rel
            if is_dir:
                out.mkdir(parents=True, exist_ok=True)
                continue
            with read(info) as src, atomic_open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    write_json(marker, {"archive": archive.name, "size": archive.stat().st_size, "members": len(members)})
    return target


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[tuple[list[tuple[PurePosixPath, bool, Any]], Callable[[Any], Any]]]:
    """Open a zip or tar archive; yield its validated members and a function that opens one for reading."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield _zip_members(archive, zf), zf.open
        return
    if not tarfile.is_tarfile(archive):
        raise DatasetError(f"{archive} is neither a zip nor a tar archive: delete it and download it again")
    with tarfile.open(archive, "r:*") as tf:
        def read(member: tarfile.TarInfo) -> Any:
            handle = tf.extractfile(member)
            assert handle is not None
            return handle
        yield _tar_members(archive, tf), read


def _image_extensions() -> frozenset[str]:
    """File extensions PIL can open (lower case, with dot)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _visible(name: str) -> bool:
    """True for names that are not hidden files/folders or macOS archive litter."""
    return not name.startswith(".") and name != "__MACOSX"


def find_image_root(folder: str | os.PathLike[str]) -> Path:
    """Find the folder whose subfolders hold the images (e.g. UCMerced_LandUse/Images inside an archive).

    The shallowest folder with at least one subfolder that directly contains image files wins (ties: the one
    with most such subfolders). A folder of loose images with no class folders is returned itself.
    """
    folder = Path(folder)
    extensions = _image_extensions()
    image_dirs: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        if any(_visible(f) and os.path.splitext(f)[1].lower() in extensions for f in filenames):
            image_dirs.add(Path(dirpath))
    if not image_dirs:
        raise DatasetError(f"no images found in {folder}: the archive does not look like an image dataset")
    parents: dict[Path, int] = {}
    for d in image_dirs:
        if d != folder:
            parents[d.parent] = parents.get(d.parent, 0) + 1
    if not parents:
        return folder
    depth = min(len(p.relative_to(folder).parts) for p in parents)
    shallowest = [p for p in parents if len(p.relative_to(folder).parts) == depth]
    best = max(sorted(shallowest), key=lambda p: parents[p])
    if len(shallowest) > 1:
        logger.warning("several image folders at the same depth in %s; using %s", folder, best)
    return best


def _make_subset(root: Path, out: Path, limit: int, *, progress: bool, folder: ImageFolder | None = None) -> Path:
    """Build ``out`` with the first ``limit`` images of each class of ``root`` (hard links, else copies)."""
    marker = out.parent / f".{out.name}.json"
    if marker.is_file() and out.is_dir():
        return out
    folder = folder or ImageFolder(root)
    subset = folder.subset(limit)
    for rel in tqdm(subset, desc=f"subset {limit}/class", unit="img", disable=not progress):
        dst = out / rel
        if dst.exists():
            continue
        with atomic_path(dst) as tmp:
            tmp.unlink()
            try:
                os.link(root / rel, tmp)
            except OSError:
                shutil.copy2(root / rel, tmp)
    write_json(marker, {"source": str(root), "limit": limit, "images": len(subset)})
    return out


# ------------------------------------------------------------------------------------- image decoding


def _scale_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16/32-bit integer or float image to 0..255 by its type's range (8-bit data stays as is)."""
    data = np.nan_to_num(array.astype(np.float64))
    peak = float(data.max()) if data.size else 0.0
    if mode == "F":  # floats: 0..1 images as is, anything else by its maximum
        top = max(1.0, peak)
    else:  # integers: 8-bit data in a wide container stays, 16-bit uses the full 16-bit range
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    data = data / top * 255.0
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: EXIF rotation applied, transparency on white, 16-bit scaled (not clipped)."""
    if image.getexif().get(0x0112, 1) != 1:  # EXIF Orientation: rotate/flip the pixels upright
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image), mode), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "1":
        image = image.convert("L")
    return image.convert("RGB")


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file as RGB (see to_rgb); DatasetError names a file that fails."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(
            f"cannot decode image {path}: {exc}. The file is damaged: delete or replace it "
            "(ImageFolder(..., verify='full') finds all such files up front)."
        ) from exc


def _probe(path: str, full: bool) -> str | None:
    """Return why ``path`` is not a usable image (None when it is): header check, or a full decode."""
    try:
        with Image.open(path) as image:
            if image.width < 1 or image.height < 1:
                return "image has no pixels"
            if full:
                image.load()
        return None
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip and report"
        return f"unreadable: {type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------- ImageFolder


UNLABELED = "unlabeled"


def _walk_files(folder: str, prefix: str) -> list[str]:
    """Relative paths ('/' separators) of the visible files under ``folder``, recursively, sorted."""
    found: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not _visible(entry.name):
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_dir():
                found.extend(_walk_files(entry.path, rel + "/"))
            elif entry.is_file():
                found.append(rel)
    return sorted(found)


class ImageFolder:
    """Images in ``root/<class>/<file>`` as (image, label, filename); bad files are skipped and reported.

    Classes are the sorted visible subfolders; files are sorted within each class; filenames are relative to
    ``root`` with '/' separators. Every image becomes RGB (see to_rgb). At scan time each file's header is
    checked (``verify="header"``, ~0.1 ms per file) or fully decoded (``verify="full"``); skipped files are in
    ``.skipped`` and announced with a DatasetWarning. A file that still fails to decode in ``__getitem__``
    (damaged after its header) raises DatasetError naming it: no silent substitution.
    A folder of loose images without class subfolders is one class named "unlabeled" (``labeled`` is False).
    It is a map-style dataset: use it with torch's DataLoader, Subset or random_split.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        limit_per_class: int | None = None,
        verify: str = "header",
    ) -> None:
        if verify not in ("header", "full", "none"):
            raise DatasetError(f"verify must be 'header', 'full' or 'none', got {verify!r}")
        _check_limit(limit_per_class)
        self.root = _check_folder(root)
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []
        per_class = self._scan(verify)
        self.classes: list[str] = sorted(per_class)
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.filenames: list[str] = []
        self.labels: list[int] = []
        for name in self.classes:
            files = per_class[name] if limit_per_class is None else per_class[name][:limit_per_class]
            self.filenames.extend(files)
            self.labels.extend([self.class_to_idx[name]] * len(files))
        if self.skipped:
            examples = "; ".join(f"{rel} ({why})" for rel, why in self.skipped[:3])
            warnings.warn(
                f"{self.root}: skipped {len(self.skipped)} file(s) that are not usable images, e.g. {examples}. "
                "The list is in .skipped.", DatasetWarning, stacklevel=2,
            )

    def _scan(self, verify: str) -> dict[str, list[str]]:
        """Find class folders and their readable images; record everything skipped with a reason."""
        with os.scandir(self.root) as entries:
            visible = sorted((e for e in entries if _visible(e.name)), key=lambda e: e.name)
        class_dirs = [e for e in visible if e.is_dir()]
        loose = [e.name for e in visible if e.is_file()]
        if class_dirs:
            self.labeled = True
            candidates = {e.name: _walk_files(e.path, e.name + "/") for e in class_dirs}
            self.skipped.extend((name, "not inside a class folder") for name in loose)
        else:
            self.labeled = False
            candidates = {UNLABELED: loose}
        per_class: dict[str, list[str]] = {}
        for name, files in candidates.items():
            good = self._verified(files, verify)
            if good:
                per_class[name] = good
            elif self.labeled:
                self.skipped.append((name + "/", "class folder has no readable images"))
        if not per_class:
            examples = "; ".join(f"{rel} ({why})" for rel, why in self.skipped[:3])
            raise DatasetError(
                f"no readable images in {self.root} ({len(self.skipped)} file(s) skipped: {examples or 'none'}). "
                f"Expected {self.root}/<class>/<image> (or images directly inside it)."
            )
        return per_class

    def _verified(self, files: list[str], verify: str) -> list[str]:
        """The files that pass the chosen check; the others go to ``.skipped``."""
        if verify == "none":
            return files
        good = []
        for rel in files:
            reason = _probe(os.path.join(self.root, rel), verify == "full")
            if reason is None:
                good.append(rel)
            else:
                self.skipped.append((rel, reason))
        return good

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> tuple[Any, int, str]:
        """(image, label, filename): the RGB image (or transform(image)), the class index, the relative path."""
        filename = self.filenames[index]
        image = open_rgb(self.root / filename)
        return (self.transform(image) if self.transform else image), self.labels[index], filename

    @property
    def targets(self) -> list[int]:
        """Class index per image (torchvision's name for ``labels``)."""
        return self.labels

    @property
    def paths(self) -> list[Path]:
        """Absolute path per image."""
        return [self.root / f for f in self.filenames]

    def class_counts(self) -> dict[str, int]:
        """Number of images per class, in class order."""
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    def subset(self, limit_per_class: int) -> list[str]:
        """Filenames of the first ``limit_per_class`` images of each class (balanced, deterministic)."""
        _check_limit(limit_per_class)
        taken: dict[int, int] = {}
        chosen = []
        for filename, label in zip(self.filenames, self.labels):
            if taken.get(label, 0) < limit_per_class:
                taken[label] = taken.get(label, 0) + 1
                chosen.append(filename)
        return chosen

    def __repr__(self) -> str:
        return (f"ImageFolder(root={str(self.root)!r}, images={len(self)}, classes={len(self.classes)}, "
                f"skipped={len(self.skipped)})")


def _check_folder(root: str | os.PathLike[str]) -> Path:
    """Return ``root`` as an existing folder, or raise DatasetError naming what is wrong with it."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset folder {path} does not exist (use embedlab.datasets.prepare(...) to make one)")
    if not path.is_dir():
        raise DatasetError(f"{path} is a file, not a folder of images")
    with os.scandir(path) as entries:
        if not any(_visible(e.name) for e in entries):
            raise DatasetError(f"dataset folder {path} is empty: expected {path}/<class>/<image>")
    return path


# ----------------------------------------------------------------------------------------- thumbnails


def thumbnail_root(root: str | os.PathLike[str], size: int) -> Path:
    """Where the thumbnails of a dataset root go: ``<root>/../thumbnails-<size>``."""
    return Path(root).parent / f"thumbnails-{size}"


@dataclass
class ThumbnailReport:
    """What make_thumbnails did: counts, the files it could not read, and the speed."""

    root: Path
    out_root: Path
    size: int
    total: int = 0
    written: int = 0
    skipped: int = 0  # already up to date
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0

    def __str__(self) -> str:
        return (f"thumbnails-{self.size}: {self.written} written, {self.skipped} up to date, "
                f"{len(self.failed)} unreadable, {self.images_per_second:.0f} images/s -> {self.out_root}")


_MIN_JOBS_FOR_POOL = 16
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 90}, "WEBP": {"quality": 90}}


def _save_format(path: str) -> str:
    """The PIL format a file extension implies (JPEG for .jpg, ...); unknown extensions raise ValueError."""
    Image.init()
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"PIL cannot save the {os.path.splitext(path)[1]!r} format")
    return fmt


def _resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` pixels, keeping the aspect ratio (no crop)."""
    width, height = image.size
    scale = size / min(width, height)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if target == image.size:
        return image
    return image.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)


def _thumbnail_one(src: str, dst: str, size: int) -> str | None:
    """Write one thumbnail atomically; return None, or why the source could not be read."""
    try:
        fmt = _save_format(dst)
        with Image.open(src) as image:
            if image.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale straight from the DCT: much faster
                scale = size / min(image.size)
                image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image.load()
            thumb = _resize_short_side(to_rgb(image), size)
        with atomic_path(dst) as tmp:
            thumb.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
        return None
    except Exception as exc:  # noqa: BLE001 - reported per file, never fatal for the whole cache
        return f"{type(exc).__name__}: {exc}"


def _thumbnail_batch(jobs: list[tuple[str, str, str]], size: int) -> list[tuple[str, str | None]]:
    """Make a batch of thumbnails in a worker process; return (relative path, error or None) per job."""
    return [(rel, _thumbnail_one(src, dst, size)) for rel, src, dst in jobs]


def _thumbnail_jobs(root: Path, out_root: Path) -> tuple[list[tuple[str, str, str]], int]:
    """(relative path, source, destination) for every image whose thumbnail is missing or older; and the total."""
    jobs: list[tuple[str, str, str]] = []
    files = _walk_files(str(root), "")
    for rel in files:
        src, dst = os.path.join(root, rel), os.path.join(out_root, rel)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(dst).st_mtime >= os.stat(src).st_mtime:
                continue
        jobs.append((rel, src, dst))
    return jobs, len(files)


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    return (items[i:i + size] for i in range(0, len(items), size))


def make_thumbnails(
    root: str | os.PathLike[str],
    size: int = 64,
    *,
    out_root: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ThumbnailReport:
    """Write resized copies (shorter side = ``size`` px) of every image under ``root`` into ``out_root``.

    Same relative paths and file names; the format follows the extension. Runs in ``workers`` processes
    (default: all CPUs). Resumable: up-to-date thumbnails are skipped, leftover temporary files removed, and
    each file is written atomically. Unreadable images are listed in ``report.failed`` (and warned about).
    """
    root = _check_folder(root)
    if size < 1:
        raise DatasetError(f"thumbnail size must be a positive number of pixels, got {size}")
    out = Path(out_root) if out_root is not None else thumbnail_root(root, size)
    if out.resolve() == root.resolve():
        raise DatasetError(f"thumbnails would overwrite the originals in {root}: choose another out_root")
    _remove_stale_temps(out)
    jobs, total = _thumbnail_jobs(root, out)
    report = ThumbnailReport(root=root, out_root=out, size=size, total=total, skipped=total - len(jobs))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if len(jobs) < _MIN_JOBS_FOR_POOL:  # starting processes costs more than a handful of images
        workers = 1
    started = time.perf_counter()
    with tqdm(total=len(jobs), desc=f"thumbnails-{size}", unit="img", disable=not progress or not jobs) as bar:
        for results in _run_batches(jobs, size, workers):
            for rel, error in results:
                if error is None:
                    report.written += 1
                else:
                    report.failed.append((rel, error))
            bar.update(len(results))
    report.seconds = time.perf_counter() - started
    report.images_per_second = report.written / report.seconds if report.written and report.seconds > 0 else 0.0
    if report.failed:
        examples = "; ".join(f"{rel} ({why})" for rel, why in report.failed[:3])
        warnings.warn(f"{root}: {len(report.failed)} image(s) could not be read, e.g. {examples}",
                      DatasetWarning, stacklevel=2)
    return report


def _run_batches(jobs: list[tuple[str, str, str]], size: int, workers: int) -> Iterator[list[tuple[str, str | None]]]:
    """Yield thumbnail results batch by batch, in this process (1 worker) or a process pool."""
    batch = max(1, min(64, len(jobs) // (workers * 4) or 1))
    if workers == 1:
        for chunk in _batches(jobs, batch):
            yield _thumbnail_batch(chunk, size)
        return
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_thumbnail_batch, chunk, size) for chunk in _batches(jobs, batch)]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()

