"""Safe extraction of zip and tar archives (no escaping paths, no links), and finding the image root inside."""

from __future__ import annotations

import contextlib
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from embedlab._io import atomic_open, write_json
from embedlab._progress import tqdm
from embedlab.datasets.errors import DatasetError, UnsafeArchiveError
from embedlab.datasets.images import _image_extensions, _visible

logger = logging.getLogger(__name__)

_EXTRACTED_MARKER = ".embedlab-extracted.json"


@dataclass(frozen=True)
class ExtractLimits:
    """What an archive may unpack to: total bytes, member count and expansion over its own size (a zip bomb's
    0.6 MB that becomes 600 MB is refused before anything is written). The defaults fit the registry's datasets."""

    max_bytes: int = 256 * 2**30
    max_members: int = 5_000_000
    max_ratio: float = 1000.0


DATASET_LIMITS = ExtractLimits()
RESULTS_ARCHIVE_LIMITS = ExtractLimits(max_bytes=8 * 2**30, max_members=200_000, max_ratio=200.0)  # pretrained_url


def _check_limits(archive: Path, members: list[tuple[PurePosixPath, bool, Any]], limits: ExtractLimits) -> None:
    """Refuse, before writing, an archive over its limits or with two members of the same name (the last would win)."""
    files = [(rel, info) for rel, is_dir, info in members if not is_dir]
    total = sum(int(getattr(info, "file_size", getattr(info, "size", 0))) for _, info in files)
    ratio = total / max(archive.stat().st_size, 1)
    seen: set[PurePosixPath] = set()
    for rel, _ in files:
        if rel in seen:
            raise UnsafeArchiveError(f"{archive}: two members are named {rel}; refusing to extract")
        seen.add(rel)
    problems = [
        f"{len(files):,} files (at most {limits.max_members:,})" if len(files) > limits.max_members else "",
        f"{total / 2**30:.1f} GB unpacked (at most {limits.max_bytes / 2**30:.1f})" if total > limits.max_bytes else "",
        f"{ratio:.0f}x its own size unpacked (at most {limits.max_ratio:.0f}x)" if ratio > limits.max_ratio else "",
    ]
    if any(problems):
        raise UnsafeArchiveError(f"{archive}: {'; '.join(p for p in problems if p)}; refusing to extract")


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


def extract(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    progress: bool = True,
    limits: ExtractLimits = DATASET_LIMITS,
) -> Path:
    """Safely extract a zip or tar(.gz/.bz2/.xz) into ``target`` and mark it done; return ``target``.

    Every member is validated before anything is written: absolute paths, ``..``, links, duplicate names and an
    archive over `limits` (size, member count, expansion) raise UnsafeArchiveError and leave the disk untouched.
    A marker file makes a second call a no-op.
    """
    archive, target = Path(archive), Path(target)
    marker = target / _EXTRACTED_MARKER
    if marker.is_file():
        return target
    if not archive.is_file():
        raise DatasetError(f"archive {archive} does not exist")
    with _open_archive(archive) as (members, read):
        _check_limits(archive, members, limits)
        target.mkdir(parents=True, exist_ok=True)
        resolved = target.resolve()
        for rel, _is_dir, _info in members:  # a second check against links already inside target
            if not (resolved / rel).resolve().is_relative_to(resolved):
                raise UnsafeArchiveError(f"{archive}: member {rel} would be written outside {target}")
        try:
            for rel, is_dir, info in tqdm(members, desc=f"extract {archive.name}", unit="file", disable=not progress):
                out = target / rel
                if is_dir:
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                with read(info) as src, atomic_open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except _DAMAGED as exc:
            if isinstance(exc, OSError) and exc.errno is not None:  # the disk (full, no permission), not the archive
                raise
            raise _damaged(archive, exc) from None
    write_json(marker, {"archive": archive.name, "size": archive.stat().st_size, "members": len(members)})
    return target


