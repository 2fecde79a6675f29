"""Groups of images: near-duplicates, a diverse subset to label first, k-means clusters and their purity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embedlab.curation.graph import GRAPH_K, NeighbourGraph, graph_for, resolve_backend
from embedlab.curation.inputs import CurationError, VectorsLike, _check_k, _chunk_rows, _labels, _normalized
from embedlab.settings import CurationSettings

#: The settings' default (notebook 06, `embedlab explore`), so the function and the notebooks agree.
DUPLICATE_THRESHOLD: float = CurationSettings.__dataclass_fields__["duplicate_threshold"].default

# --------------------------------------------------------------------------------------------- duplicates


def near_duplicates(
    data: VectorsLike,
    *,
    threshold: float = DUPLICATE_THRESHOLD,
    progress: bool = True,
    graph: NeighbourGraph | None = None,
    backend: str = "auto",
) -> list[list[int]]:
    """Group images whose cosine similarity is >= `threshold` (linked transitively), to find repeated photos.

    Returns groups of 2+ image indices, each sorted ascending; groups sorted largest first, then by first index.
    A threshold near 1.0 finds copies and re-encodes; lower values also link crops and near-identical scenes.
    Exact search (small sets) compares every pair. With `graph=`, or with FAISS (large sets), a pair is only
    seen when one image is among the other's k nearest neighbours (`GRAPH_K` = 10 unless the graph has more):
    copies are still grouped, but two big groups linked only by pairs beyond k neighbours stay apart.
    """
    if not -1.0 <= threshold <= 1.0:
        raise CurationError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    rows = len(getattr(data, "vectors", data))
    if graph is None and resolve_backend(backend, rows) == "exact":
        return _groups(_all_pairs_components(_normalized(data), threshold, progress))
    found = graph_for(data, graph, min(GRAPH_K, rows - 1) if graph is None else 1, backend, progress)
    linked = found.similarities >= threshold - 1e-6
    images = np.broadcast_to(np.arange(len(found))[:, None], found.indices.shape)
    return _groups(_components(len(found), images[linked], found.indices[linked]))


def _all_pairs_components(matrix: torch.Tensor, threshold: float, progress: bool) -> np.ndarray:
    """Component labels of the graph of all pairs with similarity >= threshold, merged chunk by chunk."""
    from embedlab._progress import tqdm

    n = matrix.shape[0]
    labels = np.arange(n)
    step = _chunk_rows(n)
    for start in tqdm(range(0, n, step), desc="near-duplicates", disable=not progress or n <= step, unit="chunk"):
        similarity = matrix[start : start + step] @ matrix[start:].T  # only pairs (i, j) with j >= start
        rows, cols = torch.nonzero(similarity >= threshold - 1e-6, as_tuple=True)
        keep = cols > rows  # each pair once, without an image's pair with itself
        if bool(keep.any()):  # merge these links with the groups found so far (edges image -> its group's label)
            a, b = (rows[keep] + start).numpy(), (cols[keep] + start).numpy()
            labels = _components(n, np.concatenate([a, np.arange(n)]), np.concatenate([b, labels]))
    return labels


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components of the undirected graph with edges a[i]-b[i], each labelled by its smallest image."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n))
    _, component = connected_components(edges, directed=False)
    _, first = np.unique(component, return_index=True)  # the smallest image of each component
    return first[component]


def _groups(labels: np.ndarray) -> list[list[int]]:
    """Images with the same label as groups of 2+ (ascending), largest group first, then by first index."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    found = [members.tolist() for members in np.split(order, bounds) if members.size > 1]
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
