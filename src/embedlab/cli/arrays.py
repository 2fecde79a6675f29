"""A .npy array of images as embed input: written out as an image folder, embeddings put back in row order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedlab.cli.common import CommandError

NPY_IMAGES = (".npy",)
_CHECK_ROWS = 1024  # rows checked at a time: a memory-mapped array is never loaded whole


def _check_float_images(array: Any, path: Path) -> None:
    """Refuse float images with NaN/inf pixels or values outside [0, 1]: they would become silently wrong PNGs."""
    import numpy as np

    bad_rows: list[int] = []
    low, high = np.inf, -np.inf
    for start in range(0, len(array), _CHECK_ROWS):
        chunk = np.asarray(array[start : start + _CHECK_ROWS], dtype=np.float64)
        chunk = chunk.reshape(len(chunk), -1)
        finite = np.isfinite(chunk).all(axis=1)
        bad_rows.extend(start + int(i) for i in np.flatnonzero(~finite))
        if finite.any():
            low, high = min(low, float(chunk[finite].min())), max(high, float(chunk[finite].max()))
    if bad_rows:
        rows = ", ".join(map(str, bad_rows[:5])) + (", ..." if len(bad_rows) > 5 else "")
        raise CommandError(
            f"{path}: {len(bad_rows)} image(s) hold NaN or infinite pixels (rows {rows}); fix or "
            "drop those rows (nothing was embedded)"
        )
    if low < 0.0 or high > 1.0:
        hint = " (0..255 data: divide by 255 or save it as uint8)" if high <= 255.0 and low >= 0.0 else ""
        raise CommandError(f"{path}: float pixels range from {low:g} to {high:g}; expected [0, 1]{hint}")


def _integer_labels(labels: Any) -> Any:
    """Labels as int64, refusing NaN/inf or fractional values (a cast would silently change them)."""
    import numpy as np

    values = np.asarray(labels).reshape(-1)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind != "f" or not np.isfinite(values).all() or not (values == np.round(values)).all():
        raise CommandError(
            f"--labels must hold whole numbers, one per image (got dtype {values.dtype} with "
            "non-integer, NaN or infinite values)"
        )
    return values.astype(np.int64)


class ArrayImages:
    """Images from a .npy array (N,H,W) or (N,H,W,C), uint8 or float in [0, 1], written out as an image folder.

    embed() reads image folders, so the array becomes PNGs in a temporary folder (one subfolder per label);
    `restore` then puts the embeddings back in row order with the row numbers as filenames.
    """

    def __init__(self, path: str | Path, labels: Any = None) -> None:
        import numpy as np

        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError) as error:
            raise CommandError(f"{path} is not a readable .npy array ({error})") from None
        if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3, 4)) or len(array) == 0:
            raise CommandError(
                f"{path} holds an array of shape {array.shape}; expected images (N, H, W) or (N, H, W, C) with "
                "C in 1, 3, 4"
            )
        if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
            raise CommandError(f"{path} has dtype {array.dtype}; expected uint8 or float images in [0, 1]")
        if labels is not None and len(labels) != len(array):
            raise CommandError(f"{len(labels)} labels for {len(array)} images in {path}")
        if np.issubdtype(array.dtype, np.floating):
            _check_float_images(array, Path(path))
        self.array = array
        self.path = Path(path)
        self.labels = None if labels is None else _integer_labels(labels)

    def write_folder(self, folder: Path, progress: bool) -> Path:
        """Write every image as <folder>/<label or 'images'>/<row>.png and return the folder."""
        import numpy as np
        from PIL import Image

        from embedlab._progress import tqdm

        for row in tqdm(range(len(self.array)), desc=f"unpack {self.path.name}", disable=not progress, unit="img"):
            image = np.asarray(self.array[row])
            if image.dtype != np.uint8:
                image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            target = folder / ("images" if self.labels is None else str(self.labels[row])) / f"{row:08d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).convert("RGB").save(target)
        return folder

    def restore(self, emb: Any) -> Any:
        """Embeddings in row order, filenames = row numbers, labels/classes from the given labels (or none)."""
        import numpy as np

        from embedlab.embedding import Embeddings

        rows = np.asarray([int(Path(name).stem) for name in emb.filenames])
        order = np.argsort(rows)
        width = len(str(len(self.array) - 1))
        labels = class_names = None
        if self.labels is not None:  # only the rows embedded (--limit may have skipped some)
            values = np.unique(self.labels)
            labels = np.searchsorted(values, self.labels[rows[order]])
            class_names = [str(v) for v in values]
        meta = {**emb.meta, "data_root": str(self.path)}
        return Embeddings(
            emb.vectors[order], [f"{r:0{width}d}" for r in rows[order]], labels, class_names, emb.name, meta
        )
