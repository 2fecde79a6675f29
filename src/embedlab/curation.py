"""Use embeddings to curate a dataset: similar images, outliers, near-duplicates, diverse subsets, clusters.

Every function takes an `embedding.Embeddings` object or a plain array / tensor of shape [N, D] and works
with cosine similarity (vectors are L2-normalized first), so the numbers mean the same thing for every model.

Search is exact and brute force with torch matrix products, in chunks so memory stays bounded
(about `_CHUNK_ELEMENTS` similarities at a time). Measured on 2 busy CPU cores with 10,000 x 512 vectors:
100 queries 0.3 s, all-pairs outlier scores 3.5 s, near-duplicates 2.9 s; all-pairs work grows with N^2, so
100,000 images take several minutes (on the CPU: the vectors are moved there). That is the practical limit of
exact search here; beyond it, build an approximate index:
FAISS (`faiss.IndexFlatIP` / `IndexHNSWFlat` on the normalized vectors), hnswlib (`space="cosine"`)
or pynndescent; the functions here then become the reference to check the index against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from embedlab.embedding import Embeddings

__all__ = [
    "Clusters",
    "CurationError",
    "Neighbors",
    "center",
    "cluster_purity",
    "kmeans_clusters",
    "most_unusual",
    "near_duplicates",
    "nearest_neighbors",
    "outlier_scores",
    "select_diverse",
    "show_images",
    "show_neighbors",
]

#: How many similarities one chunk may hold (float32: 4 bytes each -> 128 MiB).
_CHUNK_ELEMENTS = 2**25

VectorsLike = Union["Embeddings", np.ndarray, torch.Tensor, Sequence[Sequence[float]]]
QueryLike = int | str | Path | Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor | Any


class CurationError(ValueError):
    """A curation input is unusable (empty, wrong shape, unknown filename, bad parameter)."""


# --------------------------------------------------------------------------------------------- inputs


def _vectors(data: VectorsLike) -> torch.Tensor:
    """Return the raw float32 [N, D] matrix of an Embeddings object or array-like."""
    raw = getattr(data, "vectors", data)
    if isinstance(raw, torch.Tensor):
        matrix = raw.detach().to("cpu", torch.float32)
    else:
        matrix = torch.as_tensor(np.asarray(raw, dtype=np.float32))
    if matrix.ndim != 2:
        raise CurationError(f"expected embeddings of shape [N, D], got shape {tuple(matrix.shape)}")
    if matrix.shape[0] == 0:
        raise CurationError("the embeddings are empty (0 rows): embed some images first")
    if not torch.isfinite(matrix).all():
        raise CurationError("the embeddings contain NaN or infinite values; re-embed the images")
    return matrix


def _normalized(data: VectorsLike) -> torch.Tensor:
    """Return the rows L2-normalized, so a dot product is the cosine similarity."""
    return torch.nn.functional.normalize(_vectors(data), dim=1)


def _filenames(data: VectorsLike) -> list[str] | None:
    """Return the filenames stored with the embeddings, if any."""
    names = getattr(data, "filenames", None)
    return list(names) if names is not None else None


def _labels(data: VectorsLike | np.ndarray | Sequence[int] | None) -> np.ndarray | None:
    """Return integer labels from an Embeddings object or an array, or None."""
    if data is None:
        return None
    raw = getattr(data, "labels", data) if hasattr(data, "vectors") else data
    if raw is None:
        return None
    return np.asarray(raw).astype(np.int64).reshape(-1)


def _chunk_rows(n_columns: int) -> int:
    """Rows per chunk so that one chunk of similarities stays within `_CHUNK_ELEMENTS`."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_columns))


def _check_k(k: int, available: int, what: str = "k") -> None:
    """Raise a clear error when `k` is not in 1..available."""
    if k < 1:
        raise CurationError(f"{what} must be at least 1, got {k}")
    if k > available:
        raise CurationError(f"{what}={k} is larger than the {available} candidate images; use a smaller {what}")


