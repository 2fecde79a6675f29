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
from embedlab.settings import PROJECTION_METHODS as METHODS
from embedlab.settings import ProjectionSettings

_DECLARED = ProjectionSettings()  # the UMAP defaults, declared once in settings
MAX_FIT = 100_000  # UMAP/PCA fit on at most this many points (a seeded sample); the rest are placed by transform
TRANSFORM_CHUNK = 50_000  # points placed per transform call: memory stays bounded for a million


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


def pca_components(dimensions: int, shape: tuple[int, ...]) -> int:
    """The components PCA keeps of [N, D] data: min(dimensions, N - 1, D), at least 1 (N centred vectors span at
    most N - 1 directions; one more component would be a column of zeros)."""
    return max(1, min(int(dimensions), shape[0] - 1, shape[1]))


def reduce_pca(vectors: Any, dimensions: int, *, seed: int = 0) -> tuple[np.ndarray, float]:
    """[N, D] vectors (array, tensor or Embeddings) -> ([N, k] float32, share of the variance kept), with
    k = pca_components(dimensions, (N, D)): fewer components when there are fewer images or features."""
    array = as_array(vectors)
    pca = pca_reducer(pca_components(dimensions, array.shape), seed)
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
        n_neighbors: int = _DECLARED.umap_n_neighbors,
        min_dist: float = _DECLARED.umap_min_dist,
        metric: str = "cosine",
        perplexity: float = 30.0,
        max_fit: int | None = MAX_FIT,
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
        self.max_fit = max_fit  # None: fit on every point (t-SNE always does: it cannot place new points)
        self.sample_indices_: np.ndarray | None = None  # the points the reducer was fitted on (None: all)
        self.reducer: Any = None
        self.points_: np.ndarray | None = None
        self.n_fit_: int = 0
        self.made_from_: dict[str, Any] | None = None  # what the map was made from (save_points keys the file by it)

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
        """Fit on `vectors` and return their 2-D points [N, 2]. Past `max_fit` points (UMAP, PCA) the reducer is
        fitted on a seeded sample of max_fit (`sample_indices_`) and the others are placed with `transform`, in
        chunks: a million points cost a 100k fit plus transforms instead of a fit at the memory edge."""
        array = as_array(vectors)
        n = len(array)
        if n < 3:
            raise ProjectionError(f"need at least 3 points to project {self.name or 'embeddings'!r}, got {n}")
        array = _pad_dims(array)
        sample = self._sample(n)
        fit_on = array if sample is None else array[sample]
        self.reducer = self._make_reducer(len(fit_on))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            fitted = np.asarray(self.reducer.fit_transform(fit_on), dtype=np.float32)
        self.sample_indices_, self.n_fit_ = sample, len(fit_on)
        self.made_from_ = self.key(array)
        if sample is None:
            self.points_ = fitted
        else:
            self.points_ = np.empty((n, 2), dtype=np.float32)
            self.points_[sample] = fitted
            rest = np.setdiff1d(np.arange(n), sample)
            for start in range(0, len(rest), TRANSFORM_CHUNK):
                chunk = rest[start : start + TRANSFORM_CHUNK]
                self.points_[chunk] = self.transform(array[chunk])
        return self.points_

    def key(self, vectors: Any) -> dict[str, Any]:
        """What a map of `vectors` by this projector is made from: method, its settings and the vectors' fingerprint.
        A saved map is reused only when this matches (`load_or_project`)."""
        settings = {"seed": self.seed, "metric": self.metric, "max_fit": self.max_fit}
        settings.update(
            {
                "tsne": {"perplexity": self.perplexity},
                "umap": {"n_neighbors": self.n_neighbors, "min_dist": self.min_dist},
            }.get(self.method, {})
        )
        return {"method": self.method, **settings, "vectors": fingerprint(as_array(vectors))}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fitted 2-D points with what they were made from (for `load_or_project`)."""
        if self.points_ is None:
            raise ProjectionError(f"Projector {self.name!r} is not fitted: call fit() first")
        return save_points(self.points_, path, made_from=self.made_from_)

    def _sample(self, n: int) -> np.ndarray | None:
        """Sorted indices of the seeded fitting sample, or None when every point is fitted."""
        if self.max_fit is None or n <= self.max_fit or self.method == "tsne":
            return None
        if self.max_fit < 3:
            raise ProjectionError(f"max_fit must be at least 3 (or None), got {self.max_fit}")
        return np.sort(np.random.default_rng(self.seed).choice(n, self.max_fit, replace=False))

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
    n_neighbors: int = _DECLARED.umap_n_neighbors,
    min_dist: float = _DECLARED.umap_min_dist,
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


def neighbour_preservation(vectors: Any, points: Any, *, k: int = 10, queries: int = 2000, seed: int = 0) -> float:
    """How well a 2-D map keeps neighbourhoods: for up to `queries` seeded points, the share of their k nearest
    neighbours in the embedding (cosine) that are also among their k nearest in the map (1.0: all kept)."""
    from sklearn.neighbors import NearestNeighbors

    array, flat = as_array(vectors), np.asarray(points, dtype=np.float32)
    if len(array) != len(flat) or len(array) <= k:
        raise ProjectionError(f"need as many points as vectors and more than k={k}: {len(flat)} vs {len(array)}")
    chosen = np.random.default_rng(seed).choice(len(array), min(queries, len(array)), replace=False)
    high = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(array).kneighbors(array[chosen])[1][:, 1:]
    low = NearestNeighbors(n_neighbors=k + 1).fit(flat).kneighbors(flat[chosen])[1][:, 1:]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(high, low)]))


def fingerprint(array: np.ndarray) -> str:
    """A short digest of a vector set (its shape and up to 1,000 evenly spaced rows): tells two sets apart cheaply."""
    import hashlib

    rows = np.linspace(0, len(array) - 1, num=min(len(array), 1000)).astype(int) if len(array) else []
    digest = hashlib.sha256(repr(array.shape).encode())
    digest.update(np.ascontiguousarray(array[rows], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _key_path(path: str | os.PathLike[str]) -> Path:
    return Path(path).with_suffix(".json")


def save_points(
    points: np.ndarray, path: str | os.PathLike[str], *, made_from: Mapping[str, Any] | None = None
) -> Path:
    """Save 2-D points as .npy, atomically, with what they were made from (`Projector.key`) beside them as .json."""
    from embedlab._io import write_json

    with atomic_open(path, "wb") as handle:
        np.save(handle, np.asarray(points, dtype=np.float32))
    if made_from is not None:
        write_json(_key_path(path), dict(made_from))
    else:
        _key_path(path).unlink(missing_ok=True)
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
    """Reuse the saved 2-D map of this embedding set when it was made from the same vectors with the same method and
    settings (its .json key), else project and save them: a PCA map never comes back labelled UMAP."""
    import json

    array = as_array(vectors)
    target = Path(path)
    projector = Projector(method, name=target.stem, **kwargs)
    try:
        if json.loads(_key_path(target).read_text(encoding="utf-8")) == projector.key(array):
            return load_points(target, expected_rows=len(array))
    except (ProjectionError, ValueError, OSError):
        pass
    projector.fit(array)
    projector.save(target)
    return projector.points_  # type: ignore[return-value]
