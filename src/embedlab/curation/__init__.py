"""Use embeddings to curate a dataset: similar images, outliers, near-duplicates, diverse subsets, clusters.

Every function takes an `embedding.Embeddings` object or a plain array / tensor of shape [N, D] and works
with cosine similarity (vectors are L2-normalized first), so the numbers mean the same thing for every model.

Search is exact and brute force with torch matrix products, in chunks so memory stays bounded
(about `inputs._CHUNK_ELEMENTS` similarities at a time). Measured on 2 busy CPU cores with 10,000 x 512 vectors:
100 queries 0.3 s, all-pairs outlier scores 3.5 s, near-duplicates 2.9 s; all-pairs work grows with N^2, so
100,000 images take several minutes (on the CPU: the vectors are moved there). That is the practical limit of
exact search here; beyond it, build an approximate index:
FAISS (`faiss.IndexFlatIP` / `IndexHNSWFlat` on the normalized vectors), hnswlib (`space="cosine"`)
or pynndescent; the functions here then become the reference to check the index against.

===========  ==================================================================================
inputs.py    CurationError, the vector checks and chunk sizes every function shares, center
search.py    nearest_neighbors (by index, filename, vector or new image), outlier_scores
groups.py    near_duplicates, select_diverse, kmeans_clusters, cluster_purity
pictures.py  show_images, show_neighbors
===========  ==================================================================================
"""

from __future__ import annotations

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