def center(data: VectorsLike) -> Any:
    """Subtract the mean vector, so cosine similarity measures how images differ rather than what they share.

    CNN features are non-negative (ReLU, then average pooling), so every pair of raw vectors has a high cosine
    similarity (often 0.8-0.99) and fixed thresholds mean little; centred vectors spread over the whole range.
    Returns an Embeddings copy (same filenames and labels) for an Embeddings input, else a float32 array.
    """
    matrix = _vectors(data)
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    if hasattr(data, "vectors") and hasattr(data, "filenames"):
        import copy

        result = copy.copy(data)
        result.vectors = centred
        meta = dict(getattr(data, "meta", {}) or {})
        meta["centered"] = True
        result.meta = meta
        return result
    return centred.numpy()


# --------------------------------------------------------------------------------------------- search


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
    from PIL import Image

    from embedlab.embedding import embedding_transform

    backbone = model if isinstance(model, torch.nn.Module) else _load_model(model)
    size = image_size or int(getattr(backbone, "meta", {}).get("image_size") or 224)
    prepare = embedding_transform(size, backbone)  # the same resize + crop + normalization as embedding.embed
    batch = []
    for image in images:
        if isinstance(image, (str, Path)):
            if not Path(image).is_file():
                raise FileNotFoundError(f"query image not found: {image}")
            image = Image.open(image)
        elif isinstance(image, (np.ndarray, torch.Tensor)):
            image = Image.fromarray(_to_uint8(np.asarray(image)))
        if not isinstance(image, Image.Image):
            raise CurationError(
                f"cannot use a {type(image).__name__} as a query; pass an index, filename, vector or image"
            )
        batch.append(prepare(image.convert("RGB")))
    backbone.eval()
    device = next(backbone.parameters()).device
    with torch.inference_mode():
        return backbone(torch.stack(batch).to(device)).float().cpu().reshape(len(batch), -1)


def _load_model(model: Any) -> torch.nn.Module:
    """Load a backbone from a name, an exported backbone.pt or a Lightning checkpoint."""
    from embedlab import models

    text = str(model)
    if Path(text).exists():
        return models.load_backbone(text)
    if text in models.BACKBONE_NAMES:
        return models.create_backbone(text, weights="imagenet")
    raise CurationError(f"model {text!r} is neither a file nor one of {', '.join(models.BACKBONE_NAMES)}")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Convert a float [0, 1] or uint8 image array to uint8 for PIL."""
    if array.dtype == np.uint8:
        return array
    return (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)


def nearest_neighbors(
    data: VectorsLike,
    query: QueryLike,
    *,
    k: int = 8,
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


def _all_pairs_topk(matrix: torch.Tensor, k: int, progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine similarities of every row against all others (self excluded), chunked."""
    from embedlab._progress import tqdm

    n = matrix.shape[0]
    step = _chunk_rows(n)
    values_out = torch.empty(n, k)
    indices_out = torch.empty(n, k, dtype=torch.int64)
    for start in tqdm(range(0, n, step), desc=desc, disable=not progress or n <= step, unit="chunk"):
        stop = min(n, start + step)
        similarity = matrix[start:stop] @ matrix.T
        rows = torch.arange(stop - start)
        similarity[rows, rows + start] = -math.inf
        values_out[start:stop], indices_out[start:stop] = torch.topk(similarity, k, dim=1)
    return values_out, indices_out


def outlier_scores(data: VectorsLike, *, k: int = 5, progress: bool = True) -> np.ndarray:
    """Score every image by the cosine distance to its k-th nearest neighbour: high = unusual, worth a look.

    Using the k-th (not the first) neighbour means a pair of identical odd images still scores as odd.
    """
    matrix = _normalized(data)
    _check_k(k, matrix.shape[0] - 1)
    values, _ = _all_pairs_topk(matrix, k, progress, "outlier scores")
    return (1.0 - values[:, k - 1]).clamp_min(0.0).numpy().astype(np.float32)


def most_unusual(data: VectorsLike, n: int = 16, *, k: int = 5, progress: bool = True) -> np.ndarray:
    """Return the indices of the `n` images with the highest outlier score, most unusual first."""
    scores = outlier_scores(data, k=k, progress=progress)
    _check_k(n, scores.shape[0], "n")
    return np.argsort(-scores, kind="stable")[:n]


