"""Use embeddings to curate a dataset: similar images, outliers, near-duplicates, diverse subsets, clusters.

Every function takes an `embedding.Embeddings` object or a plain array / tensor of shape [N, D] and works
with cosine similarity (vectors are L2-normalized first), so the numbers mean the same thing for every model.

Outlier scores, the most unusual images and near-duplicate groups only need each image's nearest neighbours, so they
are read off one k-nearest-neighbour graph (`knn_graph` -> `NeighbourGraph`). Build it once and pass it as `graph=`
to each function; without one, each function builds its own with `backend="auto"`:

- below `graph.AUTO_EXACT_BELOW` (30,000) images, exact search: torch matrix products in chunks (about
  `inputs._CHUNK_ELEMENTS` similarities at a time), N^2 work: on 2 CPU cores and 1280-D vectors 1.7 s for 10,000,
  42 s for 50,000, hours for 1M. `near_duplicates` then compares every pair.
- above it, FAISS (`pip install "embedlab[scale]"`): an HNSW index of the vectors reduced by PCA, whose candidates
  are re-ranked by exact cosine similarity (the settings and how they were chosen: graph.py). recall@10 against
  exact search: 1.0 on the real Fashion-MNIST embeddings; on vectors drawn like them, 0.995 at 100,000 (61 s) and
  0.950 at 1,000,000 (12 minutes; outlier scores and near-duplicates read off it then take 1 s). Near-duplicates are the
  graph's links above the threshold: copies are found, but only through each image's k nearest neighbours.
  Without FAISS, "auto" warns and stays exact; `backend="faiss"` without it is a one-line error saying what to install.

The exact search remains the reference the FAISS graph is tested against. `nearest_neighbors` (queries x N),
`select_diverse` (farthest-point: one pass over the vectors per picked image; 60 of 1,000,000 in 25 s) and
`kmeans_clusters` grow linearly with N and need no graph. benchmarks/_scale_neighbours.py measures all of this.

===========  ==================================================================================
inputs.py    CurationError, the vector checks and chunk sizes every function shares, center
graph.py     NeighbourGraph, knn_graph: each image's nearest neighbours, exact (torch) or FAISS
search.py    nearest_neighbors (by index, filename, vector or new image), outlier_scores, most_unusual
groups.py    near_duplicates, select_diverse, kmeans_clusters, cluster_purity
pictures.py  show_images, show_neighbors
===========  ==================================================================================
"""

from __future__ import annotations

from embedlab.curation.graph import NeighbourGraph, knn_graph
from embedlab.curation.groups import (
    DUPLICATE_THRESHOLD,
    Clusters,
    cluster_purity,
    kmeans_clusters,
    near_duplicates,
    select_diverse,
)
from embedlab.curation.inputs import CurationError, center
from embedlab.curation.pictures import show_images, show_neighbors
from embedlab.curation.search import Neighbors, most_unusual, nearest_neighbors, outlier_scores

__all__ = [
    "DUPLICATE_THRESHOLD",
    "Clusters",
    "CurationError",
    "NeighbourGraph",
    "Neighbors",
    "center",
    "cluster_purity",
    "kmeans_clusters",
    "knn_graph",
    "most_unusual",
    "near_duplicates",
    "nearest_neighbors",
    "outlier_scores",
    "select_diverse",
    "show_images",
    "show_neighbors",
]
