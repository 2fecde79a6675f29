"""Tests for embedlab.evaluation against hand-computable cases and lightly's reference kNN."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch

from embedlab.course.comparison import (
    COLUMNS,
    compare,
    describe_embeddings,
    linear_probe_note,
    recipe_name,
    recipe_order,
)
from embedlab.course.verdict import gaps_sentence, paired_gaps
from embedlab.embedding import Embeddings
from embedlab.evaluation import (
    EvaluationError,
    bootstrap_interval,
    cluster_score,
    knn_accuracy,
    knn_correct,
    knn_predict,
    linear_probe_accuracy,
    linear_probe_correct,
    paired_difference,
)


def _unit(degrees: float) -> list[float]:
    """A 2-D unit vector at the given angle."""
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


# Five bank points around a query at 0 degrees: similarities 1.0 (class 0), 0.5, 0.5 (class 1), 0.0, -1.0 (class 0).
BANK = torch.tensor([_unit(0), _unit(60), _unit(-60), _unit(90), _unit(180)])
BANK_LABELS = [0, 1, 1, 0, 0]
QUERY = torch.tensor([_unit(0)])


def test_weighted_vote_by_hand_low_temperature_beats_majority() -> None:
    # k=3 neighbours: class 0 weight e^(1.0/0.1) = 22026 > class 1 weight 2 * e^(0.5/0.1) = 297: predicts 0,
    # although a plain majority vote (1 vs 2) would say class 1.
    assert knn_accuracy(BANK, BANK_LABELS, QUERY, [0], k=3, temperature=0.1) == 1.0


def test_weighted_vote_by_hand_high_temperature_follows_majority() -> None:
    # T=1: class 0 weight e^1 = 2.72 < class 1 weight 2 * e^0.5 = 3.30: predicts 1, so label 0 is wrong.
    assert knn_accuracy(BANK, BANK_LABELS, QUERY, [0], k=3, temperature=1.0) == 0.0
    assert knn_accuracy(BANK, BANK_LABELS, QUERY, [1], k=3, temperature=1.0) == 1.0


def test_cosine_ignores_vector_length() -> None:
    assert (
        knn_accuracy(
            BANK * torch.tensor([[5.0], [0.1], [3.0], [1.0], [9.0]]), BANK_LABELS, QUERY * 7, [0], k=3, temperature=0.1
        )
        == 1.0
    )


def test_leave_one_out_excludes_self() -> None:
    # k=1: point 0's nearest other is point 1 (other class) and vice versa; point 2's nearest other is point 1.
    vectors = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    assert knn_accuracy(vectors, [0, 1, 1], k=1) == pytest.approx(1 / 3)
    # with self included every point would find itself: the same data as an explicit test set scores 1.0
    assert knn_accuracy(vectors, [0, 1, 1], vectors, [0, 1, 1], k=1) == 1.0


def _lightly_knn_predict() -> Any:
    """lightly's reference knn_predict, loaded from its file (importing the lightly package takes seconds)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("lightly")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "benchmarking" / "knn.py"
    module_spec = importlib.util.spec_from_file_location("_lightly_knn", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.knn_predict


def test_matches_lightly_knn_predict() -> None:
    lightly_knn_predict = _lightly_knn_predict()
    generator = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(300, 16, generator=generator), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(100, 16, generator=generator), dim=1)
    labels = torch.randint(0, 5, (300,), generator=generator)
    expected = lightly_knn_predict(queries, bank.T.contiguous(), labels, num_classes=5, knn_k=20, knn_t=0.1)[:, 0]
    ours = knn_predict(queries, bank, labels, 5, k=20, temperature=0.1, chunk_size=7)
    assert torch.equal(ours, expected)


def test_chunking_does_not_change_leave_one_out() -> None:
    rng = np.random.default_rng(1)
    vectors, labels = rng.normal(size=(257, 8)).astype(np.float32), rng.integers(0, 4, 257)
    assert knn_accuracy(vectors, labels, chunk_size=10) == knn_accuracy(vectors, labels, chunk_size=4096)