# --------------------------------------------------------------------------------------------- duplicates


class _UnionFind:
    """Disjoint sets over 0..n-1, to merge near-duplicate pairs into groups."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        """Return the root of i's set (with path halving)."""
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def union(self, a: int, b: int) -> None:
        """Merge the sets of a and b (the smaller root becomes the root, so results are deterministic)."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def near_duplicates(data: VectorsLike, *, threshold: float = 0.95, progress: bool = True) -> list[list[int]]:
    """Group images whose cosine similarity is >= `threshold` (linked transitively), to find repeated photos.

    Returns groups of 2+ image indices, each sorted ascending; groups sorted largest first, then by first index.
    A threshold near 1.0 finds copies and re-encodes; lower values also link crops and near-identical scenes.
    """
    if not -1.0 <= threshold <= 1.0:
        raise CurationError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    from embedlab._progress import tqdm

    matrix = _normalized(data)
    n = matrix.shape[0]
    sets = _UnionFind(n)
    step = _chunk_rows(n)
    for start in tqdm(range(0, n, step), desc="near-duplicates", disable=not progress or n <= step, unit="chunk"):
        stop = min(n, start + step)
        similarity = matrix[start:stop] @ matrix[start:].T  # only pairs (i, j) with j >= start
        rows, cols = torch.nonzero(similarity >= threshold - 1e-6, as_tuple=True)
        for a, b in zip((rows + start).tolist(), (cols + start).tolist()):
            if a < b:
                sets.union(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(sets.find(i), []).append(i)
    found = [members for members in groups.values() if len(members) > 1]
    return sorted(found, key=lambda members: (-len(members), members[0]))


# --------------------------------------------------------------------------------------------- selection


def select_diverse(
    data: VectorsLike, n: int, *, seed: int = 0, start: int | None = None, progress: bool = True
) -> np.ndarray:
    """Pick `n` images that cover the embedding space (greedy k-center / farthest-point sampling).

    The first image is `start` (or drawn with `seed`); each next one is the image farthest (cosine) from
    everything picked so far. Use it to choose what to label first: a diverse subset beats a random one
    when classes are unbalanced. Returns indices in the order picked; deterministic for a given seed.
    """
    from embedlab._progress import tqdm

    matrix = _normalized(data)
    total = matrix.shape[0]
    _check_k(n, total, "n")
    first = int(np.random.default_rng(seed).integers(total)) if start is None else int(start)
    if not 0 <= first < total:
        raise CurationError(f"start={start} is out of range for {total} images")
    picked = [first]
    distance = (1.0 - matrix @ matrix[first]).clamp_min(0.0)
    distance[first] = -1.0
    for _ in tqdm(range(n - 1), desc="diverse subset", disable=not progress or n < 200, unit="img"):
        nxt = int(torch.argmax(distance))
        picked.append(nxt)
        distance = torch.minimum(distance, (1.0 - matrix @ matrix[nxt]).clamp_min(0.0))
        distance[picked] = -1.0
    return np.asarray(picked, dtype=np.int64)


# --------------------------------------------------------------------------------------------- clusters


@dataclass
class Clusters:
    """k-means result: a cluster id per image, the unit-length centres, and the sum of cosine distances."""

    labels: np.ndarray  # [N] int64 cluster ids 0..k-1
    centers: np.ndarray  # [k, D] float32, L2-normalized
    inertia: float  # sum over images of (1 - cosine similarity to its centre)
    iterations: int

    @property
    def sizes(self) -> np.ndarray:
        """Number of images in each cluster."""
        return np.bincount(self.labels, minlength=self.centers.shape[0])


def _kmeans_plus_plus(matrix: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Choose k initial centres spread out over the data (k-means++ with cosine distance)."""
    n = matrix.shape[0]
    centers = [int(torch.randint(n, (1,), generator=generator))]
    closest = (1.0 - matrix @ matrix[centers[0]]).clamp_min(0.0)
    for _ in range(1, k):
        weights = closest.double()
        if float(weights.sum()) <= 0:  # fewer distinct points than k: take any unused point
            choice = next(i for i in range(n) if i not in centers)
        else:
            choice = int(torch.multinomial(weights, 1, generator=generator))
        centers.append(choice)
        closest = torch.minimum(closest, (1.0 - matrix @ matrix[choice]).clamp_min(0.0))
    return matrix[centers].clone()


