"""Similarity search: the nearest neighbours of an image, filename, vector or new image; outlier scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlab.curation.graph import NeighbourGraph, graph_for
from embedlab.curation.inputs import (
    CurationError,
    QueryLike,
    VectorsLike,
    _check_k,
    _chunk_rows,
    _filenames,
    _normalized,
)
from embedlab.settings import CurationSettings

_DECLARED = CurationSettings()  # the default k of each search, declared once in settings


@dataclass
class Neighbors:
    """The k nearest neighbours of each query: indices into the data, cosine distances, filenames."""

    indices: np.ndarray  # [Q, k] int64, nearest first
    distances: np.ndarray  # [Q, k] float32, cosine distance = 1 - cosine similarity, ascending
    filenames: list[list[str]] | None = None  # [Q][k] when the data carries filenames
    query_indices: list[int | None] = field(default_factory=list)  # the data index of each query, if it had one

    def table(self, query: int = 0) -> Any:
        """Return one query's neighbours as a pandas DataFrame (rank, index, filename, distance)."""
        import pandas as pd

        rows = {
            "rank": np.arange(1, self.indices.shape[1] + 1),
            "index": self.indices[query],
            "distance": np.round(self.distances[query], 4),
        }
        if self.filenames is not None:
            rows["filename"] = self.filenames[query]
        return pd.DataFrame(rows)


def _resolve_query(
    data: VectorsLike, matrix: torch.Tensor, query: QueryLike, model: Any, image_size: int | None
) -> tuple[torch.Tensor, list[int | None]]:
    """Turn an index, filename, vector or new image into normalized query vectors and their data indices."""
    names = _filenames(data)
    items = _query_items(query)
    if isinstance(query, (str, Path)) and _find_name(str(query), names) is None and Path(query).is_file():
        items = None  # a path to an image that is not one of the embedded files: embed it as a new image
    if items is None:  # vectors or images, not references into the data
        if _looks_like_vectors(query, matrix.shape[1]):
            array = np.asarray(query, dtype=np.float32)
            vectors = torch.as_tensor(array.reshape(-1, array.shape[-1]))
        elif isinstance(query, (np.ndarray, torch.Tensor)):
            vectors = _embed_new_images([query], model, image_size)
        else:
            vectors = _embed_new_images(query if isinstance(query, list) else [query], model, image_size)
        if vectors.shape[1] != matrix.shape[1]:
            raise CurationError(
                f"query vectors have {vectors.shape[1]} dimensions but the embeddings have {matrix.shape[1]}; "
                "embed the query with the same model"
            )
        return torch.nn.functional.normalize(vectors.float(), dim=1), [None] * vectors.shape[0]
    indices: list[int] = []
    for item in items:
        if isinstance(item, (int, np.integer)):
            index = int(item)
            if not -matrix.shape[0] <= index < matrix.shape[0]:
                raise CurationError(f"query index {index} is out of range for {matrix.shape[0]} images")
            indices.append(index % matrix.shape[0])
        else:
            indices.append(_index_of(str(item), names))
    return matrix[indices], list(indices)


def _looks_like_vectors(query: Any, dimensions: int) -> bool:
    """True when `query` is a float vector [D] or matrix [Q, D]; uint8 or 3-D arrays are images."""
    if not isinstance(query, (np.ndarray, torch.Tensor)):
        return False
    array = np.asarray(query)
    if array.ndim == 2 and array.shape[-1] != dimensions and array.shape[0] == array.shape[1]:
        return False  # a square float array of the wrong width: a grayscale image, not vectors
    return array.ndim in (1, 2) and np.issubdtype(array.dtype, np.floating)


def _query_items(query: QueryLike) -> list[Any] | None:
    """Return the list of index/filename references in `query`, or None when it holds vectors or images."""
    if isinstance(query, (bool, np.bool_)):
        raise CurationError("a query must be an index, a filename, a vector or an image, not a bool")
    if isinstance(query, (int, np.integer)):
        return [query]
    if isinstance(query, (str, Path)):
        return [query]
    if isinstance(query, (np.ndarray, torch.Tensor)):
        array = np.asarray(query)
        if array.ndim == 1 and np.issubdtype(array.dtype, np.integer):
            return [int(v) for v in array]
        return None
    if isinstance(query, Sequence) and query and all(isinstance(q, (int, np.integer, str, Path)) for q in query):
        return list(query)
    if isinstance(query, Sequence) and not query:
        raise CurationError("the query is empty")
    return None


def _find_name(name: str, names: list[str] | None) -> int | None:
    """Index of embedded filename `name` (exact, or a path ending in exactly one embedded filename), else None."""
    if names is None:
        return None
    normalized = name.replace("\\", "/")
    exact = _name_index(names).get(normalized)
    if exact is not None:
        return exact
    tail = [i for i, f in enumerate(names) if normalized.endswith("/" + f)]
    return tail[0] if len(tail) == 1 else None


def _index_of(name: str, names: list[str] | None) -> int:
    """Return the data index of embedded filename `name`, or raise a CurationError saying what to pass instead."""
    found = _find_name(name, names)
    if found is not None:
        return found
    if names is None:
        raise CurationError(
            f"cannot look up {name!r}: these embeddings have no filenames; query by index or vector instead"
        )
    raise CurationError(
        f"{name!r} is not one of the {len(names)} embedded filenames (e.g. {names[0]!r}) nor an image file; "
        "to search with a new image, pass a PIL image or an image path together with model=..."
    )


