"""Notebook 05's verdict: a short bulleted block computed from the comparison table, never written in advance.

It names the best embedding; compares the trained model with its own starting point at the same input size (what
training bought) and with the strongest baseline (the best ImageNet, teacher or ImageNet ⊕ PCA row); calls a gap
real only when its 95% interval excludes 0 (the paired bootstrap of `comparison.compare`, else the rows' own
intervals); says what the embedding costs; and lists what would change the outcome, each lever with the number
`benchmarks/bench_quality.py` measured when the caller passes its results (`quality=`): the verdict reads no file,
so a checkout and an installed wheel say the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

METRICS = {
    "knn_accuracy": ("kNN", "knn_low", "knn_high"),
    "linear_probe_accuracy": ("linear probe", "probe_low", "probe_high"),
}
FALLBACK_TIE = 0.01  # only for tables without intervals or sizes (hand-made ones): a fixed 1-point band


# ------------------------------------------------------------------------------------------------ the rows
def rows_by_kind(table: Any) -> dict[str, list[dict[str, Any]]]:
    """Table rows grouped by kind (self-supervised / ImageNet / teacher / combination / floor), each group best kNN
    first, plus "baselines": every off-the-shelf row (ImageNet, teacher, ImageNet ⊕ PCA) the trained model must beat."""
    from embedlab.course.comparison import BASELINE_KINDS, KINDS, recipe_kind

    groups: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for row in table.to_dict("records"):
        row.setdefault("recipe", row["name"])
        kind = row.get("kind") or recipe_kind({}, str(row["name"]))
        groups.setdefault(kind, []).append(row)
    groups["baselines"] = [r for kind in BASELINE_KINDS for r in groups.get(kind, [])]
    for rows in groups.values():
        rows.sort(key=lambda r: (r["knn_accuracy"], r["linear_probe_accuracy"]), reverse=True)
    return groups


def _number(value: Any) -> float | None:
    """A finite float, or None for a missing / NaN cell."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _quoted(row: Mapping[str, Any]) -> str:
    """A row's recipe in quotes: recipe names contain commas, so they need marking inside a sentence."""
    return f"“{row['recipe']}”"


def _signed(value: float) -> str:
    return f"{'+' if value >= 0 else '−'}{abs(value):.3f}"


def _with_interval(row: Mapping[str, Any], metric: str) -> str:
    """'0.826 (0.812–0.839)', or the bare value when the row has no interval."""
    label, low_key, high_key = METRICS[metric]
    low, high = _number(row.get(low_key)), _number(row.get(high_key))
    span = f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return f"{label} {row[metric]:.3f}{span}"


def _scores(row: Mapping[str, Any]) -> str:
    return ", ".join(_with_interval(row, m) for m in METRICS)


# ------------------------------------------------------------------------------------------------ gaps
def _test_images(row: Mapping[str, Any], metric: str, table: Any) -> float | None:
    """How many images scored the metric: all of them for leave-one-out kNN, the held-out share for the probe."""
    n = _number(row.get("n"))
    if n is None:
        return None
    share = (getattr(table, "attrs", {}).get("evaluation") or {}).get("probe_test_fraction", 0.3)
    return n if metric == "knn_accuracy" else max(1.0, round(n * share))


def gap(
    table: Any, a: Mapping[str, Any], b: Mapping[str, Any], metric: str
) -> tuple[float, float | None, float | None]:
    """(difference, low, high) of a metric, row a minus row b: the paired bootstrap interval from `compare` when
    present, else one from the rows' own intervals (or their sizes, binomially); low/high None when neither."""
    diff = float(a[metric]) - float(b[metric])
    for pair in getattr(table, "attrs", {}).get("paired") or []:
        if (pair["a"], pair["b"], pair["metric"]) == (a["name"], b["name"], metric):
            return diff, float(pair["low"]), float(pair["high"])
        if (pair["a"], pair["b"], pair["metric"]) == (b["name"], a["name"], metric):
            return diff, -float(pair["high"]), -float(pair["low"])
    _, low_key, high_key = METRICS[metric]
    halves = [(_number(r.get(high_key)), _number(r.get(low_key))) for r in (a, b)]
    if all(h is not None and lo is not None for h, lo in halves):
        half = math.hypot(*((h - lo) / 2 for h, lo in halves))  # type: ignore[operator]
        return diff, diff - half, diff + half
    sizes = [_test_images(r, metric, table) for r in (a, b)]
    if all(sizes):
        p = [float(r[metric]) for r in (a, b)]
        half = 1.96 * math.sqrt(sum(q * (1 - q) / n for q, n in zip(p, sizes)))  # type: ignore[operator]
        return diff, diff - half, diff + half
    return diff, None, None


