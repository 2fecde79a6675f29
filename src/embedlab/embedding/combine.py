"""`concatenate_embeddings`: several embedding sets of the same images joined into one, each set weighted equally.

The best thing a user can build without training is often two off-the-shelf sets side by side (the ImageNet network
and raw-pixel PCA: kNN 0.844 on the demo data, against 0.826 for the network alone). Each set is centred (its mean
vector subtracted) and every row L2-normalised before the sets are concatenated, so no set outweighs another
because its vectors are longer, and cosine similarity of the result is the mean of the sets' centred cosines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from embedlab.embedding.store import Embeddings, EmbeddingsError

_PART_KEYS = ("model", "backbone", "weights", "image_size", "embedding_dim", "method", "init", "teacher_of", "source")


def _check_same_images(sets: Mapping[str, Embeddings]) -> None:
    """Every set holds the same images, in the same order, with the same labels; else one clear error."""
    (first, reference), *others = sets.items()
    for name, emb in others:
        if list(emb.filenames) != list(reference.filenames):
            pairs = zip(reference.filenames, emb.filenames)
            where = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
            detail = (
                f"{len(reference)} and {len(emb)} images"
                if where is None
                else f"image {where}: {reference.filenames[where]!r} and {emb.filenames[where]!r}"
            )
            raise EmbeddingsError(
                f"cannot concatenate {first!r} and {name!r}: they hold different images or another order ({detail}); "
                "embed the same folder for both"
            )
        same_labels = (emb.labels is None) == (reference.labels is None) and (
            emb.labels is None or (emb.labels == reference.labels).all()
        )
        if not same_labels:
            raise EmbeddingsError(f"cannot concatenate {first!r} and {name!r}: the same images carry other labels")


def centred_unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    """The vectors with their mean (over the images) subtracted, then every row scaled to length 1: how each part
    of a concatenation, and each teacher of multi-teacher distillation, is put on an equal footing."""
    centred = vectors - vectors.mean(dim=0, keepdim=True)
    return torch.nn.functional.normalize(centred, dim=1)


def _speed(sets: Mapping[str, Embeddings]) -> float | None:
    """Images/s of making every part, when each recorded its speed (PCA does not): None otherwise."""
    speeds = [emb.meta.get("images_per_second") for emb in sets.values()]
    if not all(speeds):
        return None
    return round(1.0 / sum(1.0 / float(s) for s in speeds), 2)  # type: ignore[arg-type]


def concatenate_embeddings(sets: Mapping[str, Embeddings], *, name: str | None = None) -> Embeddings:
    """One set from several sets of the same images: each centred and L2-normalised per row, then concatenated.

    `sets` maps a name to each part, in order (``{"imagenet": ..., "pca": ...}``); every part must hold the same
    filenames in the same order (else EmbeddingsError). The result keeps the filenames, labels and class names; its
    meta records the recipe ("imagenet+pca"), the parts' names and metadata, `image_size` (the first part's: the
    ImageNet network's for imagenet+pca) and `image_sizes` (every part's). `compare` calls a concatenation of
    off-the-shelf sets a "combination": a baseline the trained model must beat.
    """
    if len(sets) < 2:
        raise EmbeddingsError(f"concatenate_embeddings needs at least 2 embedding sets, got {len(sets)}")
    _check_same_images(sets)
    parts = list(sets.values())
    vectors = torch.cat([centred_unit_rows(emb.vectors) for emb in parts], dim=1)
    recipe = "+".join(sets)
    meta: dict[str, Any] = {
        "recipe": recipe,
        "components": list(sets),
        "parts": [{k: emb.meta[k] for k in _PART_KEYS if k in emb.meta} for emb in parts],
        "image_size": next((emb.meta["image_size"] for emb in parts if emb.meta.get("image_size")), None),
        "image_sizes": [emb.meta.get("image_size") for emb in parts],
        "embedding_dim": int(vectors.shape[1]),
        "normalisation": "each part centred, rows L2-normalised, then concatenated",
        "images_per_second": _speed(sets),
    }
    first = parts[0]
    return Embeddings(vectors, first.filenames, first.labels, first.class_names, name=name or recipe, meta=meta)
