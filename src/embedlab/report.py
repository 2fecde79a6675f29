"""What a run reports: the verdict sentence, metrics.json, and the index.html page that links everything of a run.

Notebook 05 writes the verdict and metrics.json; the pipeline writes the index page after the last notebook.
"""

from __future__ import annotations

import html
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from embedlab._io import atomic_open, write_json
from embedlab.rundir import RunDir

INDEX_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    ".figures{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;width:360px}"
    "figure img{max-width:360px;border:1px solid #ddd}.verdict{font-size:1.1em}"
)
TABLE_FIRST_COLUMNS = (
    "recipe",
    "name",
    "kind",
    "image_size",
    "parameter",
    "n",
    "dim",
    "knn_accuracy",
    "linear_probe_accuracy",
    "cluster_nmi",
)


def format_seconds(seconds: float) -> str:
    """A duration as 1m05s (or 42s)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# ------------------------------------------------------------------------------------------------ the verdict
def _rows_by_kind(table: Any) -> dict[str, list[dict[str, Any]]]:
    """Table rows grouped by kind (self-supervised / ImageNet / floor), each group best kNN first."""
    from embedlab.evaluation import recipe_kind

    groups: dict[str, list[dict[str, Any]]] = {"self-supervised": [], "ImageNet": [], "floor": []}
    for row in table.to_dict("records"):
        row.setdefault("recipe", row["name"])
        kind = row.get("kind") or recipe_kind({}, str(row["name"]))
        groups.setdefault(kind, []).append(row)
    for rows in groups.values():
        rows.sort(key=lambda r: (r["knn_accuracy"], r["linear_probe_accuracy"]), reverse=True)
    return groups


def _scores(row: Mapping[str, Any]) -> str:
    return f"kNN {row['knn_accuracy']:.3f}, linear probe {row['linear_probe_accuracy']:.3f}"


def _signed(diff: float) -> str:
    return f"{'+' if diff >= 0 else '−'}{abs(diff):.3f}"


def _outcome(ssl: Mapping[str, Any], base: Mapping[str, Any], tie: float) -> str:
    """'wins', 'loses', 'tie' or 'mixed' for the self-supervised row against the strongest baseline."""
    knn = ssl["knn_accuracy"] - base["knn_accuracy"]
    probe = ssl["linear_probe_accuracy"] - base["linear_probe_accuracy"]
    if knn >= tie and probe > -tie:
        return "wins"
    if knn <= -tie and probe < tie:
        return "loses"
    return "tie" if abs(knn) < tie and abs(probe) < tie else "mixed"


def _what_would_change_it(ssl: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """Concrete levers when the self-supervised model does not beat the strongest baseline."""
    levers = []
    if ssl.get("image_size") and base.get("image_size") and ssl["image_size"] < base["image_size"]:
        levers.append(
            f"train at a larger image size (the ImageNet network is best here at {base['image_size']} px, "
            f"the self-supervised model saw {ssl['image_size']} px)"
        )
    levers.append("train longer (notebook 02 resumes; its kNN monitor shows whether accuracy still rises)")
    if "distillation" not in str(ssl.get("recipe", "")).lower():
        levers.append("distil the strongest baseline into the model (method='distillation')")
    return "What would change it: " + "; ".join(levers) + "."


def _quoted(row: Mapping[str, Any]) -> str:
    """A row's recipe in quotes: recipe names contain commas, so they need marking inside a sentence."""
    return f"“{row['recipe']}”"