DAMAGED_ARCHIVE_ERRORS = _DAMAGED = (
    EOFError,
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    OSError,
)
_ARCHIVE_MAGIC = {"zip": (b"PK\x03\x04", b"PK\x05\x06"), "gzip": (b"\x1f\x8b",), "bzip2": (b"BZh",)}
_ARCHIVE_MAGIC["xz"] = (b"\xfd7zXZ\x00",)


def _damaged(archive: Path, exc: BaseException) -> DatasetError:
    """The one-line error for an archive that is cut short or corrupt."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DatasetError(
        f"{archive} is incomplete or damaged ({type(exc).__name__}: {reason}): delete {archive} and run again"
    )


def archive_kind(path: str | os.PathLike[str]) -> str | None:
    """'zip', 'gzip', 'bzip2', 'xz' or 'tar' from a file's first bytes (never its name: a download's temporary
    `.part` name says nothing, and a server's error page saved as `x.zip` is no zip); None for anything else."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    kind = next((k for k, magics in _ARCHIVE_MAGIC.items() if head.startswith(magics)), None)
    return kind or ("tar" if len(head) >= 262 and head[257:262] == b"ustar" else None)


def looks_like_archive(path: str | os.PathLike[str]) -> bool:
    """True when a file's bytes start like a zip / tar / gzip / bzip2 / xz archive (see archive_kind)."""
    return archive_kind(path) is not None


def verify_archive(archive: str | os.PathLike[str]) -> None:
    """Read a zip or tar archive to its very end; DatasetError ("delete it and run again") when cut short or corrupt.

    Zip: every member's CRC. Tar: every member, the compressed stream's end-of-stream marker and the
    end-of-archive blocks. This is how a download whose length the server did not send is proven complete.
    """
    archive = Path(archive)
    try:
        read_to_end(archive)
    except _DAMAGED as exc:
        raise _damaged(archive, exc) from None


def read_to_end(archive: Path) -> None:
    """The reading of verify_archive; the decoder's own exception (one of _DAMAGED) when it fails."""
    if archive_kind(archive) == "zip" and not zipfile.is_zipfile(archive):
        raise zipfile.BadZipFile("a zip without its central directory (cut short)")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
        if bad is not None:
            raise zipfile.BadZipFile(f"member {bad} fails its CRC check")
        return
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            handle = tf.extractfile(member) if member.isfile() else None
            while handle is not None and handle.read(1 << 20):
                pass
        stream = tf.fileobj
        while stream.read(1 << 20):  # a compressed stream must reach its end-of-stream marker
            pass
        _check_tar_end(archive, tf)


def _check_tar_end(archive: Path, tf: tarfile.TarFile) -> None:
    """An uncompressed tar cut at a member boundary reads as a shorter archive: its end-of-archive blocks tell."""
    compressed = type(tf.fileobj).__module__ in ("gzip", "bz2", "lzma")
    if not compressed and archive.stat().st_size < tf.offset + 2 * tarfile.BLOCKSIZE:
        raise tarfile.ReadError("the end-of-archive blocks are missing")


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[tuple[list[tuple[PurePosixPath, bool, Any]], Callable[[Any], Any]]]:
    """Open a zip or tar archive; yield its validated members and a function that opens one for reading."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield _zip_members(archive, zf), zf.open
        return
    if not tarfile.is_tarfile(archive):
        raise DatasetError(
            f"{archive} is neither a zip nor a tar archive (or is cut short): delete {archive} and run again"
        )
    try:
        tf = tarfile.open(archive, "r:*")
        members = _tar_members(archive, tf)
        _check_tar_end(archive, tf)
    except _DAMAGED as exc:
        raise _damaged(archive, exc) from None
    with tf:

        def read(member: tarfile.TarInfo) -> Any:
            handle = tf.extractfile(member)
            assert handle is not None
            return handle

        yield members, read


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
