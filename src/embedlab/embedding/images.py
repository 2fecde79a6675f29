"""The images `embed` reads: decoded, resized + centre-cropped uint8 tensors in dataset order, in batches.

This is the fast path of `transforms.eval_transform` (the same Resize + CenterCrop, with the normalisation done
per batch on the device); `embedding_transform` is the per-image version for everything else.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlab.embedding.store import EmbeddingsError


def resize_crop(image: Any, size: int) -> Any:
    """torchvision's Resize(size) + CenterCrop(size) on a PIL image, skipping the steps that change nothing."""
    from PIL import Image

    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short != size:
        new_short, new_long = size, int(size * long / short)
        w, h = (new_short, new_long) if w <= h else (new_long, new_short)
        image = image.resize((w, h), Image.BILINEAR)
    if (w, h) != (size, size):
        top, left = round((h - size) / 2.0), round((w - size) / 2.0)
        image = image.crop((left, top, left + size, top + size))
    return image


def open_image(path: str | os.PathLike[str], size: int) -> Any:
    """Decode an image as RGB within the pixel budget; a big JPEG decodes at a reduced scale still >= size (PIL
    draft: 2-3x faster); an extreme aspect ratio is center-cropped first (see embedlab.datasets.open_rgb)."""
    from embedlab.datasets import open_rgb

    return open_rgb(path, size)


class FolderImages(torch.utils.data.Dataset):
    """(uint8 [S, S, 3] tensor, label, filename) for chosen images of an ImageFolder: the lean loader of embed()."""

    def __init__(self, folder: Any, size: int, indices: list[int] | None = None) -> None:
        chosen = range(len(folder.filenames)) if indices is None else indices
        self.root = Path(folder.root)
        self.size = size
        self.filenames = [folder.filenames[i] for i in chosen]
        self.labels = [int(folder.labels[i]) for i in chosen]
        self.classes = list(folder.classes)
        self.labeled = bool(getattr(folder, "labeled", True))
        self.skipped: list[tuple[str, str]] = list(getattr(folder, "skipped", []))  # found when the folder was read

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str, str]:
        """(image, label, filename, error): decoded, resized + center-cropped, HWC uint8 (normalised per batch on
        the device). A file that fails to decode gives a blank image and the reason as ``error`` ("" when fine):
        the embedding loop drops such rows and reports them, so no image ever gets a silent zero vector."""
        from embedlab.datasets import DatasetError

        filename = self.filenames[index]
        try:
            image = resize_crop(open_image(self.root / filename, self.size), self.size)
        except DatasetError as exc:
            blank = torch.zeros((self.size, self.size, 3), dtype=torch.uint8)
            return blank, self.labels[index], filename, " ".join(str(exc).split())
        return torch.from_numpy(np.array(image, dtype=np.uint8)), self.labels[index], filename, ""


def embedding_transform(image_size: int, backbone: Any = None) -> Callable[[Any], torch.Tensor]:
    """PIL image -> normalised float tensor for one image: `transforms.eval_transform` (kept under this name)."""
    from embedlab.transforms import eval_transform

    return eval_transform(image_size, getattr(backbone, "name", backbone))


def _dataset(data: Any, size: int, limit: int | None, verify: str = "header") -> FolderImages:
    """The images to embed: a dataset folder path or an embedlab ImageFolder (its own transform is not used)."""
    from embedlab.datasets import ImageFolder

    if isinstance(data, (str, os.PathLike)):
        return FolderImages(ImageFolder(data, limit_per_class=limit, verify=verify), size)
    if not all(hasattr(data, a) for a in ("root", "filenames", "labels", "classes")):
        raise EmbeddingsError(f"data must be a dataset folder or an embedlab ImageFolder, not {type(data).__name__}")
    if limit is None:
        return FolderImages(data, size)
    taken: dict[int, int] = {}
    indices = []
    for i, label in enumerate(data.labels):  # the first `limit` images of each class, in order
        if taken.get(label, 0) < limit:
            taken[label] = taken.get(label, 0) + 1
            indices.append(i)
    return FolderImages(data, size, indices)


def _loader(dataset: Any, batch_size: int, device: torch.device, num_workers: int | str) -> Any:
    """Ordered DataLoader; pinned memory on CUDA; 'auto' workers from `runtime.embed_workers`."""
    from embedlab.runtime import embed_workers, loader_worker_init

    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=embed_workers(num_workers, device.type),
        pin_memory=device.type == "cuda",
        drop_last=False,
        worker_init_fn=loader_worker_init,
    )


def _batches(loader: Any, batch_size: int, pad: bool) -> Iterator[tuple[torch.Tensor, int, Any, list[str], list[str]]]:
    """(images, n_real, labels, filenames, errors) per batch; with pad, every batch is padded to batch_size."""
    for images, labels, filenames, errors in loader:
        n = len(images)
        if pad and n < batch_size:
            images = torch.cat([images, images[-1:].expand(batch_size - n, *images.shape[1:])])
        yield images, n, labels, list(filenames), list(errors)


def _report_skipped(skipped: list[tuple[str, str]], root: Any, listed_in: str = "") -> list[dict[str, str]]:
    """Warn once about the images left out (every one, or where all are listed) and return them for the meta."""
    if skipped:
        from embedlab.datasets.errors import DatasetWarning, name_skipped

        where = listed_in or "meta['skipped_images'] and, once saved, <name>.skipped.json"
        warnings.warn(
            f"{root}: skipped {len(skipped)} file(s) that could not be used (they have no vector): "
            f"{name_skipped(skipped, where)}",
            DatasetWarning,
            stacklevel=3,
        )
    return [{"filename": name, "reason": why} for name, why in skipped]


def _class_info(dataset: FolderImages) -> tuple[list[str] | None, bool]:
    """Class names and whether the labels mean anything (a folder of loose images is unlabeled)."""
    return (dataset.classes or None), dataset.labeled
