"""The thumbnail cache: resized copies of every image, same relative paths, built in parallel and resumable."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from embedlab._io import atomic_path, remove_stale_temps
from embedlab._progress import tqdm
from embedlab.datasets.errors import DatasetError, DatasetWarning
from embedlab.datasets.folder import _check_folder, _walk_files
from embedlab.datasets.images import open_rgb


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
        return (
            f"thumbnails-{self.size}: {self.written} written, {self.skipped} up to date, "
            f"{len(self.failed)} unreadable, {self.images_per_second:.0f} images/s -> {self.out_root}"
        )


_MIN_JOBS_FOR_POOL = 16
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
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


class ThumbnailOutputError(DatasetError):
    """The output cannot be written (read-only, full, not a folder): every image would fail, so stop at once."""


def _thumbnail_one(src: str, dst: str, size: int) -> str | None:
    """Write one thumbnail atomically; return None, or why the source could not be read. A failed write (a
    read-only or full disk) raises ThumbnailOutputError: it is about the output, not the image."""
    try:
        fmt = _save_format(dst)
        # open_rgb: a JPEG decodes at 1/2, 1/4 or 1/8 scale straight from the DCT (much faster), the pixel
        # budget holds, and a 20000x1 strip is center-cropped to 8:1 before it is resized
        thumb = _resize_short_side(open_rgb(src, size), size)
    except DatasetError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - reported per file, never fatal for the whole cache
        return f"{type(exc).__name__}: {exc}"
    try:
        with atomic_path(dst) as tmp:
            thumb.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
    except OSError as exc:
        if exc.errno is None:  # PIL's own "cannot write mode ..." is about the image
            return f"{type(exc).__name__}: {exc}"
        folder = os.path.dirname(dst)
        raise ThumbnailOutputError(f"cannot write thumbnails to {folder}: {exc.strerror} (errno {exc.errno})") from None
    return None


def _thumbnail_batch(jobs: list[tuple[str, str, str]], size: int) -> list[tuple[str, str | None]]:
    """Make a batch of thumbnails in a worker process; return (relative path, error or None) per job."""
    return [(rel, _thumbnail_one(src, dst, size)) for rel, src, dst in jobs]


def _has_size(path: str, size: int) -> bool:
    """Whether an existing thumbnail's shorter side is `size` (its header only)."""
    try:
        with Image.open(path) as image:
            return min(image.size) == size
    except Exception:  # noqa: BLE001 - unreadable: make it again
        return False


def _thumbnail_jobs(root: Path, out_root: Path, size: int) -> tuple[list[tuple[str, str, str]], int]:
    """(relative path, source, destination) for every image whose thumbnail is missing, older or of another size
    (read from its header: a rerun with another --size into the same folder remakes them); and the total."""
    jobs: list[tuple[str, str, str]] = []
    files = _walk_files(str(root), "")
    for rel in files:
        src, dst = os.path.join(root, rel), os.path.join(out_root, rel)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(dst).st_mtime >= os.stat(src).st_mtime and _has_size(dst, size):
                continue
        jobs.append((rel, src, dst))
    return jobs, len(files)


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    return (items[i : i + size] for i in range(0, len(items), size))


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
    remove_stale_temps(out)
    jobs, total = _thumbnail_jobs(root, out, size)
    report = ThumbnailReport(root=root, out_root=out, size=size, total=total, skipped=total - len(jobs))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if len(jobs) < _MIN_JOBS_FOR_POOL:  # starting processes costs more than a handful of images
        workers = 1
    started = time.perf_counter()
    with (
        tqdm(total=len(jobs), desc=f"thumbnails-{size}", unit="img", disable=not progress or not jobs) as bar,
        contextlib.closing(_run_batches(jobs, size, workers)) as batches,
    ):
        for results in batches:
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
        warnings.warn(
            f"{root}: {len(report.failed)} image(s) could not be read, e.g. {examples}", DatasetWarning, stacklevel=2
        )
    return report


def _run_batches(jobs: list[tuple[str, str, str]], size: int, workers: int) -> Iterator[list[tuple[str, str | None]]]:
    """Yield thumbnail results batch by batch, in this process (1 worker) or a process pool."""
    batch = max(1, min(64, len(jobs) // (workers * 4) or 1))
    if workers == 1:
        for chunk in _batches(jobs, batch):
            yield _thumbnail_batch(chunk, size)
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),)
    )
    try:
        futures = [pool.submit(_thumbnail_batch, chunk, size) for chunk in _batches(jobs, batch)]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()
    except BaseException:  # Ctrl+C, an error, or the caller stopped early: stop the workers now, not after the queue
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _worker_init(parent_pid: int) -> None:
    """In each pool worker: leave Ctrl+C to the parent, and die with the parent even if it is killed (SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    threading.Thread(target=_watch_parent, args=(parent_pid, os.getppid()), daemon=True).start()


def die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel sends this process SIGTERM when its parent dies, even by SIGKILL (a worker must not
    outlive the command that started it)."""
    if sys.platform.startswith("linux") and os.getppid() == parent_pid:  # forked by the parent itself
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _watch_parent(parent_pid: int, first_ppid: int, interval: float = 1.0) -> None:
    """Exit this worker once the parent is gone (other systems, forkserver workers, and start-up races)."""
    while os.getppid() == first_ppid and _alive(parent_pid):
        time.sleep(interval)
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Cancel queued batches and terminate the workers at once (shutdown alone would wait for running ones)."""
    processes = list(getattr(pool, "_processes", {}).values())  # CPython keeps the worker Process objects here
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)
