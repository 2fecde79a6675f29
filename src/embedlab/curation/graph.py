"""One k-nearest-neighbour graph of the whole collection (exact torch or approximate FAISS), shared by curation.

Outlier scores, the most unusual images and near-duplicate groups only need each image's nearest neighbours, so
they are all read off one graph: build it once with `knn_graph` and pass it as `graph=` to each function.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embedlab.curation.inputs import CurationError, VectorsLike, _check_k, _chunk_rows, _normalized
from embedlab.settings import CurationSettings

#: The names `backend=` accepts; declared once with the CLI's `--backend` in `settings.CurationSettings`.
BACKENDS: tuple[str, ...] = CurationSettings.SEARCH_BACKENDS

#: Neighbours per image when a function builds the graph for itself (near-duplicates: the links it can see).
GRAPH_K = 10

#: "auto" searches exactly below this many images, about where the two cost the same (benchmarks/_scale_neighbours.py,
#: 2 CPU cores, 1280-D vectors): exact 6.5 s at 20,000 and 42 s at 50,000 (it grows with N^2); FAISS 9.2 s and 22 s
#: (recall@10 0.999 and 0.998). Below it, exact search is about as fast and misses nothing.
AUTO_EXACT_BELOW = 30_000

#: The FAISS settings, chosen by measurement (benchmarks/_scale_neighbours.py --compare, 2 CPU cores, side by side on
#: 100,000 vectors drawn from a Gaussian fitted to the real 1280-D EfficientNet-Lite0 embeddings of Fashion-MNIST):
#: an HNSW graph (32 links) of the vectors reduced by PCA to 128 dimensions, searched with efSearch=128 for
#: `RERANK_FACTOR` x (k + 1) candidates, which are re-ranked by exact cosine similarity in all dimensions:
#: recall@10 0.995 in 61 s. Alternatives: 4x candidates 0.985 in 53 s; efSearch=64 0.976 in 53 s; PCA to 64
#: dimensions 0.981 in 48 s; HNSW32 on all 1280 dimensions (no PCA, 4x) 0.968 in 117 s. 8x rather than 4x also
#: keeps vectors with no dominant directions right (3,000 isotropic 384-D clustered vectors: 0.9995 against 0.938).
#: At 1,000,000 vectors: recall@10 0.950, 12.1 minutes. On the real embeddings (10,000): recall@10 1.0 in 4.9 s.
#: PCA alone loses neighbours (real embeddings, flat index, no re-ranking: recall@10 0.85 at 128 dimensions, 0.90
#: at 256); re-ranking wins them back, and the index holds 128 floats per image, not 1280 (0.5 GB at 1M, not 5 GB).
#: L2 in PCA space ranks unit vectors like cosine does; inner product there would not (the PCA removes the mean).
FAISS_PCA_DIMS = 128
FAISS_HNSW_LINKS = 32
FAISS_EF_SEARCH = 128
RERANK_FACTOR = 8
FAISS_TRAIN_ROWS = 100_000  # the PCA is fitted on a seeded sample of this many rows
SEARCH_ROWS = 8_192  # queries per FAISS search call, so the progress bar moves
INSTALL_HINT = 'pip install "embedlab[scale]"'


@dataclass
class NeighbourGraph:
    """Each image's k nearest other images by cosine similarity, most similar first (self excluded)."""

    indices: np.ndarray  # [N, k] int64
    similarities: np.ndarray  # [N, k] float32 cosine similarity, descending along each row
    backend: str  # "exact", or the FAISS index that found the candidates (e.g. "faiss PCA128,HNSW32 efSearch=128")

    @property
    def k(self) -> int:
        """Neighbours per image."""
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def knn_graph(
    data: VectorsLike,
    k: int = GRAPH_K,
    *,
    backend: str = "auto",
    progress: bool = True,
    index: str | None = None,
    ef_search: int = FAISS_EF_SEARCH,
) -> NeighbourGraph:
    """Find every image's k nearest neighbours (cosine), once, for all the curation functions to share.

    backend: "exact" (chunked torch all-pairs: N^2 work, the reference), "faiss" (approximate, for large
    collections; needs `pip install "embedlab[scale]"`) or "auto" (exact below `AUTO_EXACT_BELOW` images, else
    FAISS when installed). `index` overrides the FAISS index factory string (e.g. "HNSW32" or "IVF1024,Flat");
    FAISS results can vary slightly from run to run (its index is built by several threads).
    """
    matrix = _normalized(data)
    _check_k(k, matrix.shape[0] - 1)
    chosen = resolve_backend(backend, matrix.shape[0])
    if chosen == "exact":
        values, indices = _all_pairs_topk(matrix, k, progress, "neighbour graph")
        return NeighbourGraph(indices.numpy().astype(np.int64), values.numpy().astype(np.float32), "exact")
    return _faiss_graph(matrix, k, progress, index or faiss_index_string(matrix.shape[1]), ef_search)


