"""Reduce embeddings to 2-D (UMAP, PCA, t-SNE), seeded, with one named reducer per embedding set.

`umap` is imported only when a UMAP projection is asked for: its first use in a process pays ~20-30 s of numba JIT.
Keep one `Projector` per embedding set: transforming set B with the reducer fitted on set A (the published
tutorial's bug) silently draws B in A's map.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from embedlab._io import atomic_open

METHODS = ("umap", "pca", "tsne")


class ProjectionError(ValueError):
    """Projection input or use is invalid (too few points, NaNs, transform before fit, ...)."""


def as_array(vectors: Any) -> np.ndarray:
    """Return a float32 [N, D] numpy array from a numpy array, torch tensor or Embeddings object."""
    if hasattr(vectors, "vectors") and not isinstance(vectors, np.ndarray):
        vectors = vectors.vectors
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().cpu().numpy()
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ProjectionError(f"expected a 2-D array [N, D] of vectors, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ProjectionError("vectors contain NaN or infinite values; check the model that produced them")
    return array


def pca_reducer(components: int, seed: int = 0) -> Any:
    """The one PCA of embedlab (sklearn's, seeded): 2-D maps, the raw-pixel baseline and `reduce_pca` all use it."""
    from sklearn.decomposition import PCA

    return PCA(n_components=components, random_state=seed)


def reduce_pca(vectors: Any, dimensions: int, *, seed: int = 0) -> tuple[np.ndarray, float]:
    """[N, D] vectors (array, tensor or Embeddings) -> ([N, k] float32, share of the variance kept), with
    k = min(dimensions, N, D) and at least 1: fewer components when there are fewer images or features."""
    array = as_array(vectors)
    pca = pca_reducer(max(1, min(int(dimensions), *array.shape)), seed)
    reduced = np.asarray(pca.fit_transform(array), dtype=np.float32)
    return reduced, float(pca.explained_variance_ratio_.sum())


class Projector:
    """A 2-D reducer fitted on one embedding set; `name` says which, so it is never reused on another set."""

    def __init__(
        self,
        method: str = "umap",
        *,
        name: str = "",
        seed: int = 0,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "cosine",
        perplexity: float = 30.0,
    ) -> None:
        if method not in METHODS:
            raise ProjectionError(f"unknown projection method {method!r}; use one of {', '.join(METHODS)}")
        self.method = method
        self.name = name
        self.seed = seed
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.perplexity = perplexity
        self.reducer: Any = None
        self.points_: np.ndarray | None = None
        self.n_fit_: int = 0

    def __repr__(self) -> str:
        state = f"fitted on {self.n_fit_} points" if self.reducer is not None else "not fitted"
        return f"Projector({self.method!r}, name={self.name!r}, {state})"

    def _make_reducer(self, n: int) -> Any:
        """Build the underlying reducer, clamping neighbourhood sizes for tiny N."""
        if self.method == "pca":
            return pca_reducer(2, self.seed)
        if self.method == "tsne":
            from sklearn.manifold import TSNE

            perplexity = float(min(self.perplexity, max(1.0, (n - 1) / 3)))
            return TSNE(n_components=2, perplexity=perplexity, random_state=self.seed, init="pca", metric=self.metric)
        with warnings.catch_warnings():  # umap imports tqdm.auto, which warns in kernels without ipywidgets
            warnings.filterwarnings("ignore", message="IProgress not found")
            import umap  # lazy: numba JIT on first use

        return umap.UMAP(
            n_components=2,
            n_neighbors=max(2, min(self.n_neighbors, n - 1)),
            min_dist=self.min_dist,
            metric=self.metric,
            random_state=self.seed,
            n_jobs=1,
            init="spectral" if n > 10 else "random",
        )

    def fit_transform(self, vectors: Any) -> np.ndarray:
        """Fit on `vectors` and return their 2-D points [N, 2]."""
        array = as_array(vectors)
        n = len(array)
        if n < 3:
            raise ProjectionError(f"need at least 3 points to project {self.name or 'embeddings'!r}, got {n}")
        array = _pad_dims(array)
        self.reducer = self._make_reducer(n)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            points = self.reducer.fit_transform(array)
        self.points_ = np.asarray(points, dtype=np.float32)
        self.n_fit_ = n
        return self.points_

    def fit(self, vectors: Any) -> Projector:
        """Fit on `vectors`; the fitted points are in `points_`."""
        self.fit_transform(vectors)
        return self

    def transform(self, vectors: Any) -> np.ndarray:
        """Place new vectors of the SAME embedding set into this fitted map (not possible for t-SNE)."""
        if self.reducer is None:
            raise ProjectionError(f"Projector {self.name!r} is not fitted: call fit() first")
        if self.method == "tsne":
            raise ProjectionError("t-SNE cannot place new points; fit a new Projector on all points instead")
        array = _pad_dims(as_array(vectors))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            return np.asarray(self.reducer.transform(array), dtype=np.float32)


def _pad_dims(array: np.ndarray) -> np.ndarray:
    """Pad 1-D vectors with a zero column so every reducer gets at least 2 dimensions."""
    if array.shape[1] >= 2:
        return array
    return np.concatenate([array, np.zeros((len(array), 2 - array.shape[1]), dtype=array.dtype)], axis=1)


def project(
    vectors: Any,
    method: str = "umap",
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
) -> np.ndarray:
    """Reduce vectors [N, D] to 2-D points [N, 2] with a fresh, seeded reducer."""
    projector = Projector(method, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric)
    return projector.fit_transform(vectors)


def project_all(embeddings: Mapping[str, Any], method: str = "umap", **kwargs: Any) -> dict[str, Projector]:
    """Fit one named Projector per embedding set (never one reducer for several sets)."""
    projectors: dict[str, Projector] = {}
    for name, vectors in embeddings.items():
        projectors[name] = Projector(method, name=name, **kwargs).fit(vectors)
    return projectors


def save_points(points: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save 2-D points as .npy, atomically."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, np.asarray(points, dtype=np.float32))
    return Path(path)


def load_points(path: str | os.PathLike[str], expected_rows: int | None = None) -> np.ndarray:
    """Load 2-D points; raise ProjectionError if the row count does not match the embedding set."""
    points = np.load(Path(path))
    if points.ndim != 2 or points.shape[1] != 2:
        raise ProjectionError(f"{path}: expected [N, 2] points, got shape {points.shape}")
    if expected_rows is not None and len(points) != expected_rows:
        raise ProjectionError(
            f"{path} has {len(points)} points but the embedding set has {expected_rows}; re-run the projection"
        )
    return points


def load_or_project(vectors: Any, path: str | os.PathLike[str], method: str = "umap", **kwargs: Any) -> np.ndarray:
    """Reuse saved 2-D points for this embedding set when they match its size, else project and save them."""
    array = as_array(vectors)
    target = Path(path)
    if target.exists():
        try:
            return load_points(target, expected_rows=len(array))
        except (ProjectionError, ValueError, OSError):
            pass
    points = Projector(method, name=target.stem, **kwargs).fit_transform(array)
    save_points(points, target)
    return points
