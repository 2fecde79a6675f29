"""Where relative paths point: $EMBEDLAB_ROOT, else the embedlab checkout above the working folder, else the
working folder, so a notebook finds the same files whoever runs it and from where; and the local copy of a folder
on Google Drive, which training would otherwise read over the network every epoch. Standard library only."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT_ENV = "EMBEDLAB_ROOT"
DRIVE_MOUNT = Path("/content/drive")  # Google Drive on Colab: every file read goes over the network
LOCAL_COPIES = Path(tempfile.gettempdir()) / "embedlab-local"  # the runtime's own disk (Colab: the VM's)
COPIED = ".copied"  # written into a local copy once it is complete


def find_project_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the embedlab checkout containing `start` (a folder with pyproject.toml and notebooks/), or None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def base_dir() -> Path:
    """Folder that relative paths resolve against: $EMBEDLAB_ROOT, else the repo root above the cwd, else the cwd."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return find_project_root() or Path.cwd().resolve()


def resolve_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> Path:
    """Make `path` absolute predictably (against `base`, else base_dir()), whoever runs the notebook and from where."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (Path(base) if base is not None else base_dir()).joinpath(p).resolve()


def on_drive(path: str | os.PathLike[str]) -> bool:
    """True for a path under Colab's Google Drive mount."""
    return Path(path).resolve().is_relative_to(DRIVE_MOUNT.resolve())


def local_copy(folder: str | os.PathLike[str]) -> Path:
    """`folder` itself, or when it lies on Google Drive, its copy on local disk: made once, file by file (a copy cut
    short resumes with the files still missing) and reused once complete, so epochs never read from Drive."""
    folder = Path(folder).resolve()
    if not on_drive(folder):
        return folder
    target = LOCAL_COPIES / folder.relative_to(DRIVE_MOUNT.resolve())
    if (target / COPIED).is_file():
        return target
    print(f"Copying {folder} from Google Drive to this runtime's disk ({target}), once: read from there", flush=True)
    for source in sorted(path for path in folder.rglob("*") if path.is_file()):
        copy = target / source.relative_to(folder)
        if copy.is_file() and copy.stat().st_size == source.stat().st_size:
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(f".{copy.name}.part")  # hidden: never read as an image
        shutil.copyfile(source, partial)
        os.replace(partial, copy)
    (target / COPIED).write_text("complete\n", encoding="utf-8")
    return target