_NAME_CACHE: dict[int, tuple[list[str], dict[str, int]]] = {}


def _name_index(names: list[str]) -> dict[str, int]:
    """Map filename -> index (first occurrence), cached for repeated queries on the same list."""
    key = id(names)
    cached = _NAME_CACHE.get(key)
    if cached is None or cached[0] is not names:
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index.setdefault(name, i)
        _NAME_CACHE.clear()
        _NAME_CACHE[key] = (names, index)
        return index
    return cached[1]


def _embed_new_images(images: Sequence[Any], model: Any, image_size: int | None) -> torch.Tensor:
    """Embed PIL images / image paths / image arrays with `model` (a Backbone, a name or a checkpoint path)."""
    if model is None:
        raise CurationError(
            "to search with a new image, also pass model=... (the Backbone, backbone.pt or checkpoint "
            "that made the embeddings), or pass its embedding vector instead"
        )
    from embedlab.transforms import eval_transform

    backbone = model if isinstance(model, torch.nn.Module) else _load_model(model)
    size = image_size or int(getattr(backbone, "meta", {}).get("image_size") or 224)
    prepare = eval_transform(size, getattr(backbone, "name", None))  # as embedding.embed prepares its images
    batch = [prepare(_query_image(image).convert("RGB")) for image in images]
    backbone.eval()
    device = next(backbone.parameters()).device
    with torch.inference_mode():
        return backbone(torch.stack(batch).to(device)).float().cpu().reshape(len(batch), -1)


def _query_image(image: Any) -> Any:
    """A query image as a PIL image: opened from a path, converted from an array, or as given."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"query image not found: {image}")
        image = Image.open(image)
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        image = Image.fromarray(_to_uint8(np.asarray(image)))
    if not isinstance(image, Image.Image):
        raise CurationError(f"cannot use a {type(image).__name__} as a query; pass an index, filename, vector or image")
    return image


def _load_model(model: Any) -> torch.nn.Module:
    """The backbone that a name, run directory, backbone.pt or .ckpt names (models.resolve_backbone)."""
    from embedlab.models import BackboneLoadError, resolve_backbone

    try:
        return resolve_backbone(model)
    except BackboneLoadError as exc:
        if Path(str(model)).exists():
            raise  # the file is there but unusable: BackboneLoadError says why
        raise CurationError(str(exc)) from None


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Convert a float [0, 1] or uint8 image array to uint8 for PIL."""
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)


def nearest_neighbors(
    data: VectorsLike,
    query: QueryLike,
    *,
    k: int = _DECLARED.neighbors_k,
    exclude_self: bool = True,
    model: Any = None,
    image_size: int | None = None,
) -> Neighbors:
    """Find the k most similar images (cosine) to each query, so you can ask "what looks like this?".

    `query` is an image index, a filename from the embeddings ("Forest/forest_12.jpg", or a path ending in
    one), a list of either, a vector / [Q, D] array of vectors, or a new image (PIL image, image array or a
    path to an image file that is not embedded, with `model=` the Backbone, backbone name, exported
    backbone.pt or checkpoint that made the embeddings). With `exclude_self`, a query that is one of the
    embedded images is not returned as its own neighbour.
    """
    matrix = _normalized(data)
    queries, query_indices = _resolve_query(data, matrix, query, model, image_size)
    available = matrix.shape[0] - (1 if exclude_self and any(i is not None for i in query_indices) else 0)
    _check_k(k, available)
    all_indices, all_distances = [], []
    step = _chunk_rows(matrix.shape[0])
    for start in range(0, queries.shape[0], step):
        similarity = queries[start : start + step] @ matrix.T
        if exclude_self:
            for row, index in enumerate(query_indices[start : start + step]):
                if index is not None:
                    similarity[row, index] = -math.inf
        values, indices = torch.topk(similarity, k, dim=1)
        all_indices.append(indices)
        all_distances.append((1.0 - values).clamp_min(0.0))
    indices_np = torch.cat(all_indices).numpy().astype(np.int64)
    names = _filenames(data)
    return Neighbors(
        indices=indices_np,
        distances=torch.cat(all_distances).numpy().astype(np.float32),
        filenames=[[names[i] for i in row] for row in indices_np] if names is not None else None,
        query_indices=query_indices,
    )


def outlier_scores(
    data: VectorsLike,
    *,
    k: int = _DECLARED.outlier_k,
    progress: bool = True,
    graph: NeighbourGraph | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Score every image by the cosine distance to its k-th nearest neighbour: high = unusual, worth a look.

    Using the k-th (not the first) neighbour means a pair of identical odd images still scores as odd. The
    neighbours come from `graph` (a `knn_graph` with at least k neighbours) or from one built with `backend`.
    """
    found = graph_for(data, graph, k, backend, progress)
    return np.maximum(1.0 - found.similarities[:, k - 1], 0.0).astype(np.float32)


def most_unusual(
    data: VectorsLike,
    n: int = 16,
    *,
    k: int = _DECLARED.outlier_k,
    progress: bool = True,
    graph: NeighbourGraph | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Return the indices of the `n` images with the highest outlier score, most unusual first."""
    scores = outlier_scores(data, k=k, progress=progress, graph=graph, backend=backend)
    _check_k(n, scores.shape[0], "n")
    return np.argsort(-scores, kind="stable")[:n]
