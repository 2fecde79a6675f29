"""How good is an embedding? kNN accuracy, a linear probe and a cluster score, all on frozen vectors, with
bootstrap intervals over the images so a difference can be told from noise.

kNN follows lightly's benchmarks (`lightly.utils.benchmarking.knn.knn_predict`): cosine similarity, the k nearest
neighbours vote with weight exp(similarity / temperature). It runs in chunks, so 10,000 x 1280 fits in memory.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlab.registry import BACKBONES, METHODS

KNN_CHUNK = 1024  # query rows per similarity block: [1024, N] floats at a time, fewer when N is large
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
    k: int = 20,
    temperature: float = 0.1,
    exclude_self: bool = False,
    chunk_size: int = KNN_CHUNK,
) -> torch.Tensor:
    """Top-1 class per query by lightly's weighted kNN vote; inputs L2-normalised; exclude_self for leave-one-out."""
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
    k: int = 20,
    temperature: float = 0.1,
    chunk_size: int = KNN_CHUNK,
) -> np.ndarray:
    """Per query image, whether the weighted kNN vote (cosine, k=20, T=0.1) names its class: a boolean array.

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
    k: int = 20,
    temperature: float = 0.1,
    chunk_size: int = KNN_CHUNK,
) -> float:
    """Weighted-kNN top-1 accuracy (cosine, k=20, T=0.1); leave-one-out (self excluded) without a test set."""
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


KINDS = ("self-supervised", "ImageNet", "teacher", "combination", "floor")  # the trained model, baselines, floors
SINGLE_BASELINE_KINDS = ("ImageNet", "teacher")  # off-the-shelf models a user could take instead of training:
# ImageNet networks and a distillation run's own teacher (DINOv2 for the `full` preset); paired intervals use the best
BASELINE_KINDS = (*SINGLE_BASELINE_KINDS, "combination")  # and what a user can build from them without training
# (`concatenate_embeddings`, e.g. ImageNet ⊕ PCA): every baseline the trained model must beat


def _backbone_title(name: Any) -> str:
    """The registry's display name (EfficientNet-Lite0 rather than efficientnet_lite0); unknown names pass through."""
    spec = BACKBONES.get(str(name))
    return spec.display_name if spec else str(name)


def _method_title(name: Any) -> str:
    """The registry's display name of a method (SimCLR rather than simclr); unknown names pass through."""
    spec = METHODS.get(str(name))
    return spec.display_name if spec else str(name)


def _training_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """An embedding set's metadata merged over its exported backbone's backbone.json (init, teacher...)."""
    from embedlab.models import sidecar_path

    source = meta.get("source")
    sidecar = sidecar_path(str(source)) if source else None
    if sidecar is None or not sidecar.is_file():
        return dict(meta)
    try:
        trained = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return dict(meta)
    return {**trained, **{k: v for k, v in meta.items() if v is not None and k != "weights"}}


def recipe_kind(meta: Mapping[str, Any], name: str = "") -> str:
    """'self-supervised' (trained by embedlab), 'ImageNet' (a pretrained baseline), 'teacher' (the frozen teacher of
    a distillation run, another off-the-shelf baseline), 'combination' (a concatenation of untrained sets, such as
    ImageNet ⊕ PCA: a baseline too) or 'floor' (random init, PCA)."""
    if meta.get("components"):
        return "self-supervised" if any(part.get("method") for part in meta.get("parts") or []) else "combination"
    if meta.get("teacher_of") or name == "teacher":
        return "teacher"
    if meta.get("method"):
        return "self-supervised"
    if meta.get("weights") == "imagenet":
        return "ImageNet"
    if meta or name in ("random", "pca"):
        return "floor"
    if "+" in name:  # a concatenation named by its parts, e.g. "imagenet+pca"
        return "combination"
    return "ImageNet" if name.startswith("imagenet") else "self-supervised" if name == "ssl" else "floor"


