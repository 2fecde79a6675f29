"""Use embeddings to curate a dataset: similar images, outliers, near-duplicates, diverse subsets, clusters.

Every function takes an `embedding.Embeddings` object or a plain array / tensor of shape [N, D] and works
with cosine similarity (vectors are L2-normalized first), so the numbers mean the same thing for every model.

Outlier scores, the most unusual images and near-duplicate groups are read off one k-nearest-neighbour graph
(`knn_graph`, built once and passed as `graph=`): exact below `graph.AUTO_EXACT_BELOW` images, FAISS above it
(graph.py says how its settings were measured). `nearest_neighbors`, `select_diverse` and `kmeans_clusters` grow
linearly with N and need no graph.

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
