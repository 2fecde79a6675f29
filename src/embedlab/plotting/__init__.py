"""Figures: class-coloured scatter plots, side-by-side panels, image grids, loss curves and interactive HTML.

Colours come from `class_palette` (sorted class names, 60 distinct colours), so a class keeps its colour in every
figure and every run; every figure is written atomically with `save_figure`. One file per kind of figure, each
importing only common.py:

===============  ====================================================================================
common.py        PlottingError, class colours, label checks, class_of, wrap_at_commas, save_figure
scatterplots.py  scatter, side_by_side, annotate_classes (class names at their medians)
grids.py         image_grid, samples_per_class, augmented_pairs, nearest_neighbor_grid
curves.py        loss_curve, classifier_curve, metrics_chart, cost_chart, label_efficiency_chart, paired_gap_chart
maps.py          interactive_scatter (bokeh HTML page; linked thumbnails + WebGL past 20,000 points),
                 show_map (the same map inline in a notebook), export_map_table for a large-scale viewer
===============  ====================================================================================

Every public name is re-exported here (``from embedlab.plotting import scatter``).
"""

from __future__ import annotations

from embedlab.plotting.common import (
    PlottingError,
    SavedFigurePath,
    class_of,
    class_palette,
    save_figure,
    wrap_at_commas,
)
from embedlab.plotting.curves import (
    KIND_COLOURS,
    METRIC_LABELS,
    classifier_curve,
    contrastive_chance_level,
    cost_chart,
    label_efficiency_chart,
    loss_curve,
    metrics_chart,
    paired_gap_chart,
    quality_frontier,
)
from embedlab.plotting.grids import augmented_pairs, image_grid, nearest_neighbor_grid, samples_per_class
from embedlab.plotting.maps import (
    TOOLTIP,
    export_map_table,
    interactive_scatter,
    map_figure,
    map_tier,
    show_map,
    thumbnail_data_uri,
    viewer_command,
    write_thumbnails,
)
from embedlab.plotting.scatterplots import annotate_classes, scatter, side_by_side

__all__ = [
    "KIND_COLOURS",
    "METRIC_LABELS",
    "TOOLTIP",
    "PlottingError",
    "SavedFigurePath",
    "annotate_classes",
    "augmented_pairs",
    "class_of",
    "class_palette",
    "classifier_curve",
    "contrastive_chance_level",
    "cost_chart",
    "label_efficiency_chart",
    "quality_frontier",
    "export_map_table",
    "image_grid",
    "interactive_scatter",
    "map_figure",
    "map_tier",
    "show_map",
    "loss_curve",
    "metrics_chart",
    "nearest_neighbor_grid",
    "paired_gap_chart",
    "samples_per_class",
    "save_figure",
    "scatter",
    "side_by_side",
    "thumbnail_data_uri",
    "viewer_command",
    "wrap_at_commas",
    "write_thumbnails",
]
