"""Diagrams of the ideas, drawn with matplotlib: the pipeline, SimCLR's two views -> encoder -> head -> loss, and
distillation's frozen teacher -> student.

The notebooks carry them as cell attachments (PNG inside the .ipynb), so they show on GitHub, in Colab and in
Jupyter before anything runs; `data_scripts/make_diagrams.py` redraws them into the notebooks.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import Any

Box = tuple[float, float, str, str]  # x centre, y centre, text, colour

COLOURS = {"data": "#dbe9f6", "model": "#fde2c8", "kept": "#d5efd0", "loss": "#f6d5d5", "frozen": "#e4dcf1"}


def _canvas(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def _boxes(ax: Any, boxes: Sequence[Box], *, size: float = 9.5) -> None:
    """Rounded boxes with centred text."""
    for x, y, text, colour in boxes:
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=size,
            bbox={"boxstyle": "round,pad=0.45", "facecolor": COLOURS.get(colour, colour), "edgecolor": "#555555"},
        )


def _arrows(ax: Any, pairs: Sequence[tuple[tuple[float, float], tuple[float, float]]], style: str = "-|>") -> None:
    for start, end in pairs:
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": style, "color": "#333333", "lw": 1.3})


def pipeline_diagram() -> Any:
    """Notebooks 01-06 as one picture: unlabeled images -> training -> encoder -> embeddings -> their uses."""
    fig, ax = _canvas(11, 3.2)
    _boxes(
        ax,
        [
            (1.0, 1.9, "your images\n(labels set aside)", "data"),
            (3.35, 1.9, "self-supervised\ntraining (02)", "model"),
            (5.6, 1.9, "encoder\n(backbone.pt)", "kept"),
            (7.75, 1.9, "embeddings (03)\none vector\nper image", "data"),
            (10.0, 2.65, "UMAP map (04)", "kept"),
            (10.0, 1.9, "kNN / probe vs\nImageNet (05)", "kept"),
            (10.0, 1.15, "search, outliers,\nduplicates (06)", "kept"),
        ],
    )
    _arrows(ax, [((1.95, 1.9), (2.45, 1.9)), ((4.25, 1.9), (4.85, 1.9)), ((6.35, 1.9), (6.9, 1.9))])
    _arrows(ax, [((8.6, 1.9), (9.0, y)) for y in (2.65, 1.9, 1.15)])
    ax.text(3.35, 0.55, "01: download and check the data", ha="center", fontsize=9, color="#555555")
    ax.text(7.75, 0.55, "labels come back only to grade", ha="center", fontsize=9, color="#555555")
    return fig


def simclr_diagram() -> Any:
    """SimCLR: two augmented views -> encoder f -> embedding h (kept) -> head g -> z -> contrastive loss."""
    fig, ax = _canvas(11, 3.6)
    boxes: list[Box] = [(0.9, 1.8, "one\nimage", "data")]
    for y, view in ((2.75, "view 1"), (0.85, "view 2")):
        boxes += [
            (2.55, y, f"{view}:\ncrop + colour", "data"),
            (4.45, y, "encoder f\n(ResNet, ...)", "model"),
            (6.3, y, "h: embedding\n512-D (kept)", "kept"),
            (8.0, y, "head g\n(MLP)", "model"),
            (9.45, y, "z: 128-D", "data"),
        ]
    _boxes(ax, boxes, size=9)
    _boxes(ax, [(9.45, 1.8, "loss: z1 close to z2,\nfar from other images", "loss")], size=8.5)
    for y in (2.75, 0.85):
        _arrows(ax, [((3.35, y), (3.7, y)), ((5.2, y), (5.5, y)), ((7.1, y), (7.5, y)), ((8.5, y), (8.9, y))])
        _arrows(ax, [((9.45, y - 0.3 if y > 1.8 else y + 0.3), (9.45, 2.2 if y > 1.8 else 1.4))])
    _arrows(ax, [((1.3, 2.0), (1.75, 2.65)), ((1.3, 1.6), (1.75, 0.95))])
    ax.text(4.45, 1.8, "same weights", ha="center", fontsize=8.5, color="#555555")
    ax.text(7.15, 0.1, "after training g is thrown away: h keeps more of the image than z", ha="center", fontsize=9)
    return fig


def distillation_diagram() -> Any:
    """Distillation: a frozen teacher and the student embed the same augmented view; the student's similarities
    to a queue of recent teacher embeddings are pulled towards the teacher's."""
    fig, ax = _canvas(11, 3.3)
    _boxes(
        ax,
        [
            (0.9, 1.65, "one of\nyour images", "data"),
            (2.7, 1.65, "an augmented\nview (crop,\ncolour, mix-up)", "data"),
            (5.0, 2.6, "teacher (frozen)\nImageNet or DINOv2", "frozen"),
            (5.0, 0.7, "student encoder\n(trained, kept)\n+ linear head", "kept"),
            (7.2, 2.6, "teacher\nembedding", "data"),
            (7.2, 0.7, "student\nembedding", "data"),
            (
                9.6,
                1.65,
                "loss: the student's\nsimilarities to a queue\nof teacher embeddings\nmatch the teacher's",
                "loss",
            ),
        ],
        size=9,
    )
    _arrows(ax, [((1.4, 1.65), (1.85, 1.65)), ((3.45, 1.9), (3.95, 2.5)), ((3.45, 1.4), (3.95, 0.8))])
    _arrows(ax, [((6.05, 2.6), (6.6, 2.6)), ((5.85, 0.7), (6.6, 0.7))])
    _arrows(ax, [((7.8, 2.5), (8.35, 2.0)), ((7.8, 0.8), (8.35, 1.3))])
    ax.text(5.0, 1.65, "no labels anywhere", ha="center", fontsize=8.5, color="#555555")
    return fig


DIAGRAMS: dict[str, Callable[[], Any]] = {
    "pipeline": pipeline_diagram,
    "simclr": simclr_diagram,
    "distillation": distillation_diagram,
}


def diagram_png(name: str, *, dpi: int = 80) -> bytes:
    """One diagram as PNG bytes (no timestamp in the file: the same code draws the same bytes)."""
    import matplotlib.pyplot as plt

    if name not in DIAGRAMS:
        raise KeyError(f"unknown diagram {name!r}; choose one of {', '.join(DIAGRAMS)}")
    fig = DIAGRAMS[name]()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def diagram_attachment(name: str) -> dict[str, dict[str, str]]:
    """A notebook cell attachment ({"<name>.png": {"image/png": base64}}) for `![...](attachment:<name>.png)`."""
    return {f"{name}.png": {"image/png": base64.b64encode(diagram_png(name)).decode("ascii")}}
