"""The comparison table of a run: each embedding set named by its recipe (trained, ImageNet, teacher, combination,
floor), scored with embedlab.evaluation's metrics and intervals, and paired against the baselines a user would take
instead of training. Notebook 05, the verdict and `embedlab compare` read it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.evaluation import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_RESAMPLES,
    EvaluationError,
    bootstrap_interval,
    cluster_score,
    knn_correct,
    linear_probe_correct,
    paired_difference,
)
from embedlab.registry import BACKBONES, METHODS

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
        init = meta.get("init")
        start = {None: "from random init", "imagenet": "continued from ImageNet"}.get(init, f"continued from {init}")
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
    (the best ImageNet or teacher row) and against the strongest baseline (the best of those and the combinations),
    and each trained row against every other baseline row (its own starting point and any combination among them)."""
    names, kinds = list(table["name"]), list(table["kind"])
    singles = [n for n, kind in zip(names, kinds) if kind in SINGLE_BASELINE_KINDS]
    others = [n for n, kind in zip(names, kinds) if kind in BASELINE_KINDS and n not in singles[:1]]
    strongest = [n for n, kind in zip(names, kinds) if kind in BASELINE_KINDS][:1]  # the table is sorted best first
    pairs = [(n, b) for b in dict.fromkeys(singles[:1] + strongest) for n in names if n != b]
    trained = [n for n, kind in zip(names, kinds) if kind == "self-supervised"]
    return list(dict.fromkeys(pairs + [(t, b) for t in trained for b in others]))


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
    off-the-shelf model, the best ImageNet or teacher row, and against the strongest baseline, ImageNet ⊕ PCA when
    it is best; each trained row against every other baseline): the verdict calls a gap a tie when its interval
    contains 0.
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


def _metrics_of(source: Path) -> dict[str, Any]:
    """metrics.json of another run: its folder, the file itself, or a results archive (pack_run) holding one."""
    import zipfile

    from embedlab.rundir import METRICS, MissingInputError

    if source.is_dir():
        source = source / METRICS
    try:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                return dict(json.loads(archive.read(METRICS)))
        return dict(json.loads(source.read_text(encoding="utf-8")))
    except (OSError, KeyError, ValueError):
        raise MissingInputError(
            f"compare_runs: no readable {METRICS} in {source} (run notebook 05 in that run_dir first)"
        ) from None


def _run_label(source: Path) -> str:
    """How a run is named beside the others: its folder (a results.zip or metrics.json: the folder holding it)."""
    if source.is_dir():
        return source.name
    return source.parent.name if source.stem in ("results", "metrics") else source.stem


def join_runs(table: Any, others: Sequence[str | os.PathLike[str]], *, label: str) -> Any:
    """`table` (this run, labelled `label`) with the rows of other runs' metrics.json (run folders or results
    archives) joined, best kNN first; every name and recipe starts with its run's label, so the figures tell the
    runs apart. The paired differences stay this run's: other runs' per-image scores are not stored."""
    import pandas as pd

    if not others:
        return table
    frames = [table.assign(name=label + ": " + table["name"], recipe=label + ": " + table["recipe"].astype(str))]
    labels = {label}
    for other in map(Path, others):
        tag = _run_label(other)
        tag = tag if tag not in labels else f"{tag} ({len(labels) + 1})"
        labels.add(tag)
        rows = pd.DataFrame(_metrics_of(other).get("comparison", []), columns=list(COLUMNS))
        frames.append(rows.assign(name=tag + ": " + rows["name"], recipe=tag + ": " + rows["recipe"].astype(str)))
    joined = pd.concat(frames, ignore_index=True)
    joined = joined.sort_values(["knn_accuracy", "linear_probe_accuracy"], ascending=False, kind="stable")
    joined = joined.reset_index(drop=True)
    joined.attrs = dict(table.attrs)
    return joined


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


def label_efficiency_rows(table: Any, embeddings: Mapping[str, Any], *, draws: int = 5, seed: int = 0) -> dict:
    """evaluation.label_efficiency for the rows a learner weighs: the best trained row and the two strongest
    baselines (single model, ImageNet ⊕ PCA), by recipe name; shots a class cannot fill are left out."""
    from embedlab.evaluation import LABEL_SHOTS, label_efficiency

    trained = [r for r in table.to_dict("records") if r["kind"] == "self-supervised"][:1]
    baselines = [r for r in table.to_dict("records") if r["kind"] in BASELINE_KINDS][:2]
    curves = {}
    for row in trained + baselines:
        emb = embeddings[row["name"]]
        smallest = min(np.unique(np.asarray(emb.labels), return_counts=True)[1])
        shots = [n for n in LABEL_SHOTS if n <= 0.7 * smallest]  # the probe split keeps 70% of each class
        curves[row["recipe"]] = label_efficiency(emb, shots=shots, draws=draws, seed=seed)
    return curves
