"""Pictures of curation results: chosen images as a captioned grid, a query next to its neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.curation.inputs import CurationError, VectorsLike, _filenames
from embedlab.curation.search import Neighbors


def show_images(
    data: VectorsLike | Sequence[str],
    indices: Sequence[int] | np.ndarray,
    image_root: str | Path,
    *,
    captions: Sequence[str] | None = None,
    columns: int = 8,
    title: str = "",
    class_labels: bool = True,
) -> Any:
    """Draw the images at `indices` as a grid (plotting.image_grid), each captioned with its class (the folder of a
    "<class>/<file>" name) over `captions` (default: the file name)."""
    from embedlab import plotting

    names = list(data) if isinstance(data, (list, tuple)) else _filenames(data)
    if names is None:
        raise CurationError("these embeddings have no filenames, so there are no images to show")
    chosen = [names[int(i)] for i in np.asarray(indices).reshape(-1)]
    if captions is not None and len(captions) != len(chosen):
        raise CurationError(f"{len(captions)} captions for {len(chosen)} images")
    texts = list(captions) if captions is not None else [name.rsplit("/", 1)[-1] for name in chosen]
    if class_labels:
        classes = [plotting.class_of(name) for name in chosen]  # "" for a flat filename
        texts = [f"{cls}\n{text}" if cls else text for cls, text in zip(classes, texts)]
    root = Path(image_root)
    return plotting.image_grid([root / name for name in chosen], titles=texts, ncols=columns, suptitle=title)


def show_neighbors(
    data: VectorsLike, neighbors: Neighbors, image_root: str | Path, *, query: int = 0, title: str = ""
) -> Any:
    """Draw a query image followed by its neighbours, captioned with class, rank and cosine distance (0 = same)."""
    names = _filenames(data)
    if names is None:
        raise CurationError("these embeddings have no filenames, so there are no images to show")
    query_index = neighbors.query_indices[query] if neighbors.query_indices else None
    indices = list(neighbors.indices[query])
    captions = [f"#{rank} d={d:.3f}" for rank, d in enumerate(neighbors.distances[query], 1)]
    if query_index is not None:
        indices, captions = [query_index, *indices], ["query", *captions]
    return show_images(
        names, indices, image_root, captions=captions, columns=len(indices) if len(indices) <= 9 else 8, title=title
    )
