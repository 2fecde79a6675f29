"""embedlab: train, embed, visualize and compare self-supervised image embeddings.

The public API is re-exported here. Submodules load lazily, so `import embedlab` stays fast and
does not import torch until a function that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# One block per pipeline stage, in the order the data flows (see shared DESIGN.md).
# To add a public name: add one line to your module's block.
_EXPORTS: dict[str, str] = {
    # datasets
    "DATASETS": "datasets",
    "DatasetError": "datasets",
    "UnsafeArchiveError": "datasets",
    "ImageFolder": "datasets",
    "prepare": "datasets",
    "download": "datasets",
    "extract": "datasets",
    "make_thumbnails": "datasets",
    "thumbnail_root": "datasets",
    "ThumbnailReport": "datasets",
    "DatasetSpec": "datasets",
    "DatasetWarning": "datasets",
    "DownloadError": "datasets",
    "ChecksumError": "datasets",
    "open_rgb": "datasets",
    "to_rgb": "datasets",
    # models
    "BACKBONE_NAMES": "models",
    "Backbone": "models",
    "create_backbone": "models",
    "export_backbone": "models",
    "load_backbone": "models",
    "WeightsUnavailableError": "models",
    "BackboneLoadError": "models",
    "normalization": "models",
    "resolve_backbone": "models",
    # registry (methods, backbones, augmentation presets by name; torch-free)
    "register_method": "registry",
    "METHODS": "registry",
    "BACKBONES": "registry",
    # methods (one file per method on a shared base)
    "Method": "methods.base",
    "MethodContext": "methods.base",
    # transforms (the SSL view presets and the one evaluation transform)
    "ssl_transform": "transforms",
    "eval_transform": "transforms",
    # training
    "train": "training",
    "TrainResult": "training",
    "TrainingError": "training",
    # the run directory (every file of a run)
    "RunDir": "rundir",
    # embedding
    "Embeddings": "embedding",
    "embed": "embedding",
    "embed_pca": "embedding",
    "concatenate_embeddings": "embedding",
    "embed_to_shards": "embedding",
    "iter_shards": "embedding",
    "load_shards": "embedding",
    "save_embeddings": "embedding",
    "load_embeddings": "embedding",
    "EmbeddingsError": "embedding",
    "embedding_transform": "embedding",
    # projection
    "Projector": "projection",
    "project": "projection",
    "project_all": "projection",
    "load_or_project": "projection",
    "ProjectionError": "projection",
    # evaluation
    "knn_accuracy": "evaluation",
    "linear_probe_accuracy": "evaluation",
    "knn_correct": "evaluation",
    "linear_probe_correct": "evaluation",
    "bootstrap_interval": "evaluation",
    "paired_difference": "evaluation",
    "cluster_score": "evaluation",
    "label_efficiency": "evaluation",
    "EvaluationError": "evaluation",
    # plotting
    "class_palette": "plotting",
    "scatter": "plotting",
    "side_by_side": "plotting",
    "image_grid": "plotting",
    "interactive_scatter": "plotting",
    "show_map": "plotting",
    "export_map_table": "plotting",
    "save_figure": "plotting",
    "samples_per_class": "plotting",
    "augmented_pairs": "plotting",
    "nearest_neighbor_grid": "plotting",
    "loss_curve": "plotting",
    "metrics_chart": "plotting",
    "cost_chart": "plotting",
    "paired_gap_chart": "plotting",
    "label_efficiency_chart": "plotting",
    "classifier_curve": "plotting",
    # curation
    "nearest_neighbors": "curation",
    "outlier_scores": "curation",
    "near_duplicates": "curation",
    "select_diverse": "curation",
    "kmeans_clusters": "curation",
    "cluster_purity": "curation",
    "center": "curation",
    "most_unusual": "curation",
    "knn_graph": "curation",
    "NeighbourGraph": "curation",
    "show_neighbors": "curation",
    "show_images": "curation",
    "Neighbors": "curation",
    "Clusters": "curation",
    "CurationError": "curation",
    # classifier (on the exported backbone)
    "train_classifier": "classifier",
    "Classifier": "classifier",
    "ClassifierResult": "classifier",
    "FinetuneError": "classifier",
    # files (every file is written atomically)
    "write_json": "_io",
    # settings (one typed, checked dataclass per stage; shared by train(), the CLI and the notebooks)
    "DataSettings": "settings",
    "TrainSettings": "settings",
    "EmbedSettings": "settings",
    "ProjectionSettings": "settings",
    "CompareSettings": "settings",
    "CurationSettings": "settings",
    "ParameterError": "settings",
    # course: what the notebooks need and nothing else uses (embedlab.course)
    "validate_params": "course.params",
    "MissingInputError": "course.params",
    "NotebookParams": "course.params",
    "show_versions": "course.params",
    "preset_names": "course.presets",
    "load_preset": "course.presets",
    "ensure_dataset": "course.standalone",
    "ensure_backbone": "course.standalone",
    "ensure_embeddings": "course.standalone",
    "ensure_images": "course.standalone",
    "pack_run": "course.standalone",
    "comparison_sets": "course.standalone",
    "make_embedding": "course.standalone",
    "teacher_row": "course.standalone",
    "compare": "course.comparison",
    "recipe_name": "course.comparison",
    "describe_embeddings": "course.comparison",
    "recipe_order": "course.comparison",
    "linear_probe_note": "course.comparison",
    "label_efficiency_rows": "course.comparison",
    "join_runs": "course.comparison",
    "describe_comparison": "course.verdict",
    "paired_gaps": "course.verdict",
    "gaps_sentence": "course.verdict",
    "save_metrics": "course.report",
    "run_pipeline": "course.runner",
    "PipelineError": "course.runner",
}

_SUBMODULES = (
    "registry",
    "rundir",
    "runtime",
    "transforms",
    "datasets",
    "models",
    "methods",
    "training",
    "embedding",
    "projection",
    "evaluation",
    "plotting",
    "curation",
    "classifier",
    "course",
    "cli",
    "settings",
)

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    """Import a submodule or a re-exported name on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
