"""Curation past 100k vectors: the FAISS neighbour graph's recall@10 against exact search, and how long the graph and
every curation function read from it take at 100k and 1M vectors.

- **real**: the shipped Fashion-MNIST (10,000 images) through the shipped ImageNet network (EfficientNet-Lite0 at
  64 px): the FAISS graph against the exact graph on every image (recall@10), both timed.
- **gaussian**: N vectors drawn from a Gaussian fitted to those real embeddings (their mean and covariance): the
  graph build, recall@10 on 1,000 seeded queries against exact search, then outlier scores, the most unusual
  images, near-duplicate groups and a diverse subset of 60, each timed (wall and CPU seconds, peak RSS so far).

Functions return row dicts for bench_scale.py; `main()` is a quick look:

    flock /tmp/embedlab-cpu.lock .venv/bin/python benchmarks/_scale_neighbours.py --vectors 100000
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _machine import machine_info, save_result

QUERIES = 1_000  # seeded queries whose exact neighbours are the recall reference
SUBSET = 60  # images in the diverse subset (the CLI's default)


def real_vectors(images_per_class: int | None = None) -> np.ndarray:
    """Fashion-MNIST embedded by the shipped ImageNet EfficientNet-Lite0 at 64 px, float32 [N, 1280]."""
    from embedlab.datasets import prepare
    from embedlab.embedding import embed

    root = prepare("fashion-mnist", Path(tempfile.mkdtemp()) / "data", limit=images_per_class, progress=False)
    return embed(root, "efficientnet_lite0", image_size=64, progress=False).numpy().astype(np.float32)


def gaussian_like(real: np.ndarray, n: int, seed: int = 0, chunk: int = 50_000) -> np.ndarray:
    """n vectors drawn from the Gaussian with the mean and covariance of `real` (float32, made chunk by chunk)."""
    mean = real.mean(axis=0)
    variances, axes = np.linalg.eigh(np.cov(real, rowvar=False))
    scale = (axes * np.sqrt(np.clip(variances, 0.0, None))).T.astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        out[start : start + rows] = rng.standard_normal((rows, real.shape[1]), dtype=np.float32) @ scale + mean
    return out


def timed(step: str, vectors: int, work: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run work(); return its result and a row: wall and CPU seconds, vectors/s, peak RSS of the process so far."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    row = {
        "step": step,
        "vectors": vectors,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "vectors_per_second": round(vectors / wall) if wall > 0 else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(f"  {row}", flush=True)
    return result, row


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The exact 10 nearest other vectors (cosine) of each query row: the recall reference."""
    import torch

    matrix = torch.nn.functional.normalize(torch.as_tensor(vectors), dim=1)
    found = []
    for start in range(0, len(queries), 100):
        rows = torch.as_tensor(queries[start : start + 100])
        similarity = matrix[rows] @ matrix.T
        similarity[torch.arange(len(rows)), rows] = -float("inf")
        found.append(torch.topk(similarity, 10, dim=1).indices.numpy())
    return np.concatenate(found)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true 10 nearest neighbours that the graph found, averaged over the queries."""
    hits = (found[:, :10, None] == truth[:, None, :]).any(axis=1).sum()
    return round(float(hits / truth.size), 4)


def real_rows(vectors: np.ndarray) -> list[dict[str, Any]]:
    """Exact graph and FAISS graph of the real embeddings; recall@10 of FAISS over every image."""
    from embedlab.curation import knn_graph

    exact, row = timed("graph exact", len(vectors), lambda: knn_graph(vectors, 10, backend="exact", progress=False))
    rows = [{**row, "data": "fashion-mnist real", "backend": exact.backend}]
    graph, row = timed("graph faiss", len(vectors), lambda: knn_graph(vectors, 10, backend="faiss", progress=False))
    rows.append({**row, "data": "fashion-mnist real", "backend": graph.backend})
    rows[-1]["recall_at_10"] = recall_at_10(graph.indices, exact.indices)
    print(f"  recall@10 on the real embeddings: {rows[-1]['recall_at_10']}", flush=True)
    return rows


def index_rows(vectors: np.ndarray, choices: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Graph time and recall@10 for other FAISS settings (factory string, efSearch, re-ranked candidates per k)."""
    from embedlab.curation import graph as neighbours

    queries = np.random.default_rng(0).choice(len(vectors), min(QUERIES, len(vectors)), replace=False)
    truth = exact_top10(vectors, queries)
    rows, shipped = [], neighbours.RERANK_FACTOR
    for index, ef_search, factor in choices:
        neighbours.RERANK_FACTOR = factor  # read when the graph is built
        build = functools.partial(
            neighbours.knn_graph, vectors, 10, backend="faiss", index=index, ef_search=ef_search, progress=False
        )
        try:
            graph, row = timed("graph", len(vectors), build)
        finally:
            neighbours.RERANK_FACTOR = shipped
        row["backend"] = f"{graph.backend} rerank {factor}x"
        row["recall_at_10"] = recall_at_10(graph.indices[queries], truth)
        rows.append(row)
        print(f"  {row['backend']}: recall@10 {row['recall_at_10']}", flush=True)
    return rows


def curation_rows(vectors: np.ndarray, backend: str = "faiss", label: str = "gaussian fit") -> list[dict[str, Any]]:
    """The graph build (recall@10 on QUERIES seeded queries), then every curation function read from it."""
    from embedlab import curation

    n = len(vectors)
    graph, row = timed("graph", n, lambda: curation.knn_graph(vectors, 10, backend=backend, progress=False))
    queries = np.random.default_rng(0).choice(n, min(QUERIES, n), replace=False)
    row["recall_at_10"] = recall_at_10(graph.indices[queries], exact_top10(vectors, queries))
    rows = [{**row, "backend": graph.backend}]
    steps: dict[str, Callable[[], Any]] = {
        "outlier_scores": lambda: curation.outlier_scores(vectors, k=5, graph=graph, progress=False),
        "most_unusual": lambda: curation.most_unusual(vectors, 20, k=5, graph=graph, progress=False),
        "near_duplicates": lambda: curation.near_duplicates(vectors, graph=graph, progress=False),
        f"select_diverse {SUBSET}": lambda: curation.select_diverse(vectors, SUBSET, progress=False),
    }
    for step, work in steps.items():
        rows.append({**timed(step, n, work)[1], "backend": graph.backend})
    total = round(sum(r["seconds"] for r in rows), 1)
    print(f"  {label} {n}: recall@10 {rows[0]['recall_at_10']}, everything {total} s", flush=True)
    return [{**r, "data": label} for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, nargs="+", default=[100_000], help="sizes of the Gaussian sets")
    parser.add_argument("--exact-up-to", type=int, default=20_000, help="also time the exact graph at sizes <= this")
    parser.add_argument("--compare", action="store_true", help="also try other FAISS settings at the first size")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    print("embedlab _scale_neighbours:", machine_info(), flush=True)
    real = real_vectors()
    rows = real_rows(real)
    for n in args.vectors:
        vectors = gaussian_like(real, n)
        if args.compare and n == args.vectors[0]:
            choices = [("PCA128,HNSW32", 128, 4), ("PCA128,HNSW32", 64, 8), ("PCA64,HNSW32", 128, 8), ("HNSW32", 64, 4)]
            rows += index_rows(vectors, choices)
        rows += curation_rows(vectors)
        if n <= args.exact_up_to:
            rows += curation_rows(vectors, "exact")
        del vectors
    save_result(args.json, {"kind": "speed", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