def describe_comparison(table: Any, *, n_classes: int | None = None, tie: float = 0.01) -> str:
    """A short verdict written from the measured table: the best row first, then the self-supervised model
    against the strongest baseline (the best ImageNet row), what would change a loss, and the floors."""
    groups = _rows_by_kind(table)
    if not groups["self-supervised"] or not groups["ImageNet"]:
        raise ValueError(
            "the comparison table needs a self-supervised row and an ImageNet row; it has "
            f"{sorted(str(r['name']) for rows in groups.values() for r in rows)}"
        )
    ssl, base = groups["self-supervised"][0], groups["ImageNet"][0]
    best = max(
        (r for rows in groups.values() for r in rows), key=lambda r: (r["knn_accuracy"], r["linear_probe_accuracy"])
    )
    outcome = _outcome(ssl, base, tie)
    headline = {
        "wins": "the self-supervised model beats the strongest baseline",
        "loses": "the self-supervised model does NOT beat the strongest baseline",
        "tie": "the self-supervised model and the strongest baseline are about equally good",
        "mixed": "the self-supervised model and the strongest baseline are mixed (one metric each)",
    }[outcome]
    knn_diff = ssl["knn_accuracy"] - base["knn_accuracy"]
    probe_diff = ssl["linear_probe_accuracy"] - base["linear_probe_accuracy"]
    text = f"On this data, {headline}. Best embedding: {_quoted(best)} ({_scores(best)})"
    if best is base:
        text += ", the strongest baseline."
        against = "against it"
    else:
        text += "."
        against = f"against the strongest baseline, {_quoted(base)} ({_scores(base)})"
    if best is not ssl:
        text += (
            f" {_quoted(ssl)} scores {_scores(ssl)}: {_signed(knn_diff)} kNN and {_signed(probe_diff)} "
            f"linear probe {against}."
        )
    else:
        text += f" It leads {_signed(knn_diff)} kNN and {_signed(probe_diff)} linear probe {against}."
    if outcome != "wins":
        text += f" {_what_would_change_it(ssl, base)} Until then, embed this data with {_quoted(best)}."
    text += " " + _floor_sentence(ssl, groups["floor"], tie)
    if n_classes:
        text += f" Chance level is {1 / n_classes:.3f} ({n_classes} classes)."
    return text


def _floor_sentence(ssl: Mapping[str, Any], floors: Sequence[Mapping[str, Any]], tie: float) -> str:
    """Say which floors (random init, PCA of raw pixels) the self-supervised model clears."""
    if not floors:
        return ""
    parts = []
    for floor in floors:
        diff = ssl["knn_accuracy"] - floor["knn_accuracy"]
        verb = "beats" if diff >= tie else "does NOT clearly beat" if diff > -tie else "is below"
        parts.append(f"{verb} {_quoted(floor)} (kNN {floor['knn_accuracy']:.3f})")
    return "Floors: the self-supervised model " + "; it ".join(parts) + "."


def _plain_value(key: str, value: Any) -> Any:
    """A JSON-ready table cell: numpy scalars to Python, NaN to None, image sizes as integers."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value != value:
        return None
    return int(value) if key == "image_size" and value is not None else value


def save_metrics(path: str | os.PathLike[str], table: Any, verdict: str, **extra: Any) -> Path:
    """Write metrics.json: every row (name, recipe, kind, image size, kNN, probe, NMI), the best row, the strongest
    baseline, the verdict sentence and any extra facts of the run."""
    rows = [{k: _plain_value(k, v) for k, v in r.items()} for r in table.to_dict("records")]
    groups = _rows_by_kind(table)
    best = max(rows, key=lambda r: (r["knn_accuracy"], r["linear_probe_accuracy"])) if rows else None
    summary = {
        "best": best["name"] if best else None,
        "strongest_baseline": groups["ImageNet"][0]["name"] if groups["ImageNet"] else None,
        "best_self_supervised": groups["self-supervised"][0]["name"] if groups["self-supervised"] else None,
    }
    return write_json(path, {"comparison": rows, **summary, "verdict": verdict, **dict(table.attrs), **extra})


# ------------------------------------------------------------------------------------------------ the index page
def _notebook_html(notebook: Path, target: Path) -> Path | None:
    """Convert an executed notebook to HTML (figures stay embedded); None when nbconvert fails."""
    try:
        import nbformat
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(str(notebook), as_version=4))
    except Exception as error:  # the report must not fail the run
        print(f"warning: could not convert {notebook.name} to HTML: {error}", file=sys.stderr)
        return None
    with atomic_open(target, "w", encoding="utf-8") as handle:
        handle.write(body)
    return target


def _table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of rows (dicts); the usual columns first, numbers with three decimals."""
    if not rows:
        return "<p>(no rows)</p>"
    first = TABLE_FIRST_COLUMNS
    columns = [c for c in first if c in rows[0]] + [c for c in rows[0] if c not in first]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(f'{r.get(c):.3f}' if isinstance(r.get(c), float) else str(r.get(c)))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_section(run: RunDir) -> list[str]:
    """The comparison table and verdict from metrics.json (nothing when the run has none yet)."""
    if not run.metrics.is_file():
        return []
    metrics = json.loads(run.metrics.read_text(encoding="utf-8"))
    name = html.escape(run.metrics.name)
    return [
        f"<h2>Comparison ({name})</h2>",
        f"<p class='verdict'>{html.escape(str(metrics.get('verdict', '')))}</p>",
        _table_html(metrics.get("comparison", [])),
        f"<p><a href='{name}'>{name}</a></p>",
    ]