def _separable(n_per_class: int = 20, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters around orthogonal directions: perfectly separable by every metric."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:classes] * 10
    vectors = np.concatenate([c + rng.normal(scale=0.1, size=(n_per_class, 8)) for c in centres])
    return vectors.astype(np.float32), np.repeat(np.arange(classes), n_per_class)


def test_separable_clusters_score_one_everywhere() -> None:
    vectors, labels = _separable()
    assert knn_accuracy(vectors, labels) == 1.0
    assert linear_probe_accuracy(vectors, labels) == 1.0
    assert cluster_score(vectors, labels) == pytest.approx(1.0)


def test_string_labels_and_permuted_ids_give_same_scores() -> None:
    vectors, labels = _separable()
    names = np.array(["cat", "dog", "owl"])[labels]
    assert knn_accuracy(vectors, names) == 1.0
    assert cluster_score(vectors, (labels + 1) % 3) == pytest.approx(1.0)


def test_identical_labels() -> None:
    vectors = np.random.default_rng(0).normal(size=(12, 4))
    labels = np.zeros(12, dtype=int)
    assert knn_accuracy(vectors, labels) == 1.0
    assert linear_probe_accuracy(vectors, labels) == 1.0
    assert cluster_score(vectors, labels) == 1.0


def test_random_labels_score_low() -> None:
    rng = np.random.default_rng(0)
    vectors, labels = rng.normal(size=(200, 16)), rng.integers(0, 4, 200)
    assert knn_accuracy(vectors, labels) < 0.4
    assert cluster_score(vectors, labels) < 0.1


def test_errors_are_clear() -> None:
    with pytest.raises(EvaluationError, match="3 labels for 2 vectors"):
        knn_accuracy(np.ones((2, 3)), [0, 1, 1])
    with pytest.raises(EvaluationError, match="dimension"):
        knn_accuracy(np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 5)), [0, 1])
    with pytest.raises(EvaluationError, match=">= 2 samples per class"):
        linear_probe_accuracy(np.eye(5), [0, 0, 0, 0, 1])
    with pytest.raises(EvaluationError, match="temperature"):
        knn_accuracy(np.ones((4, 3)), [0, 1, 0, 1], temperature=0)
    with pytest.raises(EvaluationError, match="test_fraction"):
        linear_probe_accuracy(np.ones((4, 3)), [0, 1, 0, 1], test_fraction=1.5)
    with pytest.raises(EvaluationError, match="labels are needed"):
        knn_accuracy(Embeddings(torch.ones(3, 2), ["a", "b", "c"]))


def test_compare_one_row_per_set_best_first() -> None:
    vectors, labels = _separable()
    noise = np.random.default_rng(3).normal(size=vectors.shape)
    good = Embeddings(
        torch.from_numpy(vectors), [f"f{i}" for i in range(len(labels))], labels, ["a", "b", "c"], name="good"
    )
    bad = Embeddings(torch.from_numpy(noise), good.filenames, labels, ["a", "b", "c"], name="noise")
    table = compare([bad, good], k=5)
    assert list(table["name"]) == ["good", "noise"]
    assert list(table.columns) == list(COLUMNS)
    assert table.attrs["evaluation"] == {
        "knn_k": 5,
        "knn_temperature": 0.1,
        "probe_test_fraction": 0.3,
        "seed": 0,
        "interval": "95% bootstrap over images, 1000 resamples",
    }
    assert table.loc[0, "knn_low"] == table.loc[0, "knn_high"] == 1.0  # every image right: no spread
    assert table.loc[1, "knn_low"] <= table.loc[1, "knn_accuracy"] <= table.loc[1, "knn_high"]
    assert table.loc[0, "knn_accuracy"] == 1.0 and table.loc[0, "dim"] == 8 and table.loc[0, "n"] == 60
    assert table.loc[1, "knn_accuracy"] < 0.7
    assert list(compare({"renamed": good})["name"]) == ["renamed"]


