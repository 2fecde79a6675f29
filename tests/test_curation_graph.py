"""The neighbour graph behind curation: FAISS agrees with exact search, every function reads the graph, clear errors."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from embedlab import cli, curation
from embedlab.curation import CurationError, graph


def clustered(n: int = 3_000, dim: int = 64, n_clusters: int = 30, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """Gaussian clusters with overlapping members: neighbours are found inside a cluster but are not trivial."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    return (centers[rng.integers(n_clusters, size=n)] + spread * rng.normal(size=(n, dim))).astype(np.float32)


def planted(dim: int = 64) -> tuple[np.ndarray, list[list[int]], int]:
    """Clustered data with two planted groups of near-copies and one planted outlier: (data, groups, outlier)."""
    rng = np.random.default_rng(3)
    data = clustered(1_500, dim)
    data[[100, 900, 1400]] = data[7] + 1e-3 * rng.normal(size=(3, dim))
    data[555] = data[42] * 3.0  # a rescaled copy: cosine similarity 1
    data[1200] = 10 * rng.normal(size=dim)  # far from every cluster
    return data, [[7, 100, 900, 1400], [42, 555]], 1200


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours found."""
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


@pytest.mark.parametrize("dim", [64, 384])  # 384: the PCA + exact re-ranking route
def test_faiss_graph_agrees_with_exact_search(dim: int) -> None:
    pytest.importorskip("faiss")
    data = clustered(dim=dim)
    exact = curation.knn_graph(data, 10, backend="exact", progress=False)
    approx = curation.knn_graph(data, 10, backend="faiss", progress=False)
    assert exact.backend == "exact" and approx.backend.startswith("faiss ")
    assert ("PCA" in approx.backend) == (dim > 2 * graph.FAISS_PCA_DIMS)
    assert approx.indices.shape == (3_000, 10) and approx.indices.dtype == np.int64
    assert recall(approx.indices, exact.indices) >= 0.95
    assert not (approx.indices == np.arange(3_000)[:, None]).any()  # never its own neighbour
    assert (np.diff(approx.similarities, axis=1) <= 1e-6).all()  # most similar first
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    true_similarity = np.einsum("nd,nkd->nk", unit, unit[approx.indices])
    np.testing.assert_allclose(approx.similarities, true_similarity, atol=1e-5)  # re-ranked: exact cosine


def test_outliers_and_duplicates_from_the_faiss_graph_match_exact() -> None:
    pytest.importorskip("faiss")
    data, groups, outlier = planted()
    exact = curation.knn_graph(data, 10, backend="exact", progress=False)
    approx = curation.knn_graph(data, 10, backend="faiss", progress=False)
    for found in (exact, approx):
        assert curation.near_duplicates(data, threshold=0.99, graph=found) == groups
        assert curation.most_unusual(data, 1, k=5, graph=found)[0] == outlier
    assert curation.near_duplicates(data, threshold=0.99, progress=False) == groups  # all pairs, no graph
    np.testing.assert_allclose(
        curation.outlier_scores(data, k=5, graph=approx), curation.outlier_scores(data, k=5, graph=exact), atol=0.02
    )


def test_a_graph_gives_the_same_results_as_the_functions_alone() -> None:
    data, groups, outlier = planted()
    shared = curation.knn_graph(data, 10, progress=False)  # auto: exact for a small set
    assert shared.backend == "exact" and shared.k == 10 and len(shared) == 1_500
    np.testing.assert_array_equal(curation.outlier_scores(data, k=5, graph=shared), curation.outlier_scores(data, k=5))
    np.testing.assert_array_equal(curation.most_unusual(data, 5, graph=shared), curation.most_unusual(data, 5))
    assert curation.near_duplicates(data, threshold=0.99, graph=shared) == groups


def test_auto_picks_exact_below_the_threshold_and_faiss_above() -> None:
    assert graph.resolve_backend("auto", graph.AUTO_EXACT_BELOW - 1) == "exact"
    assert graph.resolve_backend("exact", 10**7) == "exact"
    if "faiss" in sys.modules or _importable("faiss"):
        assert graph.resolve_backend("auto", graph.AUTO_EXACT_BELOW) == "faiss"
    with pytest.raises(CurationError, match="backend must be one of auto, exact, faiss"):
        curation.knn_graph(clustered(50), 3, backend="annoy")


def test_missing_faiss_is_a_one_line_error_and_auto_falls_back_with_a_warning(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(CurationError) as error:
        curation.knn_graph(clustered(50), 3, backend="faiss")
    assert str(error.value).count("\n") == 0 and 'pip install "embedlab[scale]"' in str(error.value)
    with pytest.warns(UserWarning, match=r'pip install "embedlab\[scale\]"'):
        assert graph.resolve_backend("auto", graph.AUTO_EXACT_BELOW) == "exact"


def test_near_duplicates_of_20k_vectors_with_many_copies_is_vectorised() -> None:
    """100 groups of 200 near-copies: 2 million linked pairs, grouped without a Python loop over the pairs."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(100, 16)).astype(np.float32)
    data = np.repeat(base, 200, axis=0) + 1e-4 * rng.normal(size=(20_000, 16)).astype(np.float32)
    start = time.perf_counter()
    groups = curation.near_duplicates(data, threshold=0.999, progress=False, backend="exact")  # every pair
    assert time.perf_counter() - start < 15  # ~3 s on 2 busy cores; a loop over 2M pairs in Python takes longer
    assert len(groups) == 100 and all(len(g) == 200 for g in groups)
    assert groups[0] == list(range(200)) and groups[-1] == list(range(19_800, 20_000))
    linked = curation.knn_graph(data, 10, backend="exact", progress=False)
    start = time.perf_counter()
    assert curation.near_duplicates(data, threshold=0.999, graph=linked) == groups  # copies linked via neighbours
    assert time.perf_counter() - start < 1  # 200,000 graph edges grouped by connected_components: ~0.02 s


def test_a_graph_that_does_not_fit_is_refused() -> None:
    data = clustered(200, 8)
    small = curation.knn_graph(data, 3, progress=False)
    with pytest.raises(CurationError, match="k=5 needs a graph of at least 5 neighbours"):
        curation.outlier_scores(data, k=5, graph=small)
    with pytest.raises(CurationError, match="the graph has 200 images but the data has 100"):
        curation.near_duplicates(data[:100], graph=small)
    with pytest.raises(CurationError, match="larger than the 199"):
        curation.knn_graph(data, 200)


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_cli_outliers_and_duplicates_use_the_backend(capsys, tmp_path, backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    from embedlab.embedding import Embeddings

    data, groups, outlier = planted()
    path = tmp_path / "emb.pt"
    Embeddings(data, [f"c/{i}.png" for i in range(len(data))]).save(path)
    assert cli.main(["outliers", str(path), "--n", "1", "--backend", backend, "-q"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"c/{outlier}.png")
    assert cli.main(["duplicates", str(path), "--threshold", "0.99", "--backend", backend, "-q"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["\t".join(f"c/{i}.png" for i in group) for group in groups]


def _importable(name: str) -> bool:
    """Whether a module can be imported here."""
    from importlib.util import find_spec

    return find_spec(name) is not None