def resolve_backend(backend: str, rows: int) -> str:
    """The backend that runs: "exact" or "faiss" ("auto" decides by size and by whether FAISS is installed)."""
    if backend not in BACKENDS:
        raise CurationError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "faiss":
        _import_faiss()
    if backend != "auto":
        return backend
    if rows < AUTO_EXACT_BELOW:
        return "exact"
    try:
        _import_faiss()
    except CurationError:
        warnings.warn(
            f"exact search over {rows} images grows with N^2 (minutes); for FAISS: {INSTALL_HINT}", stacklevel=3
        )
        return "exact"
    return "faiss"


def graph_for(data: VectorsLike, graph: NeighbourGraph | None, k: int, backend: str, progress: bool) -> NeighbourGraph:
    """The given graph, checked to fit the data and to hold k neighbours, or a new one (k neighbours, `backend`)."""
    if graph is None:
        return knn_graph(data, k, backend=backend, progress=progress)
    rows = len(getattr(data, "vectors", data))
    if len(graph) != rows:
        raise CurationError(f"the graph has {len(graph)} images but the data has {rows}; build it from this data")
    if graph.k < k:
        raise CurationError(f"k={k} needs a graph of at least {k} neighbours; this one has {graph.k}")
    _check_k(k, graph.k)
    return graph


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


# --------------------------------------------------------------------------------------------- FAISS


def _import_faiss() -> Any:
    """The faiss module, or a one-line CurationError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise CurationError(f"backend='faiss' needs the faiss-cpu package: {INSTALL_HINT}") from None
    return faiss


def faiss_index_string(dimensions: int) -> str:
    """The FAISS index factory string for vectors of this width: PCA first only when it shrinks them a lot."""
    hnsw = f"HNSW{FAISS_HNSW_LINKS}"
    return f"PCA{FAISS_PCA_DIMS},{hnsw}" if dimensions > 2 * FAISS_PCA_DIMS else hnsw


def _faiss_graph(matrix: torch.Tensor, k: int, progress: bool, description: str, ef_search: int) -> NeighbourGraph:
    """Build the FAISS index once, search it in chunks for candidates, re-rank them by exact cosine similarity."""
    from embedlab._progress import tqdm

    faiss = _import_faiss()
    vectors = matrix.numpy()
    index = _build_index(faiss, vectors, description, progress)
    settings = f" efSearch={ef_search}" if "HNSW" in description else ""
    if settings:
        faiss.ParameterSpace().set_index_parameter(index, "efSearch", ef_search)
    n = matrix.shape[0]
    wanted = min(n, RERANK_FACTOR * (k + 1))
    indices = np.empty((n, k), dtype=np.int64)
    similarities = np.empty((n, k), dtype=np.float32)
    for start in tqdm(range(0, n, SEARCH_ROWS), desc="searching", disable=not progress, unit="chunk"):
        stop = min(n, start + SEARCH_ROWS)
        _, candidates = index.search(vectors[start:stop], wanted)
        similarities[start:stop], indices[start:stop] = _rerank(matrix, start, candidates, k)
    _search_missing(matrix, indices, similarities)
    return NeighbourGraph(indices, similarities, f"faiss {description}{settings}")


def _build_index(faiss: Any, vectors: np.ndarray, description: str, progress: bool) -> Any:
    """A FAISS index of the unit vectors (L2 metric: for unit vectors it ranks like cosine), trained and filled."""
    from embedlab._progress import tqdm

    index = faiss.index_factory(vectors.shape[1], description, faiss.METRIC_L2)
    if not index.is_trained:  # the PCA: fitted on a seeded sample
        rows = vectors.shape[0]
        sample = np.sort(np.random.default_rng(0).choice(rows, min(rows, FAISS_TRAIN_ROWS), replace=False))
        index.train(vectors[sample])
    for start in tqdm(range(0, vectors.shape[0], 4 * SEARCH_ROWS), desc="building index", disable=not progress):
        index.add(vectors[start : start + 4 * SEARCH_ROWS])
    return index


def _rerank(matrix: torch.Tensor, start: int, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates of rows start.. by exact cosine similarity; self and missing (-1) ones rank last."""
    found = torch.as_tensor(candidates)
    values, indices = [], []
    step = _chunk_rows(candidates.shape[1] * matrix.shape[1])  # gathered candidate vectors stay within a chunk
    for first in range(0, found.shape[0], step):
        block = found[first : first + step]
        rows = torch.arange(start + first, start + first + block.shape[0])
        similarity = torch.einsum("qd,qcd->qc", matrix[rows], matrix[block.clamp_min(0)])
        similarity[(block < 0) | (block == rows[:, None])] = -math.inf
        best, order = torch.topk(similarity, k, dim=1)
        values.append(best)
        indices.append(block.gather(1, order))
    return torch.cat(values).numpy(), torch.cat(indices).numpy()


def _search_missing(matrix: torch.Tensor, indices: np.ndarray, similarities: np.ndarray) -> None:
    """Rows where the index returned fewer than k other images (rare) get their neighbours by exact search."""
    rows = np.flatnonzero(~np.isfinite(similarities).all(axis=1))
    if rows.size == 0:
        return
    similarity = matrix[rows] @ matrix.T
    similarity[torch.arange(rows.size), torch.as_tensor(rows)] = -math.inf
    values, found = torch.topk(similarity, indices.shape[1], dim=1)
    similarities[rows], indices[rows] = values.numpy(), found.numpy()