# ------------------------------------------------------------------------------------------------ recipe names
IMAGENET_112 = {
    "model": "efficientnet_lite0",
    "backbone": "efficientnet_lite0",
    "weights": "imagenet",
    "image_size": 112,
}


def test_recipe_names_say_how_the_vectors_were_made() -> None:
    assert recipe_name(IMAGENET_112) == "ImageNet weights (no training), EfficientNet-Lite0, 112 px"
    assert (
        recipe_name({**IMAGENET_112, "weights": None, "image_size": 32})
        == "random init (no training), EfficientNet-Lite0, 32 px"
    )
    assert recipe_name({"model": "pca", "embedding_dim": 50, "image_size": 32}) == "PCA of raw pixels (50 dims), 32 px"
    trained = {"name": "resnet18", "method": "simclr", "init": None, "image_size": 64}
    assert recipe_name(trained) == "SimCLR from random init, ResNet-18, 64 px"  # the registry's display name
    assert (
        recipe_name(
            {
                "name": "efficientnet_lite0",
                "method": "distillation",
                "init": "imagenet",
                "image_size": 64,
                "teacher": "efficientnet_lite0",
            }
        )
        == "Distillation of EfficientNet-Lite0 continued from ImageNet, EfficientNet-Lite0, 64 px"
    )
    assert recipe_name({}, "ssl") == "ssl"


def test_describe_embeddings_reads_the_exported_backbone_json(tmp_path) -> None:
    (tmp_path / "backbone.json").write_text(
        json.dumps(
            {
                "name": "efficientnet_lite0",
                "method": "simclr",
                "init": "imagenet",
                "image_size": 32,
                "weights": "imagenet",
            }
        )
    )
    # what embed() keeps of a trained model: no `init`, weights "file"; the sidecar of `source` fills it in
    meta = {
        "model": "efficientnet_lite0",
        "backbone": "efficientnet_lite0",
        "weights": "file",
        "image_size": 32,
        "method": "simclr",
        "source": str(tmp_path / "backbone.pt"),
    }
    ssl = Embeddings(torch.zeros(4, 2), list("abcd"), [0, 0, 1, 1], ["x", "y"], name="ssl", meta=meta)
    assert describe_embeddings("ssl", ssl) == {
        "recipe": "SimCLR continued from ImageNet, EfficientNet-Lite0, 32 px",
        "kind": "self-supervised",
        "image_size": 32,
    }
    sets = {
        "imagenet": Embeddings(torch.zeros(4, 2), list("abcd"), meta=IMAGENET_112),
        "imagenet-32": Embeddings(torch.zeros(4, 2), list("abcd"), meta={**IMAGENET_112, "image_size": 32}),
        "pca": Embeddings(torch.zeros(4, 2), list("abcd"), meta={"model": "pca", "image_size": 32}),
        "ssl": ssl,
    }
    assert recipe_order(sets) == ["ssl", "imagenet-32", "imagenet", "pca"]
    assert describe_embeddings("pca", sets["pca"])["kind"] == "floor"


def test_linear_probe_note_compares_with_notebook_05(tmp_path) -> None:
    metrics = tmp_path / "metrics.json"
    assert "has not written metrics.json yet" in linear_probe_note(metrics, "ssl", 0.74, 1000)
    metrics.write_text(json.dumps({"comparison": [{"name": "ssl", "n": 3000, "linear_probe_accuracy": 0.797}]}))
    other = linear_probe_note(metrics, "ssl", 0.743, 1000)
    assert "here 0.743 on 1,000 images, notebook 05 0.797 on all 3,000: a different subset" in other
    assert "the same 3,000 images and the same stratified split" in linear_probe_note(metrics, "ssl", 0.795, 3000)
    assert "no row 'imagenet'" in linear_probe_note(metrics, "imagenet", 0.8, 3000)


