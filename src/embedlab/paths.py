"""Where relative paths point: $EMBEDLAB_ROOT, else the embedlab checkout above the working folder, else the
working folder, so a notebook finds the same files whoever runs it and from where. Standard library only."""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "EMBEDLAB_ROOT"


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
