"""What every command shares: the one-line error type, argparse value types, loading inputs, printing results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROG = "embedlab"
EMBED_MODELS_HELP = "pca, a backbone name (resnet18, resnet34, resnet50, efficientnet_lite0) or a checkpoint path"


class CommandError(Exception):
    """A command-line input problem; the message is shown as one line."""


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number >= `minimum`, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)


def _workers(text: str) -> int | str:
    """argparse type: 'auto' or an integer >= 0."""
    return text if text == "auto" else _non_negative(text)


def _small_images(text: str) -> bool | str:
    """argparse type: auto / true / false."""
    lowered = text.lower()
    if lowered in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[lowered]
    raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")


def _say(message: str) -> None:
    """Print a result line to stdout (results go to stdout, progress bars to stderr)."""
    print(message, flush=True)


def _load(path: str) -> Any:
    """Load an embeddings file (.pt / .npy / .npz)."""
    from embedlab.embedding import load_embeddings

    if not Path(path).exists():
        raise FileNotFoundError(f"embeddings file not found: {path} (make one with `embedlab embed`)")
    try:
        return load_embeddings(path)
    except (ValueError, RuntimeError) as error:  # name the file when the message does not
        if str(path) in str(error):
            raise
        raise CommandError(f"{path} is not a usable embeddings file: {error}") from error


def _dataset_root(name_or_path: str, data_dir: str, limit: int | None, progress: bool) -> Path:
    """A dataset name (downloaded/prepared into data_dir) or an image folder -> the dataset root."""
    from embedlab import datasets

    if name_or_path not in datasets.DATASETS and not Path(name_or_path).exists():
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a dataset name ({', '.join(sorted(datasets.DATASETS))}) "
            "nor an existing folder"
        )
    return datasets.prepare(name_or_path, data_dir, limit=limit, progress=progress)


def _write_lines(path: str | None, lines: Sequence[str]) -> None:
    """Write lines to a file atomically, or to stdout when no path is given."""
    if path is None:
        for line in lines:
            _say(line)
        return
    from embedlab._io import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)
    print(f"wrote {len(lines)} lines to {path}", file=sys.stderr)