# ------------------------------------------------------------------------------------------------ noise
def test_knn_correct_is_per_image_and_its_mean_is_the_accuracy() -> None:
    rng = np.random.default_rng(2)
    vectors, labels = rng.normal(size=(120, 8)), rng.integers(0, 3, 120)
    correct = knn_correct(vectors, labels, k=5)
    assert correct.shape == (120,) and correct.dtype == bool
    assert correct.mean() == knn_accuracy(vectors, labels, k=5)
    probe = linear_probe_correct(vectors, labels)
    assert probe.shape == (36,) and probe.mean() == linear_probe_accuracy(vectors, labels)


def test_bootstrap_interval_matches_the_binomial_standard_error() -> None:
    # 3,000 images at 79% correct: the binomial standard error is sqrt(0.79 * 0.21 / 3000) = 0.0074,
    # so a 95% interval is about +-1.96 * 0.0074 = +-0.0146 around 0.79 (issue 15: "about 0.7 points")
    correct = np.zeros(3000, dtype=bool)
    correct[:2370] = True
    low, high = bootstrap_interval(correct, seed=0)
    assert low < 0.79 < high
    assert (high - low) / 2 == pytest.approx(1.96 * math.sqrt(0.79 * 0.21 / 3000), rel=0.15)
    assert bootstrap_interval(correct, seed=0) == (low, high)  # seeded: the same interval every run


def test_paired_difference_sees_a_small_consistent_gain_and_calls_noise_a_tie() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(3000) < 0.79
    better = base.copy()
    better[np.flatnonzero(~base)[:60]] = True  # 60 images fixed, none broken: +2 points, the same images
    diff, low, high = paired_difference(better, base)
    assert diff == pytest.approx(0.02) and low > 0  # paired: a 2-point gain on the same images is real
    shuffled = rng.permutation(base)  # same accuracy, different images right: no real difference
    diff, low, high = paired_difference(shuffled, base)
    assert diff == 0 and low < 0 < high
    with pytest.raises(EvaluationError, match="same images"):
        paired_difference(base, base[:10])


def test_compare_pairs_every_row_with_the_strongest_baseline() -> None:
    vectors, labels = _separable(n_per_class=30)
    files = [f"f{i}" for i in range(len(labels))]
    rng = np.random.default_rng(4)
    imagenet = {**IMAGENET_112, "images_per_second": 80.0}
    sets = {
        "imagenet": Embeddings(torch.from_numpy(vectors), files, labels, ["a", "b", "c"], meta=imagenet),
        "imagenet-32": Embeddings(
            torch.from_numpy(vectors + rng.normal(scale=8, size=vectors.shape).astype(np.float32)),
            files,
            labels,
            ["a", "b", "c"],
            meta={**IMAGENET_112, "image_size": 32},
        ),
        "ssl": Embeddings(
            torch.from_numpy(vectors + rng.normal(scale=3, size=vectors.shape).astype(np.float32)),
            files,
            labels,
            ["a", "b", "c"],
            meta={"name": "efficientnet_lite0", "method": "simclr", "init": "imagenet", "image_size": 32},
        ),
    }
    table = compare(sets, k=5)
    assert table.loc[table["name"] == "imagenet", "images_per_second"].item() == 80.0
    pairs = {(p["a"], p["b"], p["metric"]) for p in table.attrs["paired"]}
    for metric in ("knn_accuracy", "linear_probe_accuracy"):
        assert {("ssl", "imagenet", metric), ("imagenet-32", "imagenet", metric), ("ssl", "imagenet-32", metric)} <= (
            pairs
        )
    row = next(p for p in table.attrs["paired"] if (p["a"], p["b"], p["metric"]) == ("ssl", "imagenet", "knn_accuracy"))
    ssl_knn = table.loc[table["name"] == "ssl", "knn_accuracy"].item()
    assert row["difference"] == pytest.approx(ssl_knn - 1.0) and row["low"] <= row["difference"] <= row["high"]