def _call(diff: float, low: float | None, high: float | None) -> str:
    """'higher', 'lower' or 'tie' (the interval contains 0; without one, within a fixed 1-point band)."""
    if low is None or high is None:
        return "tie" if abs(diff) < FALLBACK_TIE else "higher" if diff > 0 else "lower"
    return "higher" if low > 0 else "lower" if high < 0 else "tie"


def _gaps_text(table: Any, a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """'kNN +0.055 (+0.041 to +0.069), linear probe ...' and the call per metric."""
    parts, calls = [], {}
    for metric, (label, _, _) in METRICS.items():
        diff, low, high = gap(table, a, b, metric)
        calls[metric] = _call(diff, low, high)
        span = f" ({_signed(low)} to {_signed(high)})" if low is not None and high is not None else ""
        parts.append(f"{label} {_signed(diff)}{span}")
    return ", ".join(parts), calls


def paired_gaps(table: Any, metric: str = "knn_accuracy") -> list[dict[str, Any]]:
    """Every row's gap to the strongest baseline (row minus baseline, `metric`) with its paired 95% interval and its
    call (higher / lower / tie): what notebook 05's gap figure draws. Empty without a baseline row."""
    baselines = rows_by_kind(table)["baselines"]
    if not baselines:
        return []
    base, gaps = baselines[0], []
    for row in table.to_dict("records"):
        if row["name"] != base["name"]:
            diff, low, high = gap(table, row, base, metric)
            recipe = str(row.get("recipe") or row["name"])
            call = _call(diff, low, high)
            gaps.append({"name": row["name"], "recipe": recipe, "baseline": str(base.get("recipe") or base["name"]),
                         "metric": metric, "difference": diff, "low": low, "high": high, "call": call})  # fmt: skip
    return gaps


def gaps_sentence(gaps: Sequence[Mapping[str, Any]]) -> str:
    """One sentence from `paired_gaps`: which rows score above, below or tie with the strongest baseline (a tie: the
    interval contains 0)."""
    if not gaps:
        return "No baseline row to measure the gaps against."
    label = METRICS[gaps[0]["metric"]][0]
    groups = {call: [g["name"] for g in gaps if g["call"] == call] for call in ("higher", "tie", "lower")}
    words = {"higher": "above it beyond the noise:", "tie": "a tie (interval contains 0):", "lower": "below:"}
    said = [f"{words[call]} {', '.join(names) or 'none'}" for call, names in groups.items()]
    return f"{label} against the strongest baseline, “{gaps[0]['baseline']}”: " + "; ".join(said) + "."


def outcome(calls: Mapping[str, str]) -> str:
    """'wins', 'loses', 'tie' or 'mixed' from the per-metric calls."""
    values = set(calls.values())
    if values == {"higher"} or values == {"higher", "tie"} and calls["knn_accuracy"] == "higher":
        return "wins"
    if values == {"lower"} or values == {"lower", "tie"} and calls["knn_accuracy"] == "lower":
        return "loses"
    return "tie" if values == {"tie"} else "mixed"


CALL_WORDS = {
    "wins": "higher beyond the noise",
    "loses": "lower beyond the noise",
    "tie": "a tie: every interval contains 0",
    "mixed": "mixed: one metric higher or lower, the other within the noise or opposite",
}
HEADLINES = {
    "wins": "the self-supervised model beats the strongest baseline",
    "loses": "the self-supervised model does NOT beat the strongest baseline",
    "tie": "the self-supervised model and the strongest baseline are equally good within the noise",
    "mixed": "the self-supervised model and the strongest baseline are mixed (the two metrics disagree)",
}


# ------------------------------------------------------------------------------------------------ the bullets
def starting_point(ssl: Mapping[str, Any], groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict | None:
    """The trained model's own starting point at its input size: the ImageNet row for a model continued from
    ImageNet, the random-init row for one trained from random init; None when the table has no such row."""
    recipe, size = str(ssl.get("recipe", "")), ssl.get("image_size")
    if "continued from ImageNet" in recipe:
        candidates = groups.get("ImageNet", [])
    elif "from random init" in recipe:
        candidates = [r for r in groups.get("floor", []) if str(r.get("recipe", "")).startswith("random init")]
    else:
        return None
    same = [r for r in candidates if r.get("image_size") == size and size is not None]
    return dict(same[0]) if same else None


def _bought_line(table: Any, ssl: Mapping[str, Any], start: Mapping[str, Any] | None) -> str:
    if start is None:
        return "- **What training bought:** not measured (the table has no row of its starting point at its size)."
    text, calls = _gaps_text(table, ssl, start)
    size = f" at the same {ssl['image_size']} px" if ssl.get("image_size") else ""
    verdict = {"wins": "a real gain", "loses": "a real loss", "tie": "no gain beyond the noise"}.get(
        outcome(calls), "mixed"
    )
    return f"- **What training bought:** against its own starting point{size}, {_quoted(start)}: {text}: {verdict}."


def _cost_line(ssl: Mapping[str, Any], base: Mapping[str, Any], result: str) -> str:
    """Embedding cost of both (images/s measured when the embeddings were made), and what
    a smaller input size saves when the trained model is as good."""
    sizes = [r.get("image_size") for r in (ssl, base)]
    speeds = [_number(r.get("images_per_second")) for r in (ssl, base)]
    source = "measured on this machine when the embeddings were made"
    if None in speeds:
        return "- **Cost:** embedding speed not measured for these rows."
    text = (
        f"- **Cost:** the trained model embeds {speeds[0]:,.0f} images/s at {sizes[0]} px, the strongest baseline "
        f"{speeds[1]:,.0f} images/s at {sizes[1]} px"
    )
    if result in ("wins", "tie") and sizes[0] and sizes[1] and sizes[0] < sizes[1]:
        text += f": as good or better at {speeds[0] / speeds[1]:.1f}× the embedding speed"
    return text + f" ({source})."


def _use_line(best: Mapping[str, Any], ssl: Mapping[str, Any], base: Mapping[str, Any], result: str) -> str:
    """Which embedding to use: the trained model when it wins, or ties at a cheaper embedding; else the best."""
    speeds = [_number(r.get("images_per_second")) for r in (ssl, base)]
    cheaper = None not in speeds and speeds[0] > speeds[1]  # type: ignore[operator]
    if result == "wins" or (result == "tie" and cheaper):
        why = "it is better" if result == "wins" else "it is as good within the noise and cheaper to embed"
        return f"- **Use:** embed this data with {_quoted(ssl)}: {why}."
    return f"- **Use:** embed this data with {_quoted(best)}."


def describe_comparison(
    table: Any,
    *,
    n_classes: int | None = None,
    tie: float | None = None,
    quality: Mapping[str, Any] | None = None,
    labels: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The verdict as a short Markdown block computed from the table: best embedding, what training bought
    against its own starting point, the trained model against the strongest baseline with 95% intervals, the
    cost, with few labels (`labels`: comparison.label_efficiency_rows), what would change the outcome, the floors
    and chance, and one sentence on what training bought in quality, cost and labels."""
    from embedlab.course.comparison import KINDS

    del tie  # kept for old callers: ties come from the intervals now
    groups = rows_by_kind(table)
    if not groups["self-supervised"] or not groups["baselines"]:
        raise ValueError(
            "the comparison table needs a self-supervised row and a baseline row (ImageNet, teacher or a combination "
            "such as ImageNet ⊕ PCA); it has "
            f"{sorted(str(r['name']) for rows in groups.values() for r in rows)}"
        )
    ssl, base = groups["self-supervised"][0], groups["baselines"][0]
    best = max(
        (r for kind in KINDS for r in groups.get(kind, [])),
        key=lambda r: (r["knn_accuracy"], r["linear_probe_accuracy"]),
    )
    against, calls = _gaps_text(table, ssl, base)
    result = outcome(calls)
    lines = [
        f"**On this data, {HEADLINES[result]}.** A gap counts only when its 95% interval excludes 0"
        f"{_noise_note(table)}; otherwise it is a tie.",
        "",
        f"- **Best embedding:** {_quoted(best)}: {_scores(best)}.",
        _bought_line(table, ssl, starting_point(ssl, groups)),
        f"- **Against the strongest baseline**, {_quoted(base)} ({_scores(base)}): {_quoted(ssl)} scores "
        f"{against}: {CALL_WORDS[result]}.",
        *_single_line(table, ssl, base, groups),
        _cost_line(ssl, base, result),
        *_labels_line(ssl, base, labels),
    ]
    if result != "wins":
        lines.append("- **What would change the outcome:**")
        lines += [f"  - {lever}." for lever in levers(ssl, base, quality)]
    lines.append(_floor_line(table, ssl, groups["floor"], n_classes))
    lines.append(_use_line(best, ssl, base, result))
    lines.append(_summary_line(ssl, base, result, labels))
    return "\n".join(lines)


def _few_labels(ssl: Mapping[str, Any], base: Mapping[str, Any], labels: Any) -> tuple[dict, dict] | None:
    """The trained row's and the strongest baseline's kNN points at the fewest labels both were measured with."""
    mine, theirs = (labels or {}).get(ssl.get("recipe")), (labels or {}).get(base.get("recipe"))
    if not mine or not theirs:
        return None
    shared = sorted({p["labels_per_class"] for p in mine} & {p["labels_per_class"] for p in theirs})
    if not shared:
        return None
    at = {"mine": mine, "theirs": theirs}
    return tuple(next(p for p in at[k] if p["labels_per_class"] == shared[0]) for k in at)  # type: ignore[return-value]


def _labels_call(points: tuple[dict, dict]) -> str:
    """'more', 'less' or 'as much' accuracy from few labels: ranges over label draws that do not overlap, else a tie."""
    mine, theirs = points
    if mine["knn_low"] > theirs["knn_high"]:
        return "more"
    return "less" if mine["knn_high"] < theirs["knn_low"] else "as much"


def _labels_line(ssl: Mapping[str, Any], base: Mapping[str, Any], labels: Any) -> list[str]:
    """With a handful of labels per class: the trained model's kNN against the strongest baseline's."""
    points = _few_labels(ssl, base, labels)
    if points is None:
        return []
    mine, theirs = points
    n = mine["labels_per_class"]
    return [
        f"- **With {n} label{'s' if n > 1 else ''} per class:** kNN {mine['knn']:.3f} ({mine['knn_low']:.3f}–"
        f"{mine['knn_high']:.3f} over {mine['draws']} draws) against {theirs['knn']:.3f} ({theirs['knn_low']:.3f}–"
        f"{theirs['knn_high']:.3f}) for the strongest baseline: {_labels_call(points)} from few labels."
    ]


def _summary_line(ssl: Mapping[str, Any], base: Mapping[str, Any], result: str, labels: Any) -> str:
    """What training bought, in quality, cost and labels, as one sentence to repeat."""
    quality = {"wins": "better embeddings than", "tie": "embeddings as good as", "loses": "worse embeddings than"}.get(
        result, "embeddings better on one measure and worse on another than"
    )
    speeds = [_number(r.get("images_per_second")) for r in (ssl, base)]
    cost = "" if None in speeds else f", {speeds[0] / speeds[1]:.1f}× the embedding speed"  # type: ignore[operator]
    points = _few_labels(ssl, base, labels)
    few = "" if points is None else f", and {_labels_call(points)} accuracy from few labels"
    return f"- **In one sentence:** training bought {quality} the strongest baseline{cost}{few}."


def _single_line(
    table: Any, ssl: Mapping[str, Any], base: Mapping[str, Any], groups: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[str]:
    """When the strongest baseline is a combination (ImageNet ⊕ PCA), the trained model against the strongest single
    off-the-shelf model too (the paired intervals of `compare` are computed against that one)."""
    from embedlab.course.comparison import SINGLE_BASELINE_KINDS

    singles = sorted(
        (r for kind in SINGLE_BASELINE_KINDS for r in groups.get(kind, [])),
        key=lambda r: (r["knn_accuracy"], r["linear_probe_accuracy"]),
        reverse=True,
    )
    if base.get("kind") != "combination" or not singles:
        return []
    text, calls = _gaps_text(table, ssl, singles[0])
    return [
        f"- **Against the strongest single model**, {_quoted(singles[0])} ({_scores(singles[0])}): {_quoted(ssl)} "
        f"scores {text}: {CALL_WORDS[outcome(calls)]}."
    ]


def _noise_note(table: Any) -> str:
    attrs = getattr(table, "attrs", {}) or {}
    if attrs.get("paired"):
        n = int(table["n"].max()) if "n" in table else 0
        return f" (paired bootstrap over the {n:,} images)" if n else " (paired bootstrap over the images)"
    return ""


def _floor_line(table: Any, ssl: Mapping[str, Any], floors: Sequence[Mapping[str, Any]], n_classes: int | None) -> str:
    """Which floors (random init, PCA of raw pixels) the trained model clears, and chance."""
    parts = []
    for floor in floors:
        diff, low, high = gap(table, ssl, floor, "knn_accuracy")
        verb = {"higher": "beats", "tie": "does NOT clearly beat", "lower": "is below"}[_call(diff, low, high)]
        parts.append(f"{verb} {_quoted(floor)} (kNN {floor['knn_accuracy']:.3f})")
    chance = f"chance is {1 / n_classes:.3f} ({n_classes} classes)" if n_classes else ""
    text = "; it ".join(parts)
    body = f"the trained model {text}" + (f"; {chance}" if chance else "") if parts else chance
    return f"- **Floors:** {body}." if body else "- **Floors:** none in the table."


# ------------------------------------------------------------------------------------------------ levers
def _method_of(row: Mapping[str, Any]) -> str:
    return str(row.get("recipe", "")).split(" ", 1)[0].lower()


def _recipes(quality: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """bench_quality's trained recipes, each with its training image size and method at the top level."""
    rows = [r for r in (quality or {}).get("rows", []) if r.get("kind") == "recipe"]
    return [{**r, **{k: r.get("train_options", {}).get(k) for k in ("image_size", "method")}} for r in rows]


def _size_lever(ssl: Mapping[str, Any], base: Mapping[str, Any], recipes: Sequence[Mapping[str, Any]]) -> str | None:
    if not (ssl.get("image_size") and base.get("image_size") and ssl["image_size"] < base["image_size"]):
        return None
    text = (
        f"train at a larger image size (the baseline is best at {base['image_size']} px, "
        f"the model saw {ssl['image_size']} px"
    )
    same = sorted(
        (r for r in recipes if r["method"] == _method_of(ssl)),
        key=lambda r: r["image_size"],
    )
    if len(same) > 1:
        text += "; measured by bench_quality: " + ", ".join(f"{r['image_size']} px kNN {r['knn']:.3f}" for r in same)
    return text + ")"


def _longer_lever(ssl: Mapping[str, Any], recipes: Sequence[Mapping[str, Any]]) -> str:
    text = "train longer (notebook 02 resumes; its kNN monitor shows whether accuracy still rises"
    same = [r for r in recipes if r["method"] == _method_of(ssl) and r.get("image_size") == ssl.get("image_size")]
    curve = same[0].get("curve") if same else None
    if curve and len(curve) > 2:
        mid = curve[len(curve) // 2]
        text += (
            f"; bench_quality's curve of this recipe: kNN {mid['knn']:.3f} after {mid['step']} steps, "
            f"{curve[-1]['knn']:.3f} after {curve[-1]['step']}"
        )
    return text + ")"


def _distil_lever(ssl: Mapping[str, Any], base: Mapping[str, Any], quality: Mapping[str, Any] | None) -> str | None:
    if _method_of(ssl) == "distillation":
        return None
    teacher = "the ImageNet network" if base.get("kind") == "combination" else "the strongest baseline"  # a network
    text = f"distil {teacher} into the model (method='distillation', notebook 02"
    verdict = (quality or {}).get("verdict") or {}
    if "best_recipe" in verdict and str(verdict["best_recipe"]).startswith("Distillation"):
        text += (
            f"; bench_quality: {verdict['best_recipe']} reached kNN {verdict['best_recipe_knn']:.3f} against "
            f"{verdict['strongest_baseline_knn']:.3f} for {verdict['strongest_baseline']}"
        )
    return text + ")"


def levers(ssl: Mapping[str, Any], base: Mapping[str, Any], quality: Mapping[str, Any] | None = None) -> list[str]:
    """What would change a loss or a tie, each with the number bench_quality measured on the demo data, if any."""
    recipes = _recipes(quality)
    found = [_size_lever(ssl, base, recipes), _longer_lever(ssl, recipes), _distil_lever(ssl, base, quality)]
    if quality and any(found[:1] + found[2:]) or quality and "curve" in str(found[1]):
        found.append(f"bench_quality measured those numbers on the demo data ({quality.get('images', '?'):,} images)")
    return [lever for lever in found if lever]