def _kmeans_once(matrix: torch.Tensor, k: int, generator: torch.Generator, max_iter: int) -> Clusters:
    """One run of spherical k-means (cosine) from a k-means++ start."""
    centers = _kmeans_plus_plus(matrix, k, generator)
    labels = torch.full((matrix.shape[0],), -1, dtype=torch.int64)
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 (the count is reported after the loop)
        similarity, new_labels = (matrix @ centers.T).max(dim=1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
        sums = torch.zeros_like(centers).index_add_(0, labels, matrix)
        empty = sums.norm(dim=1) == 0
        if empty.any():  # re-seed empty clusters with the points worst served by their centre
            worst = torch.argsort(similarity)[: int(empty.sum())]
            sums[empty] = matrix[worst]
        centers = torch.nn.functional.normalize(sums, dim=1)
    similarity = (matrix @ centers.T).gather(1, labels[:, None]).squeeze(1)
    return Clusters(
        labels=labels.numpy().astype(np.int64),
        centers=centers.numpy().astype(np.float32),
        inertia=float((1.0 - similarity).sum()),
        iterations=iteration,
    )


def kmeans_clusters(
    data: VectorsLike, n_clusters: int, *, seed: int = 0, n_init: int = 3, max_iter: int = 100
) -> Clusters:
    """Cluster the images with k-means on cosine similarity (spherical k-means), the best of `n_init` starts.

    Clusters found without labels are a quick way to see what the model groups together; compare them with
    the classes using `cluster_purity`.
    """
    matrix = _normalized(data)
    _check_k(n_clusters, matrix.shape[0], "n_clusters")
    if n_init < 1 or max_iter < 1:
        raise CurationError(f"n_init and max_iter must be >= 1, got {n_init} and {max_iter}")
    generator = torch.Generator().manual_seed(seed)
    runs = [_kmeans_once(matrix, n_clusters, generator, max_iter) for _ in range(n_init)]
    return min(runs, key=lambda result: result.inertia)


def cluster_purity(clusters: Clusters | np.ndarray | Sequence[int], labels: Any) -> float:
    """Fraction of images whose cluster's majority class is their own class (1.0 = clusters match classes).

    `labels` is an array of class ids or an Embeddings object with labels. Purity rises with the number of
    clusters (one image per cluster is perfectly pure), so compare it at k = number of classes.
    """
    assigned = np.asarray(getattr(clusters, "labels", clusters)).astype(np.int64).reshape(-1)
    truth = _labels(labels)
    if truth is None:
        raise CurationError("cluster purity needs class labels; these embeddings have none")
    if truth.shape[0] != assigned.shape[0]:
        raise CurationError(f"{assigned.shape[0]} cluster ids but {truth.shape[0]} labels; they must match")
    if assigned.size == 0:
        raise CurationError("no images to score")
    if truth.min() < 0 or assigned.min() < 0:
        raise CurationError("labels and cluster ids must be non-negative integers")
    table = np.zeros((assigned.max() + 1, truth.max() + 1), dtype=np.int64)
    np.add.at(table, (assigned, truth), 1)
    return float(table.max(axis=1).sum() / assigned.shape[0])


# --------------------------------------------------------------------------------------------- pictures


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
        texts = [f"{_class_of(name)}{text}" for name, text in zip(chosen, texts)]
    root = Path(image_root)
    return plotting.image_grid([root / name for name in chosen], titles=texts, ncols=columns, suptitle=title)


def _class_of(filename: str) -> str:
    """The class folder of a "<Class>/<file>" filename plus a newline, or "" for a flat filename."""
    return filename.split("/", 1)[0] + "\n" if "/" in filename else ""


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