# ------------------------------------------------------------------------------------------------ ImageNet ⊕ PCA
def test_a_concatenation_of_untrained_sets_is_a_baseline_with_its_own_recipe() -> None:
    from embedlab.course.comparison import BASELINE_KINDS, KINDS, SINGLE_BASELINE_KINDS, recipe_kind
    from embedlab.embedding import concatenate_embeddings

    files = list("abcd")
    imagenet = Embeddings(torch.rand(4, 3), files, meta=IMAGENET_112)
    pca = Embeddings(torch.rand(4, 2), files, meta={"model": "pca", "embedding_dim": 2, "image_size": 64})
    both = concatenate_embeddings({"imagenet": imagenet, "pca": pca})
    assert describe_embeddings("imagenet+pca", both) == {
        "recipe": "ImageNet ⊕ PCA (no training), EfficientNet-Lite0 at 112 px ⊕ PCA of raw pixels (2 dims) at 64 px",
        "kind": "combination",
        "image_size": 112,  # the ImageNet part's
    }
    assert "combination" in KINDS and "combination" in BASELINE_KINDS and "combination" not in SINGLE_BASELINE_KINDS
    assert recipe_kind({}, "imagenet+pca") == "combination"  # a hand-made table without metadata
    trained = Embeddings(torch.rand(4, 3), files, meta={"backbone": "resnet18", "method": "simclr", "image_size": 64})
    assert recipe_kind(concatenate_embeddings({"ssl": trained, "pca": pca}).meta) == "self-supervised"
    sets = {"pca": pca, "imagenet+pca": both, "imagenet": imagenet}
    assert recipe_order(sets) == ["imagenet", "imagenet+pca", "pca"]
    assert recipe_order(sets, without=["combination"]) == ["imagenet", "pca"]  # notebook 05's maps


def test_paired_intervals_are_against_the_strongest_single_model_and_the_strongest_baseline() -> None:
    """ImageNet ⊕ PCA may top every single model: each row (the concatenation too) is still paired against the best
    ImageNet row, every other row also against the concatenation (the strongest baseline: notebook 05's gap figure),
    and the trained model against every other baseline."""
    from embedlab.embedding import concatenate_embeddings

    vectors, labels = _separable(n_per_class=40)
    files = [f"f{i}" for i in range(len(labels))]
    rng = np.random.default_rng(5)

    def noisy(scale: float, meta: dict[str, Any]) -> Embeddings:
        noise = rng.normal(scale=scale, size=vectors.shape).astype(np.float32)
        return Embeddings(torch.from_numpy(vectors + noise), files, labels, ["a", "b", "c"], meta=meta)

    sets = {
        "imagenet": noisy(6, IMAGENET_112),
        "imagenet-32": noisy(9, {**IMAGENET_112, "image_size": 32}),
        "pca": noisy(6, {"model": "pca", "embedding_dim": 8, "image_size": 32}),
        "ssl": noisy(8, {"name": "efficientnet_lite0", "method": "simclr", "init": "imagenet", "image_size": 32}),
    }
    sets["imagenet+pca"] = concatenate_embeddings({"imagenet": sets["imagenet"], "pca": sets["pca"]})
    table = compare(sets, k=5)
    kinds = dict(zip(table["name"], table["kind"]))
    assert kinds["imagenet+pca"] == "combination" and table.loc[0, "name"] == "imagenet+pca"  # independent noise
    single = table.loc[table["kind"] == "ImageNet", "name"].iloc[0]  # the strongest single model
    pairs = {(p["a"], p["b"]) for p in table.attrs["paired"] if p["metric"] == "knn_accuracy"}
    assert {(n, single) for n in sets if n != single} <= pairs  # every row against it, the concatenation too
    assert {(n, "imagenet+pca") for n in sets if n != "imagenet+pca"} <= pairs  # every row against the strongest
    assert len(pairs) == len(set(pairs)) == len(table.attrs["paired"]) / 2  # each pair once per metric
    row = next(p for p in table.attrs["paired"] if (p["a"], p["b"]) == ("imagenet+pca", single))
    knn = dict(zip(table["name"], table["knn_accuracy"]))
    assert row["difference"] == pytest.approx(knn["imagenet+pca"] - knn[single])
    gaps = paired_gaps(table)  # notebook 05's gap figure: every row minus the strongest baseline, paired
    assert [g["name"] for g in gaps] == [n for n in table["name"] if n != "imagenet+pca"]
    for g in gaps:
        pair = next(p for p in table.attrs["paired"] if (p["a"], p["b"], p["metric"]) == (g["name"], "imagenet+pca",
                    "knn_accuracy"))  # fmt: skip
        assert (g["low"], g["high"]) == (pair["low"], pair["high"]) and g["difference"] == pytest.approx(
            knn[g["name"]] - knn["imagenet+pca"]
        )
        assert g["call"] == ("tie" if g["low"] <= 0 <= g["high"] else "higher" if g["low"] > 0 else "lower")
    said = gaps_sentence(gaps)
    assert "\n" not in said and "ImageNet ⊕ PCA" in said and "a tie (interval contains 0)" in said
    for g in gaps:
        words = {"higher": "above it beyond the noise:", "tie": "a tie (interval contains 0):", "lower": "below:"}
        assert g["name"] in said.split(words[g["call"]], 1)[1].split(";")[0]  # each row named under its call


def test_knn_blocks_shrink_as_the_bank_grows_with_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import embedlab.evaluation as evaluation

    rng = np.random.default_rng(0)
    vectors, labels = rng.normal(size=(300, 8)), rng.integers(0, 3, 300)
    whole = evaluation.knn_correct(vectors, labels)
    shapes: list[tuple[int, ...]] = []
    real_topk = torch.Tensor.topk

    def recording_topk(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        shapes.append(tuple(self.shape))
        return real_topk(self, *args, **kwargs)

    monkeypatch.setattr(evaluation, "KNN_BLOCK_ELEMENTS", 3000)  # 10 rows of a 300-image bank at a time
    monkeypatch.setattr(torch.Tensor, "topk", recording_topk)
    assert (evaluation.knn_correct(vectors, labels) == whole).all()
    assert max(rows * n for rows, n in shapes) <= 3000 and len(shapes) == 30


def test_knn_predict_on_its_own_bank_leaves_each_images_own_vote_out() -> None:
    """Notebook 05's confusion-matrix exercise: predicting the bank from itself must not count each image's own
    vote, else random labels score near 100%."""
    generator = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(400, 16, generator=generator), dim=1)
    labels = torch.randint(0, 4, (400,), generator=generator)
    own_vote_out = (knn_predict(bank, bank, labels, 4, k=5) == labels).float().mean()
    own_vote_in = (knn_predict(bank, bank, labels, 4, k=5, exclude_self=False) == labels).float().mean()
    assert own_vote_out < 0.4 and own_vote_in > 0.9  # chance is 0.25
    assert (knn_predict(bank.clone(), bank, labels, 4, k=5) == labels).float().mean() == own_vote_out


def test_label_efficiency_rises_with_labels_and_brackets_each_mean() -> None:
    """More labels per class buy accuracy on separable data; each point has a range over its label draws."""
    from embedlab.evaluation import label_efficiency

    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=generator) * 1.5
    labels = torch.arange(4).repeat_interleave(60)
    vectors = centres[labels] + torch.randn(240, 16, generator=generator)
    found = label_efficiency(vectors, labels.numpy(), shots=(1, 10), draws=6)
    assert [row["labels_per_class"] for row in found] == [1, 10] and found[0]["draws"] == 6
    for row in found:
        for metric in ("knn", "probe"):
            assert row[f"{metric}_low"] <= row[metric] <= row[f"{metric}_high"]
    assert found[1]["knn"] > found[0]["knn"] and found[1]["probe"] > found[0]["probe"] > 0.25
