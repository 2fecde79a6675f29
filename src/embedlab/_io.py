"""Small file helpers shared by every stage: atomic writes, so an interrupted run never leaves half a file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _current_umask() -> int:
    """Return the process umask (reading it requires setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the name is cut so that a long one (up to the file system's 255 bytes) still has room for the suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would (0666 minus umask).
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces `path` when the block finishes without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def write_failed(path: str | os.PathLike[str], error: BaseException) -> OSError:
    """A failed write as one OSError naming the file and the free space (torch reports a full disk only as
    'unexpected pos'), so every command can show it as one line."""
    if isinstance(error, OSError) and str(error).startswith("could not write "):
        return error  # already said
    folder = Path(path).parent
    with contextlib.suppress(OSError):
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free there"
    except OSError:
        free = "free space unknown"
    reason = " ".join(str(error).split()) or type(error).__name__
    return OSError(f"could not write {path} ({reason}; {free}): free some space or choose another location")


def torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """torch.save, atomically; a failed write (a full disk) is an OSError from write_failed."""
    import torch

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except (RuntimeError, OSError) as error:
            raise write_failed(path, error) from None
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as indented JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    return Path(path)


def remove_stale_temps(folder: str | os.PathLike[str], *, recursive: bool = True, prefix: str = ".") -> int:
    """Delete the temporary files (``.<name>.*.tmp``) that an interrupted atomic write left; return how many.

    A process killed between writing and renaming leaves such a file; the next run calls this on its folders
    (``prefix=".<name>."`` limits it to the leftovers of one target file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for dirpath, _dirnames, filenames in walker:
        for name in filenames:
            if name.startswith(prefix) and name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed
