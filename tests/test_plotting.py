"""Tests for embedlab.plotting: stable distinct colours, legends outside, atomic saves, safe interactive HTML."""

from __future__ import annotations

import html
import json
import random
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from embedlab.plotting import (  # noqa: E402
    PlottingError, augmented_pairs, class_palette, image_grid, interactive_scatter, loss_curve,
    nearest_neighbor_grid, samples_per_class, save_figure, scatter, side_by_side,
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
        self.filenames = [f"{self.classes[l]}/{i}.png" for i, l in enumerate(self.labels)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return Image.new("RGB", (20, 20), (i * 20, 100, 50)), self.labels[i], self.filenames[i]


def test_image_grids() -> None:
    normalised = torch.randn(3, 16, 16)  # an ImageNet-normalised tensor is shown un-normalised, clipped
    fig = image_grid([Image.new("RGB", (10, 10)), normalised, np.zeros((8, 8), np.uint8)], titles=["a", "b", "c"], ncols=2)
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
    training = pytest.importorskip("embedlab.training")
    fig = augmented_pairs(FakeFolder(), training.ssl_transform("grayscale", 16), n=2)
    assert sum(ax.get_title() == "view 2" for ax in fig.axes) == 2
    plt.close(fig)


def _write_images(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 10, 10)).save(path)


def test_nearest_neighbor_grid_and_loss_curve(tmp_path) -> None:
    files = [f"a/{i}.png" for i in range(3)] + [f"b/{i}.png" for i in range(3)]
    _write_images(tmp_path, files)
    vectors = np.array([[1, 0], [1, 0.1], [1, 0.2], [0, 1], [0.1, 1], [0.2, 1]], np.float32)
    fig = nearest_neighbor_grid(vectors, files, tmp_path, queries=[0, 3], k=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "query: a" and titles[1].startswith("a ") and titles[3] == "query: b" and titles[4].startswith("b ")
    plt.close(fig)
    (tmp_path / "loss.csv").write_text("epoch,step,loss,lr,images_per_second\n0,0,5.0,0.1,10\n0,1,4.0,0.1,10\n1,2,3.5,0.1,10\n")
    (tmp_path / "epochs.csv").write_text("epoch,steps,loss,knn_accuracy,seconds,images_per_second\n0,2,4.5,0.3,1,10\n1,1,3.5,0.4,1,10\n")
    fig = loss_curve(tmp_path / "loss.csv", tmp_path / "epochs.csv")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "kNN accuracy"
    plt.close(fig)


def test_interactive_scatter_offline_safe_and_toggleable(tmp_path) -> None:
    files = ["Forest/f1.png", f"Forest/{EVIL}", "Beach/b1.png", "Beach/b 2.png"]
    _write_images(tmp_path / "data", files)
    out = interactive_scatter(np.random.default_rng(0).normal(size=(4, 2)), files, [1, 1, 0, 0], ["Beach", "Forest"],
                              tmp_path / "data", tmp_path / "interactive" / "ssl.html", title="SSL")
    text = out.read_text(encoding="utf-8")
    assert EVIL not in text and "<img src=x" not in text  # the raw filename never reaches the page
    assert "cdn.bokeh.org" not in text and "Bokeh.set_log_level" in text  # BokehJS inline: opens offline
    doc = json.loads(html.unescape(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1)))
    payload = json.dumps(doc)
    assert html.escape(EVIL) in payload  # escaped in the data, so the {safe} tooltip shows it as text
    assert payload.count("data:image/jpeg;base64,") == 4  # one embedded thumbnail per point
    assert '"click_policy": "hide"' in payload
    assert payload.count('"name": "GlyphRenderer"') == 2  # one renderer per class: the legend toggles classes
    assert [p.name for p in out.parent.iterdir()] == ["ssl.html"]
    with pytest.raises(PlottingError, match="3 filenames but 4 points"):
        interactive_scatter(np.zeros((4, 2)), files[:3], [0, 0, 1, 1], ["Beach", "Forest"], tmp_path, tmp_path / "x.html")