def recipe_name(meta: Mapping[str, Any], name: str = "") -> str:
    """A row name that says how the vectors were made, e.g. "SimCLR continued from ImageNet, EfficientNet-Lite0, 32 px".

    `meta` is an Embeddings' metadata or an exported backbone's backbone.json; `name` is the fallback.
    """
    if not meta:
        return name
    if meta.get("components"):
        components = meta["components"]
        parts = [_part_title(part, n) for part, n in zip(meta.get("parts") or [{} for _ in components], components)]
        untrained = " (no training)" if recipe_kind(meta) == "combination" else ""
        return f"{' ⊕ '.join(short for short, _ in parts)}{untrained}, {' ⊕ '.join(detail for _, detail in parts)}"
    size = meta.get("image_size")
    px = f", {size} px" if size else ""
    backbone = _backbone_title(meta.get("backbone") or meta.get("name") or meta.get("model") or name)
    if meta.get("model") == "pca":
        return f"PCA of raw pixels ({meta.get('embedding_dim', '?')} dims){px}"
    if meta.get("teacher_of"):
        return f"the distillation teacher (no training), {backbone}{px}"
    method = meta.get("method")
    if method:
        start = "continued from ImageNet" if meta.get("init") == "imagenet" else "from random init"
        teacher = f" of {_backbone_title(meta['teacher'])}" if meta.get("teacher") else ""
        return f"{_method_title(method)}{teacher} {start}, {backbone}{px}"
    if meta.get("weights") == "imagenet":
        return f"ImageNet weights (no training), {backbone}{px}"
    return f"random init (no training), {backbone}{px}"


def _part_title(meta: Mapping[str, Any], name: str) -> tuple[str, str]:
    """(short, detail) of one part of a concatenation: ("ImageNet", "EfficientNet-Lite0 at 224 px")."""
    at = f" at {meta['image_size']} px" if meta.get("image_size") else ""
    if meta.get("model") == "pca":
        return "PCA", f"PCA of raw pixels ({meta.get('embedding_dim', '?')} dims){at}"
    backbone = _backbone_title(meta.get("backbone") or meta.get("model") or name) + at
    if meta.get("teacher_of"):
        return "teacher", backbone
    if meta.get("method"):
        return _method_title(meta["method"]), backbone
    return ("ImageNet" if meta.get("weights") == "imagenet" else "random init"), backbone


def describe_embeddings(name: str, embeddings: Any) -> dict[str, Any]:
    """Recipe name, kind and input size of one embedding set, from its metadata (and backbone.json)."""
    meta = _training_meta(getattr(embeddings, "meta", None) or {})
    return {"recipe": recipe_name(meta, name), "kind": recipe_kind(meta, name), "image_size": meta.get("image_size")}


COLUMNS = (
    "name",
    "recipe",
    "kind",
    "image_size",
    "n",
    "dim",
    "knn_accuracy",
    "knn_low",
    "knn_high",
    "linear_probe_accuracy",
    "probe_low",
    "probe_high",
    "cluster_nmi",
    "images_per_second",
)
INTERVALS = {"knn_accuracy": ("knn_low", "knn_high"), "linear_probe_accuracy": ("probe_low", "probe_high")}


