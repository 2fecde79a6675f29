"""Training figures: the self-supervised loss curve (with chance level and kNN monitor), the classifier's curves,
the bar chart comparing embedding sets and each set's paired gap to the strongest baseline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.plotting.common import PlottingError, wrap_at_commas


def contrastive_chance_level(batch_size: int) -> float:
    """SimCLR's loss when the model guesses: the partner is one of 2B-1 candidates, so log(2B-1)."""
    return float(np.log(2 * batch_size - 1))


def _plot_steps(ax: Any, loss: Any) -> np.ndarray:
    """The loss per step (faint when smoothed too) and its moving average; returns the step numbers (from 1)."""
    x = np.arange(1, len(loss) + 1)
    window = max(1, len(loss) // 20)
    smoothed = window > 1
    faint = {"alpha": 0.25, "linewidth": 1} if smoothed else {"alpha": 1.0, "linewidth": 2}
    ax.plot(x, loss, color="tab:blue", label="loss per step", **faint)
    if smoothed:
        label = f"loss, smoothed over {window} steps"
        ax.plot(x, loss.rolling(window, min_periods=1).mean(), color="tab:blue", linewidth=2, label=label)
    return x


def _chance_line(ax: Any, loss: Any, batch_size: int) -> None:
    """SimCLR's chance level log(2B-1) as a dashed line; the y axis starts at 0 so the gap to it shows."""
    chance = contrastive_chance_level(int(batch_size))
    label = f"chance: log(2B−1) = {chance:.2f} (B = {batch_size})"
    ax.axhline(chance, color="gray", linestyle="--", linewidth=1, label=label)
    ax.set_ylim(0, max(chance, float(loss.max())) * 1.05)


def _read_epochs(epochs_csv: str | os.PathLike[str] | None) -> Any:
    """epochs.csv as a DataFrame, or None when there is none."""
    import pandas as pd

    if epochs_csv is None or not Path(epochs_csv).exists():
        return None
    epochs = pd.read_csv(epochs_csv)
    return None if epochs.empty else epochs


def _has(epochs: Any, column: str) -> bool:
    return epochs is not None and column in epochs and bool(epochs[column].notna().any())


def _epoch_ends(epochs: Any, x: np.ndarray) -> Any:
    """The step at which each epoch ended (from its `steps` column, else spread evenly)."""
    return epochs["steps"].cumsum() if "steps" in epochs else x[-1] * (epochs.index + 1) / len(epochs)


def _knn_twin(ax: Any, epochs: Any, x: np.ndarray) -> tuple[list[Any], list[str]]:
    """The kNN monitor per epoch on a right-hand axis, when the epoch log has it; returns its legend entries."""
    if not _has(epochs, "knn_accuracy"):
        return [], []
    twin = ax.twinx()
    twin.plot(
        _epoch_ends(epochs, x),
        epochs["knn_accuracy"],
        "o-",
        color="tab:green",
        label="kNN accuracy (monitor, right axis)",
    )
    twin.set_ylabel("kNN accuracy", color="tab:green")
    twin.set_ylim(0, 1)
    return twin.get_legend_handles_labels()


def _output_dim(config: dict[str, Any]) -> int | None:
    """The backbone's embedding size d from config.json (None when unknown or cut down by `layers`)."""
    from embedlab.registry import BACKBONES

    spec = BACKBONES.get(str(config.get("backbone")))
    return spec.embedding_dim if spec and not config.get("layers") else config.get("embedding_dim")


def _collapse_panel(ax: Any, epochs: Any, x: np.ndarray, dim: int | None) -> None:
    """The collapse monitor: std of the L2-normalised outputs across the monitor images, per epoch, against
    1/sqrt(d) (outputs spread over the sphere) and 0 (every image the same vector: collapse)."""
    ends = _epoch_ends(epochs, x)
    ax.plot(ends, epochs["output_std"], "s-", color="tab:purple", label="std of normalised outputs (collapse monitor)")
    top = float(epochs["output_std"].max())
    if dim:
        ax.axhline(
            1 / np.sqrt(dim),
            color="tab:purple",
            linestyle="--",
            linewidth=1,
            label=f"1/sqrt(d) = {1 / np.sqrt(dim):.3f} (d = {dim})",
        )
        top = max(top, 1 / np.sqrt(dim))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylim(-0.05 * top, top * 1.25)
    ax.set_ylabel("output std")
    ax.set_xlabel("training step")


def loss_curve(
    loss_csv: str | os.PathLike[str],
    epochs_csv: str | os.PathLike[str] | None = None,
    *,
    batch_size: int | None = None,
    method: str | None = None,
) -> Any:
    """Training loss per step (raw and smoothed), SimCLR's chance level log(2B-1) and, when logged, the kNN monitor
    and (in a panel below) the collapse monitor: the std of the normalised outputs against 1/sqrt(d).

    batch_size and method default to the run's config.json beside the loss log; one legend below the axes.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    from embedlab.rundir import RunDir

    steps = pd.read_csv(loss_csv)
    if steps.empty:
        raise PlottingError(f"{loss_csv} has no rows: training logged no steps")
    config = RunDir.of(loss_csv).read_config()
    batch_size = batch_size or config.get("global_batch_size") or config.get("batch_size")
    method = method or config.get("method")
    epochs = _read_epochs(epochs_csv)
    collapse = _has(epochs, "output_std")
    shape = {"nrows": 2, "sharex": True, "height_ratios": [3, 1.4]} if collapse else {}
    fig, axes = plt.subplots(figsize=(7.5, 6.0 if collapse else 4.2), **shape)
    ax = axes[0] if collapse else axes
    x = _plot_steps(ax, steps["loss"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if batch_size and method == "simclr":
        _chance_line(ax, steps["loss"], int(batch_size))
    ax.set_xlabel("" if collapse else "training step")
    ax.set_ylabel("contrastive loss" if method in ("simclr", "moco", None) else "training loss")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = _knn_twin(ax, epochs, x)
    if collapse:
        _collapse_panel(axes[1], epochs, x, _output_dim(config))
        extra = axes[1].get_legend_handles_labels()
        more_handles, more_labels = more_handles + extra[0], more_labels + extra[1]
    ax.set_title("self-supervised training")
    fig.legend(
        handles + more_handles,
        labels + more_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        frameon=False,
        fontsize="small",
    )
    fig.tight_layout()
    return fig


METRIC_LABELS = {
    "knn_accuracy": "kNN accuracy",
    "linear_probe_accuracy": "linear probe accuracy",
    "cluster_nmi": "cluster NMI",
}
KIND_COLOURS = {
    "self-supervised": "tab:orange",
    "ImageNet": "tab:blue",
    "teacher": "tab:purple",
    "combination": "tab:cyan",  # ImageNet ⊕ PCA: an off-the-shelf baseline built without training
    "floor": "tab:gray",
}


INTERVAL_COLUMNS = {"knn_accuracy": ("knn_low", "knn_high"), "linear_probe_accuracy": ("probe_low", "probe_high")}


def _whiskers(ax: Any, rows: list[dict[str, Any]], metric: str, positions: Any, values: list[float]) -> list[float]:
    """Draw each bar's 95% interval when the rows have one; returns where each bar's label may start."""
    low_key, high_key = INTERVAL_COLUMNS.get(metric, ("", ""))
    lows = [r.get(low_key) for r in rows]
    highs = [r.get(high_key) for r in rows]
    if any(v is None or v != v for v in lows + highs):  # missing or NaN: no whiskers
        return values
    errors = [[v - float(lo) for v, lo in zip(values, lows)], [float(hi) - v for v, hi in zip(values, highs)]]
    ax.errorbar(values, positions, xerr=errors, fmt="none", ecolor="black", elinewidth=1, capsize=2)
    return [float(hi) for hi in highs]


def metrics_chart(
    table: Any, *, chance: float | None = None, title: str = "How good is each embedding?", label_width: int = 34
) -> Any:
    """One panel per metric (kNN, linear probe, NMI), one bar per embedding set named by its recipe, best on top.

    Bars are coloured by kind (self-supervised / ImageNet / teacher / combination such as ImageNet ⊕ PCA / floor);
    black whiskers show the 95% bootstrap interval over the images when the table has one (`compare`'s
    knn_low..knn_high, probe_low..probe_high); `chance` (1 / classes) is drawn on the two accuracy panels only (NMI's
    chance level is 0).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = table.to_dict("records")[::-1]  # barh draws bottom-up: the best row ends on top
    names = [wrap_at_commas(str(r.get("recipe") or r["name"]), label_width) for r in rows]
    colours = [KIND_COLOURS.get(str(r.get("kind")), "tab:purple") for r in rows]
    height = 0.9 + 0.42 * len(rows) * max(n.count("\n") + 1 for n in names)
    fig, axes = plt.subplots(1, len(METRIC_LABELS), figsize=(12, height), sharey=True)
    positions = np.arange(len(rows))
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items()):
        values = [float(r[metric]) for r in rows]
        ax.barh(positions, values, color=colours, height=0.7)
        ends = _whiskers(ax, rows, metric, positions, values)
        for y, value, end in zip(positions, values, ends):
            ax.text(end + 0.01, y, f"{value:.3f}", va="center", fontsize=8)
        if chance is not None and metric != "cluster_nmi":
            ax.axvline(chance, color="black", linestyle=":", linewidth=1)
            ax.text(chance, len(rows) - 0.45, " chance", fontsize=7, va="bottom")
        ax.set_xlim(0, 1.12)
        ax.set_title(label, fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(positions, names, fontsize=8)
    kinds = [k for k in KIND_COLOURS if any(r.get("kind") == k for r in rows)]
    if kinds:
        fig.legend(
            [Patch(color=KIND_COLOURS[k]) for k in kinds],
            kinds,
            loc="upper center",
            ncol=len(kinds),
            bbox_to_anchor=(0.5, 0.0),
            frameon=False,
            fontsize="small",
        )
    whiskers = any(r.get("knn_low") is not None for r in rows)
    fig.suptitle(title + ("\n(black whiskers: 95% bootstrap interval over the images)" if whiskers else ""))
    fig.tight_layout()
    return fig


def classifier_curve(result: Any) -> Any:
    """Loss and training accuracy per epoch of `train_classifier`, with the held-out accuracy, probe and chance."""
    import matplotlib.pyplot as plt

    history = list(getattr(result, "history", []) or [])
    if not history:
        raise PlottingError("the classifier result has no training history")
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(epochs, [h["loss"] for h in history], color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy loss")
    left.set_title("training loss")
    right.plot(epochs, [h["train_accuracy"] for h in history], color="tab:blue", label="training accuracy")
    right.axhline(
        result.accuracy,
        color="tab:red",
        linestyle="--",
        label=f"held-out accuracy {result.accuracy:.3f} ({result.test_images} images)",
    )
    if getattr(result, "probe_accuracy", None) is not None:
        right.axhline(
            result.probe_accuracy,
            color="tab:green",
            linestyle="-.",
            label=f"linear probe (same split) {result.probe_accuracy:.3f}",
        )
    right.axhline(result.chance, color="gray", linestyle=":", label=f"chance {result.chance:.3f}")
    right.set_ylim(0, 1.02)
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_title(f"{result.mode} classifier")
    right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def quality_frontier(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on both kNN accuracy and embedding speed, fastest first: the best quality each
    embedding cost buys."""
    frontier: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: -float(r["images_per_second"])):
        if not frontier or float(row["knn_accuracy"]) > float(frontier[-1]["knn_accuracy"]):
            frontier.append(row)
    return frontier


def cost_chart(table: Any, *, title: str = "Quality against embedding cost") -> Any:
    """Each row's kNN accuracy (95% whiskers) against its embedding speed (images/s, log axis), coloured by kind, with
    the quality-for-cost frontier joined: is a better embedding worth its slower embedding?"""
    import matplotlib.pyplot as plt

    rows = [r for r in table.to_dict("records") if r.get("images_per_second")]
    if not rows:
        raise PlottingError("no row recorded its embedding speed (images_per_second); embed the sets in notebook 03")
    fig, ax = plt.subplots(figsize=(9, 5))
    for r in rows:
        speed, knn = float(r["images_per_second"]), float(r["knn_accuracy"])
        low, high = float(r.get("knn_low", knn)), float(r.get("knn_high", knn))
        colour = KIND_COLOURS.get(str(r.get("kind")), "tab:purple")
        ax.errorbar(speed, knn, yerr=[[knn - low], [high - knn]], fmt="o", color=colour, capsize=3)
        ax.annotate(str(r["name"]), (speed, knn), textcoords="offset points", xytext=(6, 4), fontsize=8)
    best = quality_frontier(rows)
    ax.plot([float(r["images_per_second"]) for r in best], [float(r["knn_accuracy"]) for r in best], "--",
            color="grey", linewidth=1, label="best quality for its cost (frontier)")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="embedding speed, images/s (log scale; faster to the right)", ylabel="kNN accuracy", title=title)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


GAP_COLOURS = {"higher": "tab:green", "tie": "tab:gray", "lower": "tab:red"}


def paired_gap_chart(gaps: Any, *, label_width: int = 40) -> Any:
    """Each row's paired gap to one baseline (dicts with recipe, difference, low, high, call and baseline, as the
    course's `paired_gaps` gives them), its 95% interval as whiskers, and a zero line: an interval across the line
    is a tie."""
    import matplotlib.pyplot as plt

    rows = list(gaps)[::-1]  # barh order: the first row ends on top
    if not rows:
        raise PlottingError("no paired gaps to draw (the table has no baseline row)")
    names = [wrap_at_commas(str(r["recipe"]), label_width) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.42 * len(rows) * max(n.count("\n") + 1 for n in names)))
    for y, r in enumerate(rows):
        diff = float(r["difference"])
        low, high = (diff, diff) if r.get("low") is None else (float(r["low"]), float(r["high"]))
        colour = GAP_COLOURS.get(str(r.get("call")), "tab:purple")
        ax.errorbar(diff, y, xerr=[[diff - low], [high - diff]], fmt="o", color=colour, capsize=3)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_yticks(np.arange(len(rows)), names, fontsize=8)
    ax.set(xlabel=f"gap to {wrap_at_commas(str(rows[0]['baseline']), 80)} (95% paired interval)")
    ax.set_title("Each row minus the strongest baseline: an interval across 0 is a tie", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def label_efficiency_chart(curves: Any, *, chance: float | None = None) -> Any:
    """kNN and linear-probe accuracy against the labels per class they were given (evaluation.label_efficiency),
    one line per embedding set, whiskers over the label draws: what each embedding makes of a few labels."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (metric, label) in zip(axes, (("knn", "kNN"), ("probe", "linear probe"))):
        for name, points in curves.items():
            x = [p["labels_per_class"] for p in points]
            y = np.array([p[metric] for p in points])
            spread = [y - [p[f"{metric}_low"] for p in points], [p[f"{metric}_high"] for p in points] - y]
            ax.errorbar(x, y, yerr=spread, marker="o", capsize=3, label=wrap_at_commas(str(name), 40))
        if chance is not None:
            ax.axhline(chance, color="black", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set(xlabel="labelled images per class (log scale)", title=f"{label} with few labels")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("accuracy on the held-out images")
    axes[1].legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig
