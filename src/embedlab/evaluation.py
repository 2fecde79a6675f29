"""How good is an embedding? kNN accuracy, a linear probe and a cluster score, all on frozen vectors, with
bootstrap intervals over the images so a difference can be told from noise.

kNN follows lightly's benchmarks (`lightly.utils.benchmarking.knn.knn_predict`): cosine similarity, the k nearest
neighbours vote with weight exp(similarity / temperature). It runs in chunks, so 10,000 x 1280 fits in memory.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from embedlab.settings import CompareSettings

KNN_CHUNK = 1024  # query rows per similarity block: [1024, N] floats at a time, fewer when N is large
_DECLARED = CompareSettings()  # the default k, declared once in settings
KNN_BLOCK_ELEMENTS = 2**25  # at most this many similarities at once (128 MB): 33 query rows against 1M images


class EvaluationError(ValueError):
    """Inputs that cannot be scored (shapes disagree, too few samples per class, no labels)."""


def _vectors(x: Any) -> torch.Tensor:
    """[N, D] float32 CPU tensor from a tensor, array or Embeddings."""
    x = getattr(x, "vectors", x)
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to("cpu", torch.float32)
    if t.ndim != 2:
        raise EvaluationError(f"vectors must be 2-D [N, D], got shape {tuple(t.shape)}")
    return t


def _labels(labels: Any, vectors: Any, n: int, what: str) -> np.ndarray:
    """Labels as a 1-D array of length n (taken from an Embeddings when not given)."""
    if labels is None:
        labels = getattr(vectors, "labels", None)
    if labels is None:
        raise EvaluationError(f"{what}: labels are needed (the embeddings have none)")
    array = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if len(array) != n:
        raise EvaluationError(f"{what}: {len(array)} labels for {n} vectors")
    return array


def _encode(*label_arrays: np.ndarray) -> tuple[list[torch.Tensor], int]:
    """Map any label values (ints, strings) to 0..C-1 consistently across arrays; returns (codes, C)."""
    classes, codes = np.unique(np.concatenate(label_arrays), return_inverse=True)
    out, start = [], 0
    for array in label_arrays:
        out.append(torch.from_numpy(codes[start : start + len(array)].astype(np.int64)))
        start += len(array)
    return out, len(classes)


def knn_predict(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    *,
    k: int = _DECLARED.knn_k,
    temperature: float = 0.1,
    exclude_self: bool | None = None,
    chunk_size: int = KNN_CHUNK,
) -> torch.Tensor:
    """Top-1 class per query by lightly's weighted kNN vote; inputs L2-normalised. exclude_self (leave-one-out):
    None leaves each image's own vote out when the queries are the bank itself, where it would count itself
    and score near 100% even on random labels; pass False to keep it."""
    if exclude_self is None:
        exclude_self = queries is bank or (queries.shape == bank.shape and bool(torch.equal(queries, bank)))
    predictions = []
    step = max(1, min(chunk_size, KNN_BLOCK_ELEMENTS // max(1, len(bank))))
    for start in range(0, len(queries), step):
        sim = queries[start : start + step] @ bank.T  # [B, N] cosine similarities
        if exclude_self:
            rows = torch.arange(len(sim))
            sim[rows, rows + start] = -float("inf")
        weight, index = sim.topk(k, dim=1)
        scores = torch.zeros(len(sim), num_classes, dtype=sim.dtype)
        scores.scatter_add_(1, bank_labels[index], (weight / temperature).exp())
        predictions.append(scores.argmax(dim=1))
    return torch.cat(predictions)


def knn_correct(
    vectors: Any,
    labels: Any = None,
    test_vectors: Any = None,
    test_labels: Any = None,
    *,
    k: int = _DECLARED.knn_k,
    temperature: float = 0.1,
    chunk_size: int = KNN_CHUNK,
) -> np.ndarray:
    """Per query image, whether the weighted kNN vote (cosine, k=knn_k, T=0.1) names its class: a boolean array.

    Without a test set every image is a query against all the others (leave-one-out, itself excluded); its mean is
    `knn_accuracy`, and `bootstrap_interval` resamples it for a 95% interval.
    """
    if temperature <= 0:
        raise EvaluationError(f"temperature must be > 0, got {temperature}")
    bank = torch.nn.functional.normalize(_vectors(vectors), dim=1)
    bank_labels = _labels(labels, vectors, len(bank), "knn_accuracy")
    loo = test_vectors is None
    if loo:
        if len(bank) < 2:
            raise EvaluationError("leave-one-out kNN needs at least 2 vectors")
        queries, query_labels = bank, bank_labels
    else:
        queries = torch.nn.functional.normalize(_vectors(test_vectors), dim=1)
        query_labels = _labels(test_labels, test_vectors, len(queries), "knn_accuracy (test set)")
        if queries.shape[1] != bank.shape[1]:
            raise EvaluationError(f"test vectors have dimension {queries.shape[1]}, train vectors {bank.shape[1]}")
    (bank_codes, query_codes), num_classes = _encode(bank_labels, query_labels)
    k = min(k, len(bank) - 1 if loo else len(bank))
    if k < 1:
        raise EvaluationError(f"k must be >= 1, got {k}")
    predicted = knn_predict(
        queries, bank, bank_codes, num_classes, k=k, temperature=temperature, exclude_self=loo, chunk_size=chunk_size
    )
    return (predicted == query_codes).numpy()


def knn_accuracy(
    vectors: Any,
    labels: Any = None,
    test_vectors: Any = None,
    test_labels: Any = None,
    *,
    k: int = _DECLARED.knn_k,
    temperature: float = 0.1,
    chunk_size: int = KNN_CHUNK,
) -> float:
    """Weighted-kNN top-1 accuracy (cosine, k=knn_k, T=0.1); leave-one-out (self excluded) without a test set."""
    correct = knn_correct(
        vectors, labels, test_vectors, test_labels, k=k, temperature=temperature, chunk_size=chunk_size
    )
    return float(correct.mean())


def linear_probe_correct(
    vectors: Any, labels: Any = None, *, test_fraction: float = 0.3, seed: int = 0, max_iter: int = 1000, C: float = 1.0
) -> np.ndarray:
    """Per held-out image, whether logistic regression on standardised frozen embeddings names its class.

    The stratified split depends only on the labels and the seed, so every embedding set of the same images is
    tested on the same held-out images, in the same order: the arrays of two sets pair up image by image.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not 0.0 < test_fraction < 1.0:
        raise EvaluationError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    x = _vectors(vectors).numpy()
    y = _labels(labels, vectors, len(x), "linear_probe_accuracy")
    classes, counts = np.unique(y, return_counts=True)
    n_test = max(len(classes), round(test_fraction * len(y)))
    if len(classes) == 1:
        return np.ones(n_test, dtype=bool)  # one class: the only possible prediction is always right
    if counts.min() < 2 or len(y) - n_test < len(classes):
        raise EvaluationError(
            f"linear probe needs >= 2 samples per class and room for a stratified "
            f"{test_fraction:.0%} test split; class sizes range {counts.min()}..{counts.max()} "
            f"for {len(classes)} classes, {len(y)} samples. Embed more images per class."
        )
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=n_test, random_state=seed, stratify=y)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=C))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # near-converged is fine for a probe score
        probe.fit(x_train, y_train)
    return np.asarray(probe.predict(x_test) == y_test)