def _href(run: RunDir, path: Path) -> str:
    """A link from the index page to a file of the run (relative, escaped)."""
    return html.escape(path.relative_to(run.root).as_posix())


def _notebooks_section(run: RunDir, timings: Mapping[str, float], html_notebooks: bool) -> list[str]:
    """Links to the executed notebooks (as HTML pages when nbconvert works) with their run times."""
    notebooks = sorted(run.notebooks_dir.glob("*.ipynb"))
    if not notebooks:
        return []
    parts = ["<h2>Executed notebooks</h2><ul>"]
    for nb in notebooks:
        page = _notebook_html(nb, nb.with_suffix(".html")) if html_notebooks else None
        seconds = timings.get(nb.stem)
        took = f" — {format_seconds(seconds)}" if seconds is not None else ""
        stem = html.escape(nb.stem)
        link = f"<a href='{_href(run, page)}'>{stem}</a> " if page else f"{stem} "
        parts.append(f"<li>{link}(<a href='{_href(run, nb)}'>ipynb</a>){html.escape(took)}</li>")
    return [*parts, "</ul>"]


def _interactive_section(run: RunDir) -> list[str]:
    """Links to the interactive plots."""
    pages = sorted(run.interactive_dir.glob("*.html"))
    if not pages:
        return []
    items = [
        f"<li><a href='{_href(run, p)}'>{html.escape(p.stem)}</a> (hover for thumbnails; click the legend "
        f"to hide classes)</li>"
        for p in pages
    ]
    return ["<h2>Interactive plots</h2><ul>", *items, "</ul>"]


def _figures_section(run: RunDir) -> list[str]:
    """The figures as small inline thumbnails linking to the full PNGs."""
    figures = sorted(run.figures_dir.glob("*.png"))
    if not figures:
        return []
    from embedlab.plotting import thumbnail_data_uri  # matplotlib loads only when an index is written

    items = [
        f"<figure><a href='{_href(run, p)}'><img src='{thumbnail_data_uri(p, 360)}' alt='{html.escape(p.stem)}'/>"
        f"</a><figcaption>{html.escape(p.stem)}</figcaption></figure>"
        for p in figures
    ]
    return ["<h2>Figures</h2><div class='figures'>", *items, "</div>"]


def write_index(
    run_dir: str | os.PathLike[str],
    *,
    timings: Mapping[str, float] | None = None,
    parameters: Mapping[str, Any] | None = None,
    html_notebooks: bool = True,
) -> Path:
    """Write <run_dir>/index.html linking executed notebooks, figures, interactive plots and the metrics table."""
    run = RunDir(run_dir)
    title = html.escape(run.root.name)
    parts = [f"<h1>embedlab run: {title}</h1>", f"<p><code>{html.escape(str(run.root))}</code></p>"]
    parts += _metrics_section(run)
    parts += _notebooks_section(run, timings or {}, html_notebooks)
    parts += _interactive_section(run)
    parts += _figures_section(run)
    if parameters:
        rows = [{"parameter": k, "value": v} for k, v in sorted(parameters.items())]
        parts += ["<h2>Parameters</h2>", _table_html(rows)]
    document = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>embedlab run {title}"
        f"</title><style>{INDEX_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    with atomic_open(run.index_page, "w", encoding="utf-8") as handle:
        handle.write(document)
    return run.index_page
