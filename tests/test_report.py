"""The verdict of notebook 05 (embedlab.course.verdict): computed from the numbers, ties from the intervals,
levers backed by bench_quality's numbers; and its HTML on the run's index page."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from embedlab.course.report import verdict_html
from embedlab.course.verdict import describe_comparison, gap, levers, outcome, starting_point

SSL = "SimCLR continued from ImageNet, EfficientNet-Lite0, 32 px"
BASE = "ImageNet weights (no training), EfficientNet-Lite0, 112 px"
START = "ImageNet weights (no training), EfficientNet-Lite0, 32 px"


def _row(name, recipe, kind, size, knn, probe, spread=0.015, speed=None):
    return {
        "name": name,
        "recipe": recipe,
        "kind": kind,
        "image_size": size,
        "n": 3000,
        "knn_accuracy": knn,
        "knn_low": knn - spread,
        "knn_high": knn + spread,
        "linear_probe_accuracy": probe,
        "probe_low": probe - 2 * spread,
        "probe_high": probe + 2 * spread,
        "cluster_nmi": 0.5,
        "images_per_second": speed,
    }


def _table(ssl=(0.788, 0.782), base=(0.826, 0.829), start=(0.733, 0.683), pca=0.804, paired=None, ssl_size=32):
    rows = [
        _row("ssl", SSL.replace("32 px", f"{ssl_size} px"), "self-supervised", ssl_size, *ssl, speed=250.0),
        _row("imagenet", BASE, "ImageNet", 112, *base, speed=80.0),
        _row("imagenet-32", START, "ImageNet", 32, *start, speed=680.0),
        _row("pca", "PCA of raw pixels (50 dims), 32 px", "floor", 32, pca, pca),
        _row("random", "random init (no training), EfficientNet-Lite0, 32 px", "floor", 32, 0.652, 0.653),
    ]
    table = pd.DataFrame(rows)
    if paired is not None:
        table.attrs["paired"] = paired
    return table


def test_the_demo_numbers_give_a_loss_a_real_gain_over_the_start_and_levers() -> None:
    text = describe_comparison(_table(), n_classes=10)
    assert text.startswith("**On this data, the self-supervised model does NOT beat the strongest baseline.**")
    assert f"- **Best embedding:** “{BASE}”: kNN 0.826 (0.811–0.841)" in text
    assert f"against its own starting point at the same 32 px, “{START}”: kNN +0.055" in text
    assert "a real gain." in text and "lower beyond the noise" in text
    assert "- **What would change the outcome:**" in text and "train at a larger image size" in text
    assert "method='distillation'" in text
    assert "chance is 0.100 (10 classes)" in text and f"- **Use:** embed this data with “{BASE}”." in text
    assert "250 images/s at 32 px, the strongest baseline 80 images/s at 112 px" in text


def test_a_small_gap_inside_the_noise_is_a_tie_and_says_what_the_smaller_size_saves() -> None:
    # the benchmark's distillation row: 0.825 at 64 px against 0.826 at 112 px is a tie, not a loss
    paired = [
        {"a": "ssl", "b": "imagenet", "metric": "knn_accuracy", "difference": -0.001, "low": -0.012, "high": 0.010},
        {"a": "ssl", "b": "imagenet", "metric": "linear_probe_accuracy", "difference": 0.0, "low": -0.02, "high": 0.02},
    ]
    text = describe_comparison(_table(ssl=(0.825, 0.829), paired=paired, ssl_size=64))
    assert "equally good within the noise" in text and "a tie: every interval contains 0" in text
    assert "kNN −0.001 (−0.012 to +0.010)" in text
    assert "as good or better at 3.1× the embedding speed" in text
    assert "paired bootstrap over the 3,000 images" in text
    assert "as good within the noise and cheaper to embed" in text  # a tie at a cheaper size: use the trained one


def test_one_point_on_3000_images_is_noise_but_a_paired_interval_can_make_it_real() -> None:
    table = _table(ssl=(0.836, 0.839))  # +1 point with unpaired intervals of +-1.5 points: a tie
    assert outcome({"knn_accuracy": "tie", "linear_probe_accuracy": "tie"}) == "tie"
    assert "equally good within the noise" in describe_comparison(table)
    paired = [
        {"a": "ssl", "b": "imagenet", "metric": m, "difference": 0.01, "low": 0.004, "high": 0.016}
        for m in ("knn_accuracy", "linear_probe_accuracy")
    ]
    win = describe_comparison(_table(ssl=(0.836, 0.839), paired=paired))
    assert win.startswith("**On this data, the self-supervised model beats the strongest baseline.**")
    assert "What would change the outcome" not in win


def test_without_intervals_the_sizes_give_a_binomial_band_and_without_sizes_one_point() -> None:
    rows = _table()[["name", "recipe", "kind", "image_size", "n", "knn_accuracy", "linear_probe_accuracy"]]
    a, b = rows.iloc[0], rows.iloc[1]
    diff, low, high = gap(rows, a, b, "knn_accuracy")
    assert diff == pytest.approx(-0.038) and high - low == pytest.approx(2 * 1.96 * 0.0102, rel=0.05)
    plain = rows[["name", "knn_accuracy", "linear_probe_accuracy"]]
    assert gap(plain, plain.iloc[0], plain.iloc[1], "knn_accuracy")[1:] == (None, None)
    text = describe_comparison(plain)
    assert "Best embedding:** “imagenet”" in text and "not measured" in text


def test_the_starting_point_is_the_same_size_and_the_same_start() -> None:
    table = _table()
    from embedlab.course.verdict import rows_by_kind

    groups = rows_by_kind(table)
    assert starting_point(groups["self-supervised"][0], groups)["name"] == "imagenet-32"
    scratch = {"recipe": "SimCLR from random init, ResNet-18, 32 px", "image_size": 32}
    assert starting_point(scratch, groups)["name"] == "random"
    assert starting_point({**scratch, "image_size": 64}, groups) is None


def test_levers_cite_the_benchmark_numbers_when_given() -> None:
    quality = {
        "images": 3000,
        "rows": [
            {
                "kind": "recipe",
                "knn": 0.786,
                "train_options": {"method": "simclr", "image_size": 32},
                "curve": [{"step": 0, "knn": 0.73}, {"step": 150, "knn": 0.78}, {"step": 300, "knn": 0.786}],
            },
            {"kind": "recipe", "knn": 0.804, "train_options": {"method": "simclr", "image_size": 64}},
        ],
        "verdict": {
            "best_recipe": "Distillation of X into Y, 64 px",
            "best_recipe_knn": 0.825,
            "strongest_baseline": "ImageNet at 112 px",
            "strongest_baseline_knn": 0.826,
        },
    }
    ssl = {"recipe": SSL, "image_size": 32}
    found = levers(ssl, {"image_size": 112}, quality)
    assert "32 px kNN 0.786, 64 px kNN 0.804" in found[0]
    assert "kNN 0.780 after 150 steps, 0.786 after 300" in found[1]
    assert "reached kNN 0.825 against 0.826" in found[2]
    assert not any(
        "distil" in lever
        for lever in levers({"recipe": "Distillation of ...", "image_size": 64}, {"image_size": 64}, {})
    )


def test_needs_a_trained_row_and_a_baseline() -> None:
    with pytest.raises(ValueError, match="needs a self-supervised row and a baseline row \\(ImageNet, teacher or"):
        describe_comparison(_table().iloc[[0, 3]])


def test_verdict_html_escapes_and_lists() -> None:
    page = verdict_html("**Head** <b>\n\n- one **x**\n  - two\n- three")
    assert (
        page
        == "<p><strong>Head</strong> &lt;b&gt;</p><ul><li>one <strong>x</strong></li><li>two</li><li>three</li></ul>"
    )


def test_a_teacher_row_stronger_than_imagenet_is_the_baseline_to_beat() -> None:
    """The distillation teacher (DINOv2 in the `full` preset) is an off-the-shelf baseline like the ImageNet rows."""
    table = _table(ssl=(0.825, 0.829))
    teacher = _row("teacher", "the distillation teacher (no training), dinov2_vitb14, 224 px", "teacher", 224, 0.9, 0.9)
    table = pd.concat([table, pd.DataFrame([teacher])], ignore_index=True)
    text = describe_comparison(table)
    assert "Against the strongest baseline**, “the distillation teacher" in text


COMBINED = "ImageNet ⊕ PCA (no training), EfficientNet-Lite0 at 112 px ⊕ PCA of raw pixels (50 dims) at 32 px"


def test_the_imagenet_pca_concatenation_can_be_the_strongest_baseline(tmp_path) -> None:
    """The demo's numbers: ImageNet ⊕ PCA (0.843) tops the ImageNet network (0.826); the verdict names it as the
    baseline to beat, still reports the trained model against the strongest single model, and metrics.json agrees."""
    from embedlab.course.report import save_metrics

    paired = [
        {"a": "ssl", "b": b, "metric": m, "difference": d, "low": d - 0.012, "high": d + 0.012}
        for b, d in (("imagenet", -0.001), ("imagenet+pca", -0.018))
        for m in ("knn_accuracy", "linear_probe_accuracy")
    ]
    table = _table(ssl=(0.825, 0.829), paired=paired, ssl_size=64)
    combined = _row("imagenet+pca", COMBINED, "combination", 112, 0.843, 0.847)
    table = pd.concat([table, pd.DataFrame([combined])], ignore_index=True)
    table.attrs["paired"] = paired
    text = describe_comparison(table, n_classes=10)
    assert text.startswith("**On this data, the self-supervised model does NOT beat the strongest baseline.**")
    assert f"- **Best embedding:** “{COMBINED}”" in text
    assert f"- **Against the strongest baseline**, “{COMBINED}” (kNN 0.843" in text
    assert "scores kNN −0.018 (−0.030 to −0.006)" in text  # the paired interval of compare, not the rows'
    assert f"- **Against the strongest single model**, “{BASE}” (kNN 0.826" in text
    assert "kNN −0.001 (−0.013 to +0.011)" in text and "a tie: every interval contains 0" in text
    assert "distil the ImageNet network into the model" in text  # a concatenation cannot be a teacher
    floors = next(line for line in text.splitlines() if line.startswith("- **Floors:**"))
    assert "⊕" not in floors  # a baseline, not a floor
    metrics = json.loads(save_metrics(tmp_path / "metrics.json", table, text).read_text(encoding="utf-8"))
    assert metrics["strongest_baseline"] == "imagenet+pca" and metrics["best"] == "imagenet+pca"
    plain = describe_comparison(_table(ssl=(0.825, 0.829), ssl_size=64))
    assert "strongest single model" not in plain  # only said when the baseline to beat is a combination


def test_the_verdict_says_what_training_bought_in_quality_cost_and_labels_in_one_sentence() -> None:
    point = {"labels_per_class": 5, "draws": 5, "knn": 0.70, "knn_low": 0.68, "knn_high": 0.72}
    labels = {SSL: [point], BASE: [{**point, "knn": 0.60, "knn_low": 0.58, "knn_high": 0.62}]}
    text = describe_comparison(_table(ssl=(0.827, 0.829)), labels=labels)
    assert "- **With 5 labels per class:** kNN 0.700 (0.680–0.720 over 5 draws) against 0.600" in text
    summary = text.splitlines()[-1]
    assert summary.startswith("- **In one sentence:** training bought embeddings as good as the strongest baseline")
    assert "3.1× the embedding speed" in summary and "more accuracy from few labels" in summary
    plain = describe_comparison(_table(ssl=(0.827, 0.829)))
    assert "labels per class" not in plain and "few labels" not in plain.splitlines()[-1]
