"""The dataset registry (name -> source, size, licence, citation) and prepare(): any dataset ready on disk."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from embedlab._io import atomic_path, write_json
from embedlab._progress import tqdm
from embedlab.datasets.archives import _EXTRACTED_MARKER, extract, find_image_root
from embedlab.datasets.downloads import _filename_from_url, download, download_record, read_download_record
from embedlab.datasets.errors import DatasetError, DownloadError
from embedlab.datasets.fashion_mnist import _PREPARED_MARKER, _prepare_fashion_mnist
from embedlab.datasets.folder import LEFT_OUT, ImageFolder, _check_limit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from, what it holds, and how to credit it."""

    name: str
    title: str
    url: str | None  # None = embedded in the package
    filename: str | None = None  # archive file name under <data_dir>/<name>/downloads/
    sha256: str | None = None
    size: int | None = None  # archive size in bytes, when known
    md5: str | None = None  # the digest maintained loaders publish (torchvision, torchgeo)
    checksum_source: str = ""  # where a pinned checksum is published
    num_images: int | None = None
    num_classes: int | None = None
    image_format: str = ""
    homepage: str = ""
    license: str = ""
    citation: str = ""


_TORCHGEO_HF = "https://huggingface.co/datasets/torchgeo/"  # torchgeo's mirrors, pinned to a revision
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
        url=_TORCHGEO_HF + "eurosat/resolve/c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
        filename="EuroSAT.zip",
        md5="c8fa014336c82ac7804f0398fcb19387",
        checksum_source="torchvision's EuroSAT loader (pytorch/vision, torchvision/datasets/eurosat.py)",
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
        url=_TORCHGEO_HF + "ucmerced/resolve/7c5ef3454d9b1cccfa7ccde0c01fc8f00a45909a/UCMerced_LandUse.zip",
        filename="UCMerced_LandUse.zip",
        md5="5b7ec56793786b6dc8a908e8854ac0e4",
        checksum_source=(
            "torchgeo's UCMerced loader (microsoft/torchgeo, torchgeo/datasets/ucmerced.py), which checked the same "
            "MD5 against the authors' http://weegee.vision.ucmerced.edu archive before moving to this mirror"
        ),
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


def prepare(
    name_or_path: str | os.PathLike[str] | DatasetSpec,
    data_dir: str | os.PathLike[str] = "data",
    *,
    limit: int | None = None,
    progress: bool = True,
    url: str | None = None,
    keep_archive: bool = False,
) -> Path:
    """Make a dataset ready on disk and return its root (the folder whose subfolders are classes).

    A registry name (see DATASETS) is downloaded/written under ``data_dir/<name>/raw``; a Path or a string
    that is not a registry name is treated as a local folder of images and validated. ``limit`` keeps that many
    images per class (balanced). ``url`` overrides the registry's download URL (a mirror, or a test server).
    The downloaded archive is deleted once its extraction is verified and recorded (its size and SHA-256 stay in
    the marker file), unless ``keep_archive``: on Colab it would take as much disk again (2.5 GB for AID).
    """
    _check_limit(limit)
    spec = _resolve_spec(name_or_path)
    if spec is None:
        return _prepare_local(Path(name_or_path), Path(data_dir), limit=limit, progress=progress)  # type: ignore[arg-type]
    if spec.url is None and url is None:
        return _prepare_fashion_mnist(Path(data_dir), limit=limit, progress=progress)
    if url is not None:  # another source: the registry's size/checksum describe a different file
        spec = dataclasses.replace(spec, url=url, sha256=None, size=None, md5=None)
    raw = _prepare_download(spec, Path(data_dir) / spec.name, progress=progress, keep_archive=keep_archive)
    return raw if limit is None else _make_subset(raw, raw.parent / f"subset-{limit}", limit, progress=progress)


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


def _prepare_download(spec: DatasetSpec, base: Path, *, progress: bool, keep_archive: bool = False) -> Path:
    """Download, extract and normalize a registry dataset into base/raw; a completion marker makes reruns free."""
    raw = base / "raw"
    marker = base / _PREPARED_MARKER
    if marker.is_file() and raw.is_dir():
        logger.info("%s: already prepared in %s", spec.name, raw)
        return raw
    assert spec.url is not None
    target = base / "downloads" / (spec.filename or _filename_from_url(spec.url))
    try:
        archive = download(spec.url, target, sha256=spec.sha256, size=spec.size, md5=spec.md5, progress=progress)
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
    record = read_download_record(archive) or {}
    write_json(
        marker,
        {
            "dataset": spec.name,
            "url": spec.url,
            "archive": archive.name,
            "classes": counts,
            "archive_size": record.get("size", archive.stat().st_size),
            "archive_sha256": record.get("sha256"),
        },
    )
    if not keep_archive:  # extracted, verified and recorded: the archive is no longer needed
        archive.unlink(missing_ok=True)
        download_record(archive).unlink(missing_ok=True)
    return raw


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
    if folder.skipped:  # listed in the subset, so that every later step names them (ImageFolder reads it)
        write_json(
            out / LEFT_OUT, {"source": str(root), "skipped": [{"filename": f, "reason": r} for f, r in folder.skipped]}
        )
    write_json(marker, {"source": str(root), "limit": limit, "images": len(subset)})
    return out
