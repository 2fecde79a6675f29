"""Tests for embedlab.projection: seeded 2-D reductions, one reducer per embedding set, tiny N."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab.projection import (
    ProjectionError,
    Projector,
    load_or_project,
    load_points,
    neighbour_preservation,
    project,
    project_all,
    reduce_pca,
    save_points,
)


def blobs(n_per: int = 20, classes: int = 3, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs: a projection that keeps neighbourhoods must keep them apart."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 5
    x = np.concatenate([c + rng.normal(size=(n_per, dim)) * 0.3 for c in centers]).astype(np.float32)
    return x, np.repeat(np.arange(classes), n_per)


def one_nn_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy in 2-D: high when classes stay separated."""
    d = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_fast_methods_keep_blobs_apart_and_are_seeded(method: str) -> None:
    x, y = blobs(n_per=10)
    a = project(x, method, seed=0)
    assert a.shape == (30, 2) and a.dtype == np.float32
    assert one_nn_accuracy(a, y) > 0.95
    np.testing.assert_allclose(a, project(x, method, seed=0), atol=1e-5)


def test_umap_seeded_named_reducers_and_tiny_n() -> None:
    x, y = blobs()
    x2, _ = blobs(seed=1)
    projectors = project_all({"ssl": x, "imagenet": torch.from_numpy(x2)}, n_neighbors=10, seed=0)
    assert set(projectors) == {"ssl", "imagenet"}
    assert projectors["ssl"].name == "ssl" and projectors["imagenet"].n_fit_ == 60
    assert projectors["ssl"].reducer is not projectors["imagenet"].reducer
    # each set's map is what a fresh reducer fitted on that set gives (no reducer reused across sets)
    fresh = Projector("umap", n_neighbors=10, seed=0).fit_transform(x2)
    np.testing.assert_allclose(projectors["imagenet"].points_, fresh, atol=1e-4)
    assert one_nn_accuracy(projectors["ssl"].points_, y) > 0.95
    # transform places new points of the same set near their class
    new = projectors["ssl"].transform(x[:3] + 0.01)
    assert new.shape == (3, 2)
    # tiny N: n_neighbors larger than N-1 is clamped instead of failing
    tiny = project(x[:5], "umap", n_neighbors=15)
    assert tiny.shape == (5, 2) and np.isfinite(tiny).all()


def test_errors_are_clear() -> None:
    x, _ = blobs()
    with pytest.raises(ProjectionError, match="unknown projection method 'umapp'"):
        Projector("umapp")
    with pytest.raises(ProjectionError, match="not fitted"):
        Projector("pca", name="ssl").transform(x)
    with pytest.raises(ProjectionError, match="at least 3 points"):
        project(x[:2], "pca")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ProjectionError, match="NaN"):
        project(bad, "pca")
    with pytest.raises(ProjectionError, match="t-SNE cannot place new points"):
        Projector("tsne").fit(x[:12]).transform(x[:12])


def test_points_roundtrip_and_load_or_project(tmp_path) -> None:
    x, _ = blobs()
    path = tmp_path / "umap" / "pca.npy"
    first = load_or_project(x, path, method="pca")
    assert path.exists() and not list(path.parent.glob(".*tmp"))
    np.testing.assert_array_equal(load_points(path, expected_rows=60), first)
    key = Projector("pca").key(x)
    save_points(np.zeros((60, 2)), path, made_from=key)  # a map made from the same vectors and settings: reused
    np.testing.assert_array_equal(load_or_project(x, path, method="pca"), np.zeros((60, 2)))
    with pytest.raises(ProjectionError, match="has 60 points but the embedding set has 10"):
        load_points(path, expected_rows=10)
    again = load_or_project(x[:10], path, method="pca")  # other vectors -> recomputed and overwritten
    assert again.shape == (10, 2) and load_points(path).shape == (10, 2)


def test_a_saved_map_is_reused_only_for_the_method_settings_and_vectors_it_was_made_from(tmp_path) -> None:
    """Notebook 04 with projection='pca' must not make notebook 05 draw PCA maps labelled UMAP."""
    x, _ = blobs()
    path = tmp_path / "umap" / "ssl.npy"
    Projector("pca").fit(x).save(path)
    save_points(np.zeros((60, 2)), path, made_from=Projector("pca").key(x))
    assert not load_or_project(x, path, method="pca").any()  # the same recipe: the saved points
    assert load_or_project(x, path, method="tsne", seed=1).any()  # another method: projected again
    assert load_or_project(x, path, method="tsne", seed=1).any()  # and now that one is saved and reused
    save_points(np.zeros((60, 2)), path)  # a map without its key (an older run): never trusted
    assert load_or_project(x, path, method="pca").any()
    noisy = x + np.float32(0.5)
    assert not np.array_equal(
        load_or_project(noisy, path, method="pca"), load_or_project(x, tmp_path / "b.npy", method="pca")
    )


def test_reduce_pca_caps_components_at_the_data_and_reports_variance_kept() -> None:
    vectors = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    reduced, kept = reduce_pca(vectors, 50)
    assert reduced.shape == (5, 4) and reduced.dtype == np.float32 and kept == pytest.approx(1.0)  # 5 centred: 4 axes
    assert (reduced.std(axis=0) > 1e-6).all()  # no column of zeros
    again, _ = reduce_pca(torch.from_numpy(vectors), 2, seed=0)
    np.testing.assert_allclose(again, reduced[:, :2], atol=1e-5)


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_past_max_fit_a_seeded_sample_is_fitted_and_the_rest_transformed(method: str) -> None:
    x, labels = blobs(n_per=60, classes=3)
    projector = Projector(method, seed=3, max_fit=60)
    points = projector.fit_transform(x)
    sample = projector.sample_indices_
    assert points.shape == (180, 2) and projector.n_fit_ == 60
    assert len(sample) == 60 and (np.diff(sample) > 0).all()
    rest = np.setdiff1d(np.arange(180), sample)
    np.testing.assert_allclose(points[rest], projector.transform(x[rest]), atol=1e-4)
    again = Projector(method, seed=3, max_fit=60)
    again.fit_transform(x)
    assert (again.sample_indices_ == sample).all()  # the sample is seeded
    nearest = np.argmin(((points[rest, None] - points[None, sample]) ** 2).sum(-1), axis=1)
    assert (labels[sample][nearest] == labels[rest]).mean() > 0.95  # placed beside their own blob


def test_tsne_and_small_sets_fit_every_point() -> None:
    x, _ = blobs(n_per=10, classes=3)
    assert Projector("pca", max_fit=100).fit(x).sample_indices_ is None
    assert Projector("tsne", max_fit=10, perplexity=5).fit(x).sample_indices_ is None  # t-SNE cannot transform


def test_neighbour_preservation_is_one_for_a_faithful_map_and_low_for_noise() -> None:
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(300, 2)).astype(np.float32)
    lifted = np.concatenate([flat, np.zeros((300, 6), dtype=np.float32)], axis=1) + 10  # same geometry, 8-D
    assert neighbour_preservation(lifted, flat + 10, k=10) > 0.9
    assert neighbour_preservation(lifted, rng.normal(size=(300, 2)), k=10) < 0.2
