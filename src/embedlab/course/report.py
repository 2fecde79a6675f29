"""What a run reports: metrics.json (with the verdict of `embedlab.course.verdict`) and the index.html page of a run.

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
from embedlab.course.verdict import rows_by_kind
from embedlab.rundir import RunDir

__all__ = ["format_seconds", "save_metrics", "verdict_html", "write_index"]

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


# ------------------------------------------------------------------------------------------------ metrics.json
def _plain_value(key: str, value: Any) -> Any:
    """A JSON-ready table cell: numpy scalars to Python, NaN to None, image sizes as integers."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value != value:
        return None
    return int(value) if key == "image_size" and value is not None else value


def save_metrics(path: str | os.PathLike[str], table: Any, verdict: str, **extra: Any) -> Path:
    """Write metrics.json: every row (name, recipe, kind, image size, kNN and probe with their 95% intervals, NMI,
    images/s), the paired differences, the best row, the strongest baseline, the verdict and any extra facts."""
    rows = [{k: _plain_value(k, v) for k, v in r.items()} for r in table.to_dict("records")]
    groups = rows_by_kind(table)
    best = max(rows, key=lambda r: (r["knn_accuracy"], r["linear_probe_accuracy"])) if rows else None
    summary = {
        "best": best["name"] if best else None,
        "strongest_baseline": groups["baselines"][0]["name"] if groups["baselines"] else None,
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
        f"<div class='verdict'>{verdict_html(str(metrics.get('verdict', '')))}</div>",
        _table_html(metrics.get("comparison", [])),
        f"<p><a href='{name}'>{name}</a></p>",
    ]


def verdict_html(markdown: str) -> str:
    """The verdict's small Markdown (paragraphs, `- ` bullets, **bold**) as escaped HTML."""
    import re

    parts: list[str] = []
    for line in markdown.splitlines():
        text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(line.strip()))
        bullet = line.strip().startswith("- ")
        if bullet and not (parts and parts[-1].endswith("</li>")):
            parts.append("<ul>")
        if not bullet and parts and parts[-1].endswith("</li>"):
            parts.append("</ul>")
        if text:
            parts.append(f"<li>{text[2:]}</li>" if bullet else f"<p>{text}</p>")
    if parts and parts[-1].endswith("</li>"):
        parts.append("</ul>")
    return "".join(parts)


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