def linear_probe_accuracy(
    vectors: Any, labels: Any = None, *, test_fraction: float = 0.3, seed: int = 0, max_iter: int = 1000, C: float = 1.0
) -> float:
    """Accuracy of logistic regression on standardised frozen embeddings, on a stratified held-out split."""
    correct = linear_probe_correct(vectors, labels, test_fraction=test_fraction, seed=seed, max_iter=max_iter, C=C)
    return float(correct.mean())


# ------------------------------------------------------------------------------------------------ labels
LABEL_SHOTS = (1, 5, 10, 50)  # labelled images per class in the label-efficiency curve


def label_efficiency(
    vectors: Any,
    labels: Any = None,
    *,
    shots: Any = LABEL_SHOTS,
    draws: int = 10,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """What `n` labels per class buy: kNN and a linear probe trained on n labelled images per class drawn from the
    training part of the probe's split and tested on its held-out images, over `draws` random draws. One dict per
    n: the mean accuracy of each and the 2.5-97.5 percentiles over the draws (`knn_low`.., `probe_low`..)."""
    from sklearn.model_selection import train_test_split

    x = _vectors(vectors)
    y = _labels(labels, vectors, len(x), "label_efficiency")
    n_test = max(len(np.unique(y)), round(test_fraction * len(y)))
    train, test = train_test_split(np.arange(len(y)), test_size=n_test, random_state=seed, stratify=y)
    found = []
    for n in shots:
        scores = np.array([_few_label_scores(x, y, train, test, n, seed + draw) for draw in range(draws)])
        row: dict[str, Any] = {"labels_per_class": int(n), "draws": draws}
        for column, name in enumerate(("knn", "probe")):
            low, high = np.percentile(scores[:, column], [2.5, 97.5])
            row.update({name: float(scores[:, column].mean()), f"{name}_low": float(low), f"{name}_high": float(high)})
        found.append(row)
    return found


def _few_label_scores(x: torch.Tensor, y: np.ndarray, train: np.ndarray, test: np.ndarray, n: int, seed: int) -> tuple:
    """kNN and linear-probe accuracy on `test` with at most n labelled training images per class (one draw)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(train[y[train] == c])[:n] for c in np.unique(y[train])])
    knn = knn_correct(x[chosen], y[chosen], x[test], y[test], k=min(20, len(chosen))).mean()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a probe on one image per class does not converge, and need not
        probe.fit(x[chosen].numpy(), y[chosen])
    return float(knn), float((probe.predict(x[test].numpy()) == y[test]).mean())


# ------------------------------------------------------------------------------------------------ noise
BOOTSTRAP_RESAMPLES = 1000  # resamples of the images; the 2.5th and 97.5th percentiles bound a 95% interval
BOOTSTRAP_LEVEL = 0.95


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` draws with replacement of the entries of `values` (in blocks: bounded memory)."""
    rng = np.random.default_rng(seed)
    n, means = len(values), []
    block = max(1, 2_000_000 // max(1, n))
    for start in range(0, resamples, block):
        index = rng.integers(0, n, size=(min(block, resamples - start), n))
        means.append(values[index].mean(axis=1))
    return np.concatenate(means)


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(
    correct: Any, *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = BOOTSTRAP_LEVEL, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval (95% by default) of an accuracy, resampling the images with replacement.

    `correct` is one entry per image (from `knn_correct` or `linear_probe_correct`). It says how much the accuracy
    would move with another sample of images of the same kind; it does not cover another training run.
    """
    values = np.asarray(correct, dtype=np.float64).reshape(-1)
    if len(values) == 0:
        raise EvaluationError("bootstrap_interval: no images")
    return _percentiles(_bootstrap_means(values, resamples, seed), level)


def paired_difference(
    correct_a: Any,
    correct_b: Any,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(difference, low, high): accuracy of A minus B and its bootstrap interval, both scored on the same images.

    The same resampled images score both sets (a paired bootstrap), so what the two share cancels out. When the
    interval contains 0 the difference is within the noise: call it a tie.
    """
    a = np.asarray(correct_a, dtype=np.float64).reshape(-1)
    b = np.asarray(correct_b, dtype=np.float64).reshape(-1)
    if len(a) != len(b) or len(a) == 0:
        raise EvaluationError(f"paired_difference needs the same images on both sides, got {len(a)} and {len(b)}")
    low, high = _percentiles(_bootstrap_means(a - b, resamples, seed), level)
    return float(a.mean() - b.mean()), low, high


def cluster_score(vectors: Any, labels: Any = None, *, seed: int = 0) -> float:
    """NMI between k-means clusters (`curation.kmeans_clusters`, cosine, k = number of classes) and the labels."""
    from sklearn.metrics import normalized_mutual_info_score

    from embedlab.curation import kmeans_clusters

    x = _vectors(vectors)
    y = _labels(labels, vectors, len(x), "cluster_score")
    k = len(np.unique(y))
    if len(x) < k:
        raise EvaluationError(f"cluster_score: {len(x)} vectors for {k} classes")
    clusters = kmeans_clusters(x, k, seed=seed, n_init=10)
    return float(normalized_mutual_info_score(y, clusters.labels))
