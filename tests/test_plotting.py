"""Tests for embedlab.plotting: stable distinct colours, legends outside, atomic saves, safe interactive HTML."""

from __future__ import annotations

import html
import json
import random
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from embedlab.plotting import (  # noqa: E402
    PlottingError,
    augmented_pairs,
    class_palette,
    classifier_curve,
    image_grid,
    interactive_scatter,
    loss_curve,
    metrics_chart,
    nearest_neighbor_grid,
    samples_per_class,
    save_figure,
    scatter,
    side_by_side,
)

EVIL = "<img src=x onerror=alert(1)>.png"


def test_palette_distinct_stable_and_order_independent() -> None:
    names = [f"class_{i:02d}" for i in range(30)]
    palette = class_palette(names)
    assert len(set(palette.values())) == 30
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    assert class_palette(shuffled) == palette == class_palette(set(names))
    assert list(palette) == sorted(names)
    big = class_palette([f"c{i}" for i in range(90)])
    assert len(set(big.values())) == 90
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in big.values())


def test_scatter_legend_outside_and_colours_match_palette() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(90, 2))
    labels = np.repeat(np.arange(30), 3)
    names = [f"scene {i}" for i in range(30)]
    fig = scatter(points, labels, names, title="t")
    ax = fig.axes[0]
    fig.canvas.draw()
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1  # legend sits to the right of the plot area
    assert len(ax.get_legend().get_texts()) == 30
    colours = {matplotlib.colors.to_hex(c) for c in ax.collections[0].get_facecolors()}
    assert colours == set(class_palette(names).values())
    plt.close(fig)
    with pytest.raises(PlottingError, match="90 points but 10 labels"):
        scatter(points, labels[:10], names)


def test_side_by_side_shares_colours_and_one_legend(tmp_path) -> None:
    rng = np.random.default_rng(0)
    labels = np.array(["b", "a", "c"] * 10)
    panels = {"ssl": rng.normal(size=(30, 2)), "imagenet": rng.normal(size=(30, 2)), "random": rng.normal(size=(30, 2))}
    fig = side_by_side(panels, labels)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["ssl", "imagenet", "random"]
    per_panel = [sorted({matplotlib.colors.to_hex(c) for c in ax.collections[0].get_facecolors()}) for ax in titled]
    assert per_panel[0] == per_panel[1] == per_panel[2] == sorted(class_palette(["a", "b", "c"]).values())
    assert len(fig.legends) == 1
    out = save_figure(fig, tmp_path / "figs" / "compare.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["compare.png"]  # no temporary files left behind
    plt.close(fig)


class FakeFolder:
    """Minimal ImageFolder stand-in: (PIL image, label, filename) items."""

    def __init__(self, n: int = 8) -> None:
        self.classes = ["cat", "dog"]
        self.labels = [i % 2 for i in range(n)]
        self.filenames = [f"{self.classes[label]}/{i}.png" for i, label in enumerate(self.labels)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return Image.new("RGB", (20, 20), (i * 20, 100, 50)), self.labels[i], self.filenames[i]


def test_image_grids() -> None:
    normalised = torch.randn(3, 16, 16)  # an ImageNet-normalised tensor is shown un-normalised, clipped
    fig = image_grid(
        [Image.new("RGB", (10, 10)), normalised, np.zeros((8, 8), np.uint8)], titles=["a", "b", "c"], ncols=2
    )
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "b"
    plt.close(fig)
    fig = samples_per_class(FakeFolder(), per_class=3)
    assert len(fig.axes) == 6 and fig.axes[0].get_ylabel() == "cat"
    plt.close(fig)
    fig = augmented_pairs(FakeFolder(), lambda img: [torch.zeros(3, 8, 8), torch.ones(3, 8, 8)], n=2)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["dog", "view 1", "view 2"] or fig.axes[1].get_title() == "view 1"
    plt.close(fig)
    with pytest.raises(PlottingError, match="no images"):
        image_grid([])


def test_augmented_pairs_with_real_ssl_transform() -> None:
    transforms = pytest.importorskip("embedlab.transforms")
    fig = augmented_pairs(FakeFolder(), transforms.ssl_transform("grayscale", 16), n=2)
    assert sum(ax.get_title() == "view 2" for ax in fig.axes) == 2
    plt.close(fig)


def test_augmented_pairs_calls_a_one_view_transform_twice() -> None:
    calls = []

    def one_view(image):
        calls.append(image)
        return [torch.full((3, 8, 8), float(len(calls)))]  # distillation's transform: a list of one view

    fig = augmented_pairs(FakeFolder(), one_view, n=2)
    assert len(calls) == 4 and sum(ax.get_title() == "view 2" for ax in fig.axes) == 2
    plt.close(fig)
    transforms = pytest.importorskip("embedlab.transforms")
    fig = augmented_pairs(FakeFolder(), transforms.ssl_transform("grayscale", 16, method="distillation"), n=2)
    assert sum(ax.get_title() == "view 2" for ax in fig.axes) == 2
    plt.close(fig)


def _write_images(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 10, 10)).save(path)


def test_nearest_neighbor_grid_ranks_by_centred_similarity(tmp_path) -> None:
    files = [f"a/{i}.png" for i in range(3)] + [f"b/{i}.png" for i in range(3)]
    _write_images(tmp_path, files)
    # all-positive vectors: raw cosine similarities are all above 0.7; centred they spread to both signs
    vectors = np.array([[1, 0.5], [1, 0.6], [1, 0.7], [0.5, 1], [0.6, 1], [0.7, 1]], np.float32)
    fig = nearest_neighbor_grid(vectors, files, tmp_path, queries=[0, 3], k=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "query\na" and titles[1].startswith("#1 a\n+") and titles[4].startswith("#1 b\n+")
    assert "centred cosine similarity" in fig._suptitle.get_text().replace("\n", " ")
    centred = [float(t.split("\n")[1]) for t in titles if t.startswith("#")]
    assert min(centred) < 0.9  # raw cosine of these vectors is >= 0.94 between any same-class pair
    plt.close(fig)


def _loss_files(tmp_path, batch_size: int = 64, method: str = "simclr"):
    (tmp_path / "loss.csv").write_text(
        "epoch,step,loss,lr,images_per_second\n0,0,5.0,0.1,10\n0,1,4.0,0.1,10\n1,2,3.5,0.1,10\n"
    )
    (tmp_path / "epochs.csv").write_text(
        "epoch,steps,loss,knn_accuracy,seconds,images_per_second\n0,2,4.5,0.3,1,10\n1,1,3.5,0.4,1,10\n"
    )
    (tmp_path / "config.json").write_text(
        json.dumps({"method": method, "batch_size": batch_size, "global_batch_size": batch_size})
    )
    return tmp_path / "loss.csv", tmp_path / "epochs.csv"


def test_loss_curve_has_one_legend_and_the_chance_level(tmp_path) -> None:
    loss, epochs = _loss_files(tmp_path)
    fig = loss_curve(loss, epochs)
    ax, twin = fig.axes
    assert twin.get_ylabel() == "kNN accuracy" and ax.get_legend() is None and twin.get_legend() is None
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert "chance: log(2B−1) = 4.84 (B = 64)" in labels and "kNN accuracy (monitor, right axis)" in labels
    chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(np.log(127))
    fig.canvas.draw()  # the legend sits below the axes: no overlap with the curves
    assert legend.get_window_extent().y1 <= ax.get_window_extent().y0
    plt.close(fig)
    fig = loss_curve(*_loss_files(tmp_path, method="byol"))
    assert not any("chance" in t.get_text() for t in fig.legends[0].get_texts())  # log(2B-1) is SimCLR's only
    plt.close(fig)


def _table():
    import pandas as pd

    rows = [
        ("ssl", "SimCLR continued from ImageNet, EfficientNet-Lite0, 32 px", "self-supervised", 0.85, 0.86, 0.6),
        ("imagenet", "ImageNet weights (no training), EfficientNet-Lite0, 112 px", "ImageNet", 0.82, 0.84, 0.55),
        ("random", "random init (no training), EfficientNet-Lite0, 32 px", "floor", 0.40, 0.45, 0.2),
    ]
    return pd.DataFrame(
        [
            {"name": n, "recipe": r, "kind": k, "knn_accuracy": a, "linear_probe_accuracy": b, "cluster_nmi": c}
            for n, r, k, a, b, c in rows
        ]
    )


def test_metrics_chart_panels_labels_chance_and_legend() -> None:
    fig = metrics_chart(_table(), chance=0.1)
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == ["kNN accuracy", "linear probe accuracy", "cluster NMI"]
    assert fig._suptitle.get_text() == "How good is each embedding?"
    labels = [t.get_text() for t in panels[0].get_yticklabels()]
    assert labels[-1].replace("\n", " ") == "SimCLR continued from ImageNet, EfficientNet-Lite0, 32 px"  # best on top
    assert all("_" not in label for label in labels)  # recipe names, not snake_case
    dotted = [[line for line in ax.get_lines() if line.get_linestyle() == ":"] for ax in panels]
    assert [len(d) for d in dotted] == [1, 1, 0]  # chance on the accuracy panels only, never against NMI
    (legend,) = fig.legends
    fig.canvas.draw()
    assert legend.get_window_extent().y1 <= min(ax.get_window_extent().y0 for ax in panels)  # hides no bar
    assert [t.get_text() for t in legend.get_texts()] == ["self-supervised", "ImageNet", "floor"]
    plt.close(fig)


def test_metrics_chart_colours_the_imagenet_pca_concatenation_as_its_own_kind() -> None:
    import pandas as pd
    from matplotlib.colors import to_rgba

    from embedlab.plotting.curves import KIND_COLOURS

    recipe = "ImageNet ⊕ PCA (no training), EfficientNet-Lite0 at 112 px ⊕ PCA of raw pixels (50 dims) at 64 px"
    combined = {"name": "imagenet+pca", "recipe": recipe, "kind": "combination", "knn_accuracy": 0.86}
    table = pd.concat([pd.DataFrame([{**combined, "linear_probe_accuracy": 0.87, "cluster_nmi": 0.6}]), _table()])
    fig = metrics_chart(table, chance=0.1)
    knn = fig.axes[0]
    top = max(knn.patches, key=lambda bar: bar.get_y())  # the best row: the concatenation
    assert top.get_facecolor() == to_rgba(KIND_COLOURS["combination"])
    assert len(set(KIND_COLOURS.values())) == len(KIND_COLOURS)  # every kind its own colour
    assert "⊕" in knn.get_yticklabels()[-1].get_text()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["self-supervised", "ImageNet", "combination", "floor"]
    plt.close(fig)


def test_metrics_chart_draws_the_95_percent_intervals_when_the_table_has_them() -> None:
    table = _table()
    for metric, (low, high) in {
        "knn_accuracy": ("knn_low", "knn_high"),
        "linear_probe_accuracy": ("probe_low", "probe_high"),
    }.items():
        table[low], table[high] = table[metric] - 0.02, table[metric] + 0.03
    fig = metrics_chart(table, chance=0.1)
    knn, probe, nmi = fig.axes
    assert "95% bootstrap interval" in fig._suptitle.get_text()
    whiskers = [c for c in knn.collections if c.__class__.__name__ == "LineCollection"]
    assert len(whiskers) == 1 and len(whiskers[0].get_segments()) == 3
    segment = whiskers[0].get_segments()[-1]  # the top bar: the best row, kNN 0.85 from 0.83 to 0.88
    assert segment[:, 0].tolist() == pytest.approx([0.83, 0.88])
    assert not [c for c in nmi.collections if c.__class__.__name__ == "LineCollection"]  # NMI has no interval
    plt.close(fig)


def test_paired_gap_chart_draws_one_interval_per_row_against_a_zero_line() -> None:
    from matplotlib.colors import to_rgba

    from embedlab.plotting import paired_gap_chart
    from embedlab.plotting.curves import GAP_COLOURS

    base = "ImageNet ⊕ PCA (no training)"
    gaps = [
        {"recipe": "SimCLR, 64 px", "difference": -0.016, "low": -0.028, "high": -0.005, "call": "lower"},
        {"recipe": "ImageNet weights, 112 px", "difference": -0.018, "low": -0.029, "high": -0.007, "call": "lower"},
        {"recipe": "ImageNet weights, 64 px", "difference": 0.004, "low": -0.006, "high": 0.015, "call": "tie"},
    ]
    fig = paired_gap_chart([{**g, "baseline": base} for g in gaps])
    (ax,) = fig.axes
    zero = [line for line in ax.get_lines() if list(line.get_xdata()) == [0.0, 0.0]]
    assert len(zero) == 1  # the zero line
    whiskers = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    assert len(whiskers) == len(gaps) and all(len(w.get_segments()) == 1 for w in whiskers)  # one interval per row
    spans = sorted(tuple(np.round(w.get_segments()[0][:, 0], 3)) for w in whiskers)
    assert spans == sorted((g["low"], g["high"]) for g in gaps)
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "SimCLR, 64 px"  # the first row on top
    tie = next(w for w in whiskers if w.get_segments()[0][0, 0] == pytest.approx(-0.006))
    assert tuple(tie.get_color()[0]) == to_rgba(GAP_COLOURS["tie"])
    assert base in ax.get_xlabel()
    plt.close(fig)
    with pytest.raises(PlottingError, match="no paired gaps"):
        paired_gap_chart([])


def test_loss_curve_draws_the_collapse_monitor_against_one_over_sqrt_d(tmp_path) -> None:
    loss, epochs = _loss_files(tmp_path, method="byol")
    epochs.write_text(
        "epoch,steps,loss,knn_accuracy,output_std,seconds,images_per_second\n0,2,4.5,0.3,0.02,1,10\n"
        "1,1,3.5,0.4,0.001,1,10\n"
    )
    (tmp_path / "config.json").write_text(json.dumps({"method": "byol", "batch_size": 64, "backbone": "resnet18"}))
    fig = loss_curve(loss, epochs)
    top, collapse, twin = fig.axes
    assert collapse.get_ylabel() == "output std" and twin.get_ylabel() == "kNN accuracy"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "std of normalised outputs (collapse monitor)" in labels
    assert "1/sqrt(d) = 0.044 (d = 512)" in labels
    plt.close(fig)


def test_classifier_curve_shows_held_out_accuracy_outside_the_curve() -> None:
    from types import SimpleNamespace

    result = SimpleNamespace(
        history=[{"epoch": e, "loss": 2 / e, "train_accuracy": 0.5 + e / 20} for e in range(1, 6)],
        accuracy=0.71,
        probe_accuracy=0.74,
        chance=0.1,
        mode="frozen",
        test_images=300,
    )
    fig = classifier_curve(result)
    left, right = fig.axes
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels[:2] == ["training accuracy", "held-out accuracy 0.710 (300 images)"]
    assert "linear probe (same split) 0.740" in labels and "chance 0.100" in labels
    fig.canvas.draw()
    assert right.get_legend().get_window_extent().x0 >= right.get_window_extent().x1  # beside the plot, not on it
    plt.close(fig)
    with pytest.raises(PlottingError, match="no training history"):
        classifier_curve(SimpleNamespace(history=[]))


def test_class_names_at_cluster_medians() -> None:
    points = np.array([[0, 0], [1, 0], [2, 0], [10, 10], [11, 10], [12, 10]], np.float32)
    fig = scatter(points, [0, 0, 0, 1, 1, 1], ["Beach", "Forest"])
    texts = {t.get_text(): t.get_position() for t in fig.axes[0].texts}
    assert texts == {"Beach": (1.0, 0.0), "Forest": (11.0, 10.0)}
    plt.close(fig)
    fig = side_by_side({"a": points, "b": points * 2}, [0, 0, 0, 1, 1, 1], ["Beach", "Forest"], annotate=False)
    assert not fig.axes[0].texts
    plt.close(fig)
    crowded = np.array([[0, 0], [0.01, 0], [10, 10], [10.01, 10]], np.float32)  # both medians at the edges
    fig = scatter(crowded, [0, 0, 1, 1], ["A very long class name", "Another long class name"])
    fig.canvas.draw()
    ax = fig.axes[0]
    frame = ax.get_window_extent()
    for text in ax.texts:  # no label cut off by the frame
        box = text.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    plt.close(fig)


def test_save_figure_path_does_not_echo_in_a_notebook(tmp_path) -> None:
    fig, _ = plt.subplots()
    saved = save_figure(fig, tmp_path / "f.png")
    assert saved == tmp_path / "f.png" and saved.is_file() and saved._ipython_display_() is None
    plt.close(fig)


def test_image_grid_captions_do_not_overlap_the_images_above() -> None:
    images = [Image.new("RGB", (28, 28), (i * 10, 0, 0)) for i in range(16)]
    fig = image_grid(images, titles=[f"Class{i}\nscore 0.{i:03d}" for i in range(16)], ncols=8, suptitle="outliers")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    upper, lower = fig.axes[0], fig.axes[8]
    assert lower.title.get_window_extent(renderer).y1 <= upper.get_window_extent(renderer).y0 + 1
    assert fig._suptitle.get_window_extent(renderer).y0 >= upper.title.get_window_extent(renderer).y1 - 1
    plt.close(fig)


def test_interactive_scatter_offline_safe_and_toggleable(tmp_path) -> None:
    files = ["Forest/f1.png", f"Forest/{EVIL}", "Beach/b1.png", "Beach/b 2.png"]
    _write_images(tmp_path / "data", files)
    out = interactive_scatter(
        np.random.default_rng(0).normal(size=(4, 2)),
        files,
        [1, 1, 0, 0],
        ["Beach", "Forest"],
        tmp_path / "data",
        tmp_path / "interactive" / "ssl.html",
        title="SSL",
    )
    text = out.read_text(encoding="utf-8")
    assert EVIL not in text and "<img src=x" not in text  # the raw filename never reaches the page
    assert "cdn.bokeh.org" not in text and "Bokeh.set_log_level" in text  # BokehJS inline: opens offline
    doc = json.loads(
        html.unescape(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1))
    )
    payload = json.dumps(doc)
    assert html.escape(EVIL) in payload  # escaped in the data, so the {safe} tooltip shows it as text
    assert payload.count("data:image/jpeg;base64,") == 4  # one embedded thumbnail per point
    assert '"click_policy": "hide"' in payload
    assert payload.count('"name": "GlyphRenderer"') == 2  # one renderer per class: the legend toggles classes
    assert [p.name for p in out.parent.iterdir()] == ["ssl.html"]
    with pytest.raises(PlottingError, match="3 filenames but 4 points"):
        interactive_scatter(
            np.zeros((4, 2)), files[:3], [0, 0, 1, 1], ["Beach", "Forest"], tmp_path, tmp_path / "x.html"
        )


def test_inline_map_samples_large_sets_and_stays_small(tmp_path: Path) -> None:
    """Past max_points the inline map shows a seeded sample (said in its title) and its output stays a few MB."""
    from PIL import Image

    from embedlab.plotting import show_map

    root = tmp_path / "images"
    names = [f"c{i % 3}/{i}.png" for i in range(300)]
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 40), (i % 255, 80, 160)).save(root / name)
    points = np.random.default_rng(0).normal(size=(300, 2))
    small = show_map(points, names, [i % 3 for i in range(300)], ["a", "b", "c"], root, max_points=50, title="t")
    assert (small.shown, small.total) == (50, 300) and "50 of 300 points" in small._repr_html_()
    whole = show_map(points, names, [i % 3 for i in range(300)], ["a", "b", "c"], root, max_points=None)
    assert whole.shown == 300 and len(whole._repr_html_()) < 5 * 2**20
    assert show_map(points, names, [i % 3 for i in range(300)], None, root, max_points=50).html.count("c1/") > 0