def _score(name: str, emb: Any, k: int, test_fraction: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One row of `compare` and the per-image correctness behind its two accuracies."""
    if getattr(emb, "labels", None) is None:
        raise EvaluationError(f"compare: embeddings {name!r} have no labels (an unlabeled folder?)")
    correct = {
        "knn_accuracy": knn_correct(emb, k=k),
        "linear_probe_accuracy": linear_probe_correct(emb, test_fraction=test_fraction, seed=seed),
    }
    row: dict[str, Any] = {"name": name, **describe_embeddings(name, emb), "n": len(emb.vectors)}
    row["dim"] = int(emb.vectors.shape[1])
    for metric, (low, high) in INTERVALS.items():
        row[metric] = float(correct[metric].mean())
        row[low], row[high] = bootstrap_interval(correct[metric], seed=seed)
    row["cluster_nmi"] = cluster_score(emb, seed=seed)
    row["images_per_second"] = (getattr(emb, "meta", None) or {}).get("images_per_second")
    return row, correct


def _pairs_to_compare(table: Any) -> list[tuple[str, str]]:
    """Every row, a combination such as ImageNet ⊕ PCA included, against the strongest single off-the-shelf model
    (the best ImageNet or teacher row), and each trained row against every other baseline row (its own starting
    point and any combination among them)."""
    names, kinds = list(table["name"]), list(table["kind"])
    singles = [n for n, kind in zip(names, kinds) if kind in SINGLE_BASELINE_KINDS]
    pairs = [(n, singles[0]) for n in names if n != singles[0]] if singles else []
    trained = [n for n, kind in zip(names, kinds) if kind == "self-supervised"]
    others = [n for n, kind in zip(names, kinds) if kind in BASELINE_KINDS and n not in singles[:1]]
    return pairs + [(t, b) for t in trained for b in others]


def _paired_rows(items: Mapping[str, Any], table: Any, correct: Mapping[str, Any], seed: int) -> list[dict]:
    """Paired bootstrap differences (kNN and linear probe) for `_pairs_to_compare`, on the same images only."""
    rows = []
    for a, b in _pairs_to_compare(table):
        if list(getattr(items[a], "filenames", [])) != list(getattr(items[b], "filenames", [])):
            continue  # different images: no pairing
        for metric in INTERVALS:
            diff, low, high = paired_difference(correct[a][metric], correct[b][metric], seed=seed)
            rows.append({"a": a, "b": b, "metric": metric, "difference": diff, "low": low, "high": high})
    return rows


def compare(
    embeddings: Mapping[str, Any] | Sequence[Any], *, k: int = 20, test_fraction: float = 0.3, seed: int = 0
) -> Any:
    """One row per embedding set, best kNN first: name, recipe, kind, image size, n, dim, kNN and linear-probe
    accuracy each with a 95% bootstrap interval over the images (`knn_low`..`knn_high`, `probe_low`..`probe_high`),
    cluster NMI and embedding speed (images/s, when the embeddings recorded it).

    `table.attrs["paired"]` holds paired differences with their intervals (every row against the strongest single
    off-the-shelf model, the best ImageNet or teacher row; each trained row against every other baseline, ImageNet
    ⊕ PCA included): the verdict calls a gap a tie when its interval contains 0.
    """
    import pandas as pd

    items = (
        dict(embeddings.items())
        if isinstance(embeddings, Mapping)
        else {(getattr(e, "name", "") or f"embeddings {i}"): e for i, e in enumerate(embeddings)}
    )
    scored = {name: _score(name, emb, k, test_fraction, seed) for name, emb in items.items()}
    table = pd.DataFrame([row for row, _ in scored.values()], columns=list(COLUMNS))
    table = table.sort_values(["knn_accuracy", "linear_probe_accuracy"], ascending=False, kind="stable").reset_index(
        drop=True
    )
    table.attrs["evaluation"] = {
        "knn_k": k,
        "knn_temperature": 0.1,
        "probe_test_fraction": test_fraction,
        "seed": seed,
        "interval": f"{BOOTSTRAP_LEVEL:.0%} bootstrap over images, {BOOTSTRAP_RESAMPLES} resamples",
    }  # how it was measured: save_metrics writes it to metrics.json
    table.attrs["paired"] = _paired_rows(items, table, {n: c for n, (_, c) in scored.items()}, seed)
    return table


def recipe_order(embeddings: Mapping[str, Any], *, without: Sequence[str] = ()) -> list[str]:
    """Names ordered for display: self-supervised first, then the ImageNet baselines by input size, the teacher, the
    combinations (ImageNet ⊕ PCA), then floors; the kinds in `without` left out (notebook 05 maps every set but the
    combinations, whose parts have their own maps)."""
    info = {name: describe_embeddings(name, emb) for name, emb in embeddings.items()}

    def key(name: str) -> tuple[int, int, str]:
        kind = info[name]["kind"]
        return KINDS.index(kind) if kind in KINDS else len(KINDS), info[name]["image_size"] or 0, name

    return sorted((name for name in embeddings if info[name]["kind"] not in without), key=key)


def linear_probe_note(
    metrics_json: str | os.PathLike[str], name: str, probe_accuracy: float | None, images: int
) -> str:
    """Say how a linear probe measured elsewhere (notebook 06) relates to notebook 05's row `name` in metrics.json:
    the same images and split, or a different subset (and so a different number) and why."""
    path = Path(metrics_json)
    if probe_accuracy is None:
        return "no linear probe was measured here"
    if not path.is_file():
        return (
            f"linear probe here: {probe_accuracy:.3f} on {images:,} images "
            f"(notebook 05 has not written {path.name} yet)"
        )
    metrics = json.loads(path.read_text(encoding="utf-8"))
    row = next((r for r in metrics.get("comparison", []) if r.get("name") == name), None)
    if row is None:
        return f"linear probe here: {probe_accuracy:.3f}; {path.name} has no row {name!r} to compare with"
    theirs, n = float(row["linear_probe_accuracy"]), int(row["n"])
    if n == images:
        return (
            f"linear probe here {probe_accuracy:.3f}, notebook 05 {theirs:.3f}: the same {n:,} images and the "
            f"same stratified split (a small gap comes from resizing the images slightly differently)"
        )
    return (
        f"linear probe here {probe_accuracy:.3f} on {images:,} images, notebook 05 {theirs:.3f} on all {n:,}: "
        f"a different subset (set classifier_images_per_class=None to use the same images and split); "
        f"fewer training images usually mean a lower probe accuracy"
    )
