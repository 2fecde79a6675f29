"""Curation on embeddings with a known answer: planted duplicates, a planted outlier, tight clusters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab import curation
from embedlab.curation import CurationError


def clustered(n_classes: int = 5, per_class: int = 12, dim: int = 32, spread: float = 0.05, seed: int = 0):
    """Return tight, well-separated clusters (vectors, labels): the neighbours of a point are its cluster mates."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    vectors = centers[labels] + spread * rng.normal(size=(labels.size, dim))
    return vectors.astype(np.float32), labels


class FakeEmbeddings:
    """The fields of embedding.Embeddings that curation reads (duck-typed, so this file tests curation alone)."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray | None, filenames: list[str]) -> None:
        self.vectors = torch.as_tensor(vectors)
        self.labels = labels
        self.filenames = filenames
        self.class_names = None


def as_embeddings(vectors: np.ndarray, labels: np.ndarray) -> FakeEmbeddings:
    """Wrap vectors with class-style filenames ("c<label>/<index>.png")."""
    names = [f"c{label}/{i}.png" for i, label in enumerate(labels)]
    return FakeEmbeddings(vectors, labels, names)


def test_neighbors_of_a_point_in_a_tight_cluster_are_its_cluster_mates():
    vectors, labels = clustered()
    result = curation.nearest_neighbors(vectors, 3, k=11)
    assert result.indices.shape == (1, 11)
    assert 3 not in result.indices[0]  # the query itself is excluded
    assert set(result.indices[0]) == set(np.flatnonzero(labels == labels[3])) - {3}
    assert np.all(np.diff(result.distances[0]) >= 0)  # nearest first
    assert result.distances[0].max() < 0.1  # cosine distances inside a tight cluster are small


def test_neighbors_include_self_when_asked_and_distance_is_zero():
    vectors, _ = clustered()
    result = curation.nearest_neighbors(vectors, 7, k=1, exclude_self=False)
    assert result.indices[0, 0] == 7
    assert result.distances[0, 0] == pytest.approx(0.0, abs=1e-5)


def test_neighbors_by_filename_by_vector_and_by_several_queries():
    vectors, labels = clustered()
    emb = as_embeddings(vectors, labels)
    by_name = curation.nearest_neighbors(emb, "c2/30.png", k=4)
    by_index = curation.nearest_neighbors(emb, 30, k=4)
    np.testing.assert_array_equal(by_name.indices, by_index.indices)
    assert all(name.startswith("c2/") for name in by_name.filenames[0])
    # a new vector (not in the data) near cluster 4: nothing to exclude, all neighbours from cluster 4
    new = torch.as_tensor(vectors[labels == 4].mean(axis=0))
    by_vector = curation.nearest_neighbors(emb, new, k=12)
    assert set(labels[by_vector.indices[0]]) == {4}
    assert by_vector.query_indices == [None]
    several = curation.nearest_neighbors(emb, [0, "c1/12.png"], k=3)
    assert several.indices.shape == (2, 3)
    assert set(labels[several.indices[1]]) == {1}
    table = several.table(1)
    assert list(table["rank"]) == [1, 2, 3] and table["filename"].str.startswith("c1/").all()


def test_neighbors_chunked_search_matches_one_block(monkeypatch):
    vectors, _ = clustered(per_class=20)
    whole = curation.nearest_neighbors(vectors, list(range(100)), k=5)
    monkeypatch.setattr(curation.inputs, "_CHUNK_ELEMENTS", 7 * vectors.shape[0])  # 7 queries per chunk
    chunked = curation.nearest_neighbors(vectors, list(range(100)), k=5)
    np.testing.assert_array_equal(whole.indices, chunked.indices)


def test_neighbors_clear_errors():
    vectors, labels = clustered()
    emb = as_embeddings(vectors, labels)
    with pytest.raises(CurationError, match="not one of the 60 embedded filenames"):
        curation.nearest_neighbors(emb, "nope/missing.png")
    with pytest.raises(CurationError, match="out of range"):
        curation.nearest_neighbors(emb, 60)
    with pytest.raises(CurationError, match="larger than the 59"):
        curation.nearest_neighbors(emb, 0, k=60)
    with pytest.raises(CurationError, match="3 dimensions"):
        curation.nearest_neighbors(emb, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(CurationError, match="model="):
        curation.nearest_neighbors(emb, np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(CurationError, match="shape"):
        curation.nearest_neighbors(np.zeros(5), 0)
    with pytest.raises(CurationError, match="NaN"):
        curation.outlier_scores(np.full((4, 2), np.nan))


def test_planted_outlier_ranks_first():
    vectors, _ = clustered()
    rng = np.random.default_rng(1)
    outlier = rng.normal(size=(1, vectors.shape[1])).astype(np.float32)
    data = np.concatenate([vectors[:25], outlier, vectors[25:]])
    scores = curation.outlier_scores(data, k=3)
    assert scores.shape == (61,)
    assert int(np.argmax(scores)) == 25
    assert scores[25] > 5 * np.median(scores)
    assert curation.most_unusual(data, 3, k=3)[0] == 25


def test_outlier_score_uses_the_kth_neighbour_so_an_odd_pair_still_stands_out():
    vectors, _ = clustered()
    odd = np.random.default_rng(5).normal(size=(1, vectors.shape[1])).astype(np.float32)
    data = np.concatenate([vectors, odd, odd])  # two copies of the same odd image
    assert set(curation.most_unusual(data, 2, k=2)) == {60, 61}
    assert curation.outlier_scores(data, k=1)[60] == pytest.approx(0.0, abs=1e-5)  # k=1 would miss them


def test_planted_near_duplicates_are_found_as_sorted_groups():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(40, 64)).astype(np.float32)  # random directions: far apart in 64-D
    data = base.copy()
    data[10] = base[3] + 0.01 * rng.normal(size=64)  # 3 ~ 10
    data[20] = base[3] + 0.01 * rng.normal(size=64)  # 3 ~ 20 (so 10 ~ 20 transitively)
    data[33] = base[7] * 2.5  # a rescaled copy: cosine similarity 1
    groups = curation.near_duplicates(data, threshold=0.98)
    assert groups == [[3, 10, 20], [7, 33]]
    assert curation.near_duplicates(base, threshold=0.98) == []


def test_near_duplicates_chunked_matches_and_threshold_is_checked(monkeypatch):
    vectors, _ = clustered(per_class=8, spread=0.001)
    whole = curation.near_duplicates(vectors, threshold=0.99)
    assert [len(g) for g in whole] == [8] * 5
    monkeypatch.setattr(curation.inputs, "_CHUNK_ELEMENTS", 3 * vectors.shape[0])
    assert curation.near_duplicates(vectors, threshold=0.99) == whole
    with pytest.raises(CurationError, match="threshold"):
        curation.near_duplicates(vectors, threshold=1.5)


def test_diverse_subset_covers_every_class_before_repeating():
    vectors, labels = clustered(n_classes=6, per_class=15)
    picked = curation.select_diverse(vectors, 6, seed=3)
    assert sorted(labels[picked]) == list(range(6))
    longer = curation.select_diverse(vectors, 20, seed=3)
    np.testing.assert_array_equal(longer[:6], picked)  # greedy: a prefix of a longer selection
    assert len(set(longer)) == 20  # never picks an image twice
    np.testing.assert_array_equal(curation.select_diverse(vectors, 20, seed=3), longer)  # deterministic
    # a random subset of the same size typically misses a class; farthest-point never does (seed by seed)
    for seed in range(5):
        assert len(set(labels[curation.select_diverse(vectors, 6, seed=seed)])) == 6


def test_diverse_subset_errors():
    vectors, _ = clustered()
    with pytest.raises(CurationError, match="larger than the 60"):
        curation.select_diverse(vectors, 61)
    with pytest.raises(CurationError, match="out of range"):
        curation.select_diverse(vectors, 3, start=99)


def test_kmeans_recovers_tight_clusters_and_purity_is_one():
    vectors, labels = clustered(n_classes=4, per_class=10)
    clusters = curation.kmeans_clusters(vectors, 4, seed=0)
    assert sorted(clusters.sizes) == [10, 10, 10, 10]
    assert curation.cluster_purity(clusters, labels) == pytest.approx(1.0)
    np.testing.assert_allclose(np.linalg.norm(clusters.centers, axis=1), 1.0, atol=1e-5)
    again = curation.kmeans_clusters(vectors, 4, seed=0)
    np.testing.assert_array_equal(clusters.labels, again.labels)  # seeded: reproducible


def test_cluster_purity_known_values_and_embeddings_labels():
    assert curation.cluster_purity([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx(5 / 6)
    assert curation.cluster_purity(np.zeros(4, dtype=int), [0, 1, 2, 3]) == pytest.approx(0.25)
    vectors, labels = clustered(n_classes=3, per_class=5)
    emb = as_embeddings(vectors, labels)
    assert curation.cluster_purity(curation.kmeans_clusters(emb, 3), emb) == pytest.approx(1.0)
    with pytest.raises(CurationError, match="must match"):
        curation.cluster_purity([0, 1], [0, 1, 2])
    with pytest.raises(CurationError, match="labels"):
        curation.cluster_purity([0, 1], FakeEmbeddings(np.eye(2, dtype=np.float32), None, ["a", "b"]))


def test_kmeans_with_more_clusters_than_distinct_points_still_returns_k_clusters():
    data = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 3 distinct points, 12 rows
    clusters = curation.kmeans_clusters(data, 5, seed=1)
    assert clusters.labels.shape == (12,) and clusters.centers.shape == (5, 3)
    assert curation.cluster_purity(clusters, np.repeat(np.arange(3), 4)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tiny_embedded(tmp_path_factory: pytest.TempPathFactory):
    """3 classes x 4 fashion-mnist images embedded by a small random-init backbone (seconds on a CPU)."""
    from embedlab import datasets, embedding, models

    root = datasets.prepare("fashion-mnist", tmp_path_factory.mktemp("data"), limit=4, progress=False)
    torch.manual_seed(0)
    backbone = models.create_backbone("resnet18", layers=1)
    backbone.meta["image_size"] = 32
    emb = embedding.embed(root, backbone, image_size=32, progress=False, num_workers=0)
    return root, backbone, emb


def test_query_with_a_new_image_matches_the_embedded_copy(tiny_embedded):
    from PIL import Image

    root, backbone, emb = tiny_embedded
    target = 5
    image = Image.open(root / emb.filenames[target])
    found = curation.nearest_neighbors(emb, image, k=1, model=backbone)
    assert found.indices[0, 0] == target  # the same preprocessing as embedding.embed: the copy is found
    assert found.distances[0, 0] < 1e-4
    # a path ending in an embedded filename is that embedded image (so it is excluded from its own neighbours)
    embedded = curation.nearest_neighbors(emb, str(root / emb.filenames[target]), k=1, model=backbone)
    assert embedded.query_indices == [target] and embedded.indices[0, 0] != target
    # a path to any other image file is a new image, embedded with `model`
    copy = root.parent / "query.png"
    image.save(copy)
    new = curation.nearest_neighbors(emb, copy, k=1, model=backbone)
    assert new.query_indices == [None] and new.indices[0, 0] == target


def test_show_neighbors_draws_the_query_and_its_neighbours(tiny_embedded):
    import matplotlib

    matplotlib.use("Agg")
    root, _, emb = tiny_embedded
    found = curation.nearest_neighbors(emb, 0, k=4)
    fig = curation.show_neighbors(emb, found, root)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == f"{emb.filenames[0].split('/')[0]}\nquery" and len(titles) == 5
    assert titles[1] == f"{found.filenames[0][0].split('/')[0]}\n#1 d={found.distances[0, 0]:.3f}"
    unusual = curation.most_unusual(emb, 3, k=2, progress=False)
    grid = curation.show_images(emb, unusual, root, captions=["a", "b", "c"])
    titles = [ax.get_title() for ax in grid.axes if ax.get_title()]
    assert titles == [f"{emb.filenames[i].split('/')[0]}\n{c}" for i, c in zip(unusual, "abc")]  # class labels
    with pytest.raises(curation.CurationError, match="2 captions for 3 images"):
        curation.show_images(emb, unusual, root, captions=["a", "b"])
    matplotlib.pyplot.close("all")


def test_center_spreads_cosine_similarities_and_keeps_metadata():
    rng = np.random.default_rng(4)
    vectors = np.abs(rng.normal(size=(30, 16))).astype(np.float32) + 3.0  # non-negative, like ReLU features
    labels = np.arange(30) % 3
    raw_closest = 1 - curation.outlier_scores(vectors, k=1, progress=False)
    centred = curation.center(as_embeddings(vectors, labels))
    closest = 1 - curation.outlier_scores(centred, k=1, progress=False)
    assert raw_closest.min() > 0.95  # raw: everything looks like a near-duplicate of everything
    assert np.median(closest) < 0.6
    np.testing.assert_allclose(centred.vectors.mean(0).numpy(), 0, atol=1e-5)
    assert centred.filenames[3] == "c0/3.png" and centred.meta["centered"] is True
    assert isinstance(curation.center(vectors), np.ndarray)


def test_near_duplicates_default_threshold_is_the_settings_default():
    import inspect

    from embedlab.settings import CurationSettings

    default = inspect.signature(curation.near_duplicates).parameters["threshold"].default
    assert default == CurationSettings().duplicate_threshold == curation.DUPLICATE_THRESHOLD