def test_cost_chart_joins_the_quality_for_cost_frontier_and_label_efficiency_chart_draws_each_set(tmp_path) -> None:
    import pandas as pd

    from embedlab.plotting import cost_chart, label_efficiency_chart, quality_frontier, save_figure

    rows = [
        {"name": "ssl", "kind": "self-supervised", "knn_accuracy": 0.83, "knn_low": 0.82, "knn_high": 0.84,
         "images_per_second": 400.0},
        {"name": "imagenet", "kind": "ImageNet", "knn_accuracy": 0.826, "knn_low": 0.81, "knn_high": 0.84,
         "images_per_second": 100.0},
        {"name": "imagenet+pca", "kind": "combination", "knn_accuracy": 0.844, "knn_low": 0.83, "knn_high": 0.86,
         "images_per_second": 90.0},
        {"name": "pca", "kind": "floor", "knn_accuracy": 0.80, "knn_low": 0.79, "knn_high": 0.81,
         "images_per_second": 5000.0},
    ]  # fmt: skip
    assert [r["name"] for r in quality_frontier(rows)] == ["pca", "ssl", "imagenet+pca"]  # imagenet is dominated
    assert save_figure(cost_chart(pd.DataFrame(rows)), tmp_path / "cost.png").is_file()
    point = {"labels_per_class": 1, "knn": 0.5, "knn_low": 0.4, "knn_high": 0.6, "probe": 0.5, "probe_low": 0.4,
             "probe_high": 0.6}  # fmt: skip
    figure = label_efficiency_chart({"a": [point, {**point, "labels_per_class": 10}], "b": [point]}, chance=0.1)
    assert len(figure.axes[0].get_lines()) >= 3 and save_figure(figure, tmp_path / "labels.png").is_file()
