"""Run the numbered notebooks in order with one parameter set (papermill), then write an index.html of the run.

    python -m embedlab.pipeline demo                    # notebooks/params/demo.yaml -> runs/demo/index.html
    python -m embedlab.pipeline classroom --only 03,04 -p epochs 80

Each notebook gets only the parameters it declares; the executed copies go to <run_dir>/notebooks/. The first
failing notebook stops the run with a PipelineError naming it and the failing cell's error.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from embedlab._io import atomic_open, write_json
from embedlab.params import (
    ParameterError,
    check_overrides,
    find_project_root,
    resolve_path,
    validate_params,
)

PIPELINE_NOTEBOOKS_GLOB = "[0-9][0-9]_*.ipynb"
SKIP_IN_PIPELINE = ("00_",)  # the quickstart repeats the whole path; the pipeline runs the detailed notebooks
KERNEL = "python3"


class PipelineError(RuntimeError):
    """A notebook of the pipeline failed (or could not start); the message names it and the error."""


# ------------------------------------------------------------------------------------------------ locating
def notebooks_dir() -> Path:
    """The repository's notebooks/ folder ($EMBEDLAB_ROOT, the source checkout of this package, or above the cwd)."""
    candidates = []
    if os.environ.get("EMBEDLAB_ROOT"):
        candidates.append(Path(os.environ["EMBEDLAB_ROOT"]) / "notebooks")
    candidates.append(Path(__file__).resolve().parents[2] / "notebooks")
    root = find_project_root()
    if root:
        candidates.append(root / "notebooks")
    for folder in candidates:
        if (folder / "params").is_dir():
            return folder
    raise PipelineError("cannot find the notebooks/ folder: run from an embedlab checkout or set EMBEDLAB_ROOT")


def params_file(params: str | os.PathLike[str]) -> Path:
    """Path of a parameter set: a name in notebooks/params/ (demo, classroom, full, tiny) or a YAML path."""
    text = str(params)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text).expanduser()
    else:
        path = notebooks_dir() / "params" / f"{text}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (notebooks_dir() / "params").glob("*.yaml"))
        raise PipelineError(f"no parameter set {text!r} ({path}); use one of {', '.join(names)} or a YAML file")
    return path


def load_params(params: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Load a named parameter set or YAML file (a mapping is copied as is)."""
    if isinstance(params, Mapping):
        return dict(params)
    import yaml

    path = params_file(params)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected a mapping of parameter names to values")
    return data


def pipeline_notebooks(only: Sequence[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks in order (without the quickstart); `only` keeps those whose prefix is listed."""
    folder = folder or notebooks_dir()
    found = sorted(p for p in folder.glob(PIPELINE_NOTEBOOKS_GLOB) if not p.name.startswith(SKIP_IN_PIPELINE))
    if only:
        wanted = [str(o).strip() for o in only if str(o).strip()]
        found = [p for p in found if any(p.name.startswith(w) for w in wanted)]
        if not found:
            raise PipelineError(f"--only {','.join(wanted)} matches no notebook in {folder}")
    return found


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in a notebook's `parameters` cell (parsed with ast: robust to any comment text)."""
    import ast

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)}
    raise PipelineError(f"{notebook.name} has no cell tagged 'parameters'")


# ------------------------------------------------------------------------------------------------ running
def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _failure(name: str, output: Path, error: BaseException) -> PipelineError:
    """Turn papermill's error into a PipelineError naming the notebook and the failing cell's error."""
    ename = getattr(error, "ename", type(error).__name__)
    evalue = getattr(error, "evalue", str(error))
    count = getattr(error, "exec_count", None)
    where = f" (cell {count})" if count is not None else ""
    return PipelineError(f"notebook {name} failed{where}: {ename}: {evalue}\n  executed copy: {output}")


def execute_notebook(notebook: Path, output: Path, parameters: Mapping[str, Any], *, cwd: Path,
                     progress: bool = True, kernel_name: str = KERNEL) -> None:
    """Run one notebook with papermill; raise PipelineError with the notebook name on failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=dict(parameters),
                                   kernel_name=kernel_name, cwd=str(cwd), progress_bar=progress,
                                   log_output=False, report_mode=False)
    except PapermillExecutionError as error:
        raise _failure(notebook.name, output, error) from None
    except Exception as error:  # kernel missing, dead kernel, timeouts: still say which notebook
        raise _failure(notebook.name, output, error) from error


def run_pipeline(params: str | os.PathLike[str] | Mapping[str, Any] = "demo", *, run_dir: str | os.PathLike[str] | None = None,
                 notebooks: Sequence[str] | None = None, overrides: Mapping[str, Any] | None = None,
                 progress: bool = True, html_report: bool = True) -> Path:
    """Run the notebooks in order with one parameter set into <run_dir>/notebooks/; return <run_dir>/index.html."""
    started = time.perf_counter()
    values = {**load_params(params), **dict(overrides or {})}
    if run_dir is not None:
        values["run_dir"] = str(run_dir)
    if "run_dir" not in values:
        raise ParameterError("parameter 'run_dir' is missing from the parameter set (and no run_dir was given)")
    selected = pipeline_notebooks(notebooks)
    declared = {nb: declared_parameters(nb) for nb in pipeline_notebooks()}
    check_overrides(values, set().union(*declared.values()))
    clean = validate_params(**values)  # fail before any notebook runs
    for key in ("run_dir", "data_dir"):
        if key in clean:
            values[key] = str(clean[key])  # absolute: the kernel's cwd must not matter
    run_root = Path(values["run_dir"])
    out_dir = run_root / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    _say(progress, f"embedlab pipeline: {len(selected)} notebooks -> {run_root}")
    for i, notebook in enumerate(selected, 1):
        _say(progress, f"[{i}/{len(selected)}] {notebook.stem} ...")
        t0 = time.perf_counter()
        own = {k: v for k, v in values.items() if k in declared[notebook]}
        with _heartbeat(progress, notebook.stem, t0):
            execute_notebook(notebook, out_dir / notebook.name, own, cwd=out_dir, progress=progress)
        timings[notebook.stem] = time.perf_counter() - t0
        _say(progress, f"[{i}/{len(selected)}] {notebook.stem} done in {_format_seconds(timings[notebook.stem])} "
                       f"(total {_format_seconds(time.perf_counter() - started)})")
        write_json(run_root / "pipeline.json", {"parameters": values, "seconds": timings})
    index = write_index(run_root, timings=timings, parameters=values, html_notebooks=html_report)
    _say(progress, f"done in {_format_seconds(time.perf_counter() - started)}: {index}")
    return index


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


class _heartbeat:
    """Print 'still running' with the elapsed time every `every` seconds, so long cells (training) show progress."""

    def __init__(self, progress: bool, name: str, started: float, every: float = 30.0) -> None:
        self.progress, self.name, self.started, self.every = progress, name, started, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.every):
            _say(True, f"    ... {self.name} still running, {_format_seconds(time.perf_counter() - self.started)}")

    def __enter__(self) -> _heartbeat:
        if self.progress:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()


# ------------------------------------------------------------------------------------------------ results
_FRIENDLY = {"ssl": "the self-supervised model", "imagenet": "the ImageNet model", "random": "random init",
             "pca": "PCA of raw pixels"}


def describe_comparison(table: Any, *, ssl: str = "ssl", reference: str = "imagenet", floor: str = "random",
                        pixels: str = "pca", n_classes: int | None = None, tie: float = 0.01) -> str:
    """One or two sentences saying which embedding is better on this data, written from the measured table."""
    rows = {str(r["name"]): r for r in table.to_dict("records")}
    if ssl not in rows or reference not in rows:
        raise ValueError(f"the comparison table needs rows {ssl!r} and {reference!r}; it has {sorted(rows)}")
    a, b = rows[ssl], rows[reference]
    parts = []
    for metric, label in (("knn_accuracy", "kNN accuracy"), ("linear_probe_accuracy", "linear-probe accuracy")):
        diff = a[metric] - b[metric]
        if abs(diff) < tie:
            parts.append(f"{label} is about the same ({a[metric]:.3f} vs {b[metric]:.3f})")
        else:
            winner = _FRIENDLY.get(ssl, ssl) if diff > 0 else _FRIENDLY.get(reference, reference)
            parts.append(f"{winner} is better by {label} ({a[metric]:.3f} vs {b[metric]:.3f}, "
                         f"{'+' if diff > 0 else '−'}{abs(diff):.3f})")
    knn_diff = a["knn_accuracy"] - b["knn_accuracy"]
    probe_diff = a["linear_probe_accuracy"] - b["linear_probe_accuracy"]
    if knn_diff >= tie and probe_diff > -tie:
        headline = f"On this data, {_FRIENDLY.get(ssl, ssl)} wins."
    elif knn_diff <= -tie and probe_diff < tie:
        headline = f"On this data, {_FRIENDLY.get(reference, reference)} wins."
    elif abs(knn_diff) < tie and abs(probe_diff) < tie:
        headline = "On this data, the two models are about equally good."
    else:
        headline = "On this data, the result is mixed."
    text = f"{headline} Self-supervised vs ImageNet: " + "; ".join(parts) + "."
    if floor in rows:
        f = rows[floor]["knn_accuracy"]
        beaten = a["knn_accuracy"] - f >= tie
        text += (f" The self-supervised model {'beats' if beaten else 'does NOT clearly beat'} the random-init "
                 f"floor (kNN {f:.3f})" + ("." if beaten else ": train longer or check the augmentations."))
    if pixels in rows:
        text += " " + _pixel_baseline_sentence(a["knn_accuracy"], rows[pixels]["knn_accuracy"], tie)
    if n_classes:
        text += f" Chance level is {1 / n_classes:.3f} ({n_classes} classes)."
    return text


def _pixel_baseline_sentence(ssl_knn: float, pixels_knn: float, tie: float) -> str:
    """Say whether the learned embedding beats plain pixels (PCA): a network that does not has not paid off yet."""
    if ssl_knn - pixels_knn >= tie:
        return f"It also beats raw pixels (PCA, kNN {pixels_knn:.3f})."
    if pixels_knn - ssl_knn >= tie:
        return (f"But raw pixels (PCA) score higher still (kNN {pixels_knn:.3f}): on this data the learned "
                f"embedding has not yet paid off over plain pixels; train longer or on larger images.")
    return f"Raw pixels (PCA) score about the same (kNN {pixels_knn:.3f})."


def save_metrics(path: str | os.PathLike[str], table: Any, verdict: str, **extra: Any) -> Path:
    """Write metrics.json: the comparison rows, the verdict sentence and any extra facts of the run."""
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in table.to_dict("records")]
    return write_json(path, {"comparison": rows, "verdict": verdict, **extra})


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
    if not rows:
        return "<p>(no rows)</p>"
    first = ("name", "parameter", "n", "dim", "knn_accuracy", "linear_probe_accuracy", "cluster_nmi")
    columns = [c for c in first if c in rows[0]] + [c for c in rows[0] if c not in first]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(f'{r.get(c):.3f}' if isinstance(r.get(c), float) else str(r.get(c)))}</td>"
                         for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_index(run_dir: str | os.PathLike[str], *, timings: Mapping[str, float] | None = None,
                parameters: Mapping[str, Any] | None = None, html_notebooks: bool = True) -> Path:
    """Write <run_dir>/index.html linking executed notebooks, figures, interactive plots and the metrics table."""
    from embedlab.plotting import (
        thumbnail_data_uri,  # matplotlib loads only when an index is written
    )

    root = resolve_path(run_dir)
    esc = html.escape
    parts = [f"<h1>embedlab run: {esc(root.name)}</h1>", f"<p><code>{esc(str(root))}</code></p>"]
    metrics_path = root / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        parts.append("<h2>Comparison (metrics.json)</h2>")
        parts.append(f"<p class='verdict'>{esc(str(metrics.get('verdict', '')))}</p>")
        parts.append(_table_html(metrics.get("comparison", [])))
        parts.append("<p><a href='metrics.json'>metrics.json</a></p>")
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    if notebooks:
        parts.append("<h2>Executed notebooks</h2><ul>")
        for nb in notebooks:
            page = _notebook_html(nb, nb.with_suffix(".html")) if html_notebooks else None
            seconds = (timings or {}).get(nb.stem)
            took = f" — {_format_seconds(seconds)}" if seconds is not None else ""
            link = f"<a href='notebooks/{esc(page.name)}'>{esc(nb.stem)}</a> " if page else esc(nb.stem) + " "
            parts.append(f"<li>{link}(<a href='notebooks/{esc(nb.name)}'>ipynb</a>){esc(took)}</li>")
        parts.append("</ul>")
    interactive = sorted((root / "interactive").glob("*.html"))
    if interactive:
        parts.append("<h2>Interactive plots</h2><ul>")
        parts += [f"<li><a href='interactive/{esc(p.name)}'>{esc(p.stem)}</a> (hover for thumbnails; click the legend "
                  f"to hide classes)</li>" for p in interactive]
        parts.append("</ul>")
    figures = sorted((root / "figures").glob("*.png"))
    if figures:
        parts.append("<h2>Figures</h2><div class='figures'>")
        parts += [f"<figure><a href='figures/{esc(p.name)}'><img src='{thumbnail_data_uri(p, 360)}' "
                  f"alt='{esc(p.stem)}'/></a>"
                  f"<figcaption>{esc(p.stem)}</figcaption></figure>" for p in figures]
        parts.append("</div>")
    if parameters:
        parts.append("<h2>Parameters</h2>")
        parts.append(_table_html([{"parameter": k, "value": v} for k, v in sorted(parameters.items())]))
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             ".figures{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;width:360px}"
             "figure img{max-width:360px;border:1px solid #ddd}.verdict{font-size:1.1em}")
    document = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>embedlab run {esc(root.name)}"
                f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    index = root / "index.html"
    with atomic_open(index, "w", encoding="utf-8") as handle:
        handle.write(document)
    return index


# ------------------------------------------------------------------------------------------------ command line
def _parse_value(text: str) -> Any:
    """Parse an override value like YAML does (3 -> int, 0.5 -> float, true -> True, null -> None)."""
    import yaml

    return yaml.safe_load(text)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m embedlab.pipeline` (also used by `embedlab run`)."""
    parser = argparse.ArgumentParser(prog="python -m embedlab.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="demo", help="parameter set name (demo, classroom, full, tiny) or YAML file")
    parser.add_argument("--run-dir", help="where results go (default: run_dir of the parameter set)")
    parser.add_argument("--only", help="comma-separated notebook prefixes, e.g. 03,04")
    parser.add_argument("-p", "--param", nargs="+", action="append", default=[], metavar="NAME VALUE",
                        help="override one parameter: -p epochs 5 (papermill style) or -p epochs=5 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.param:
        if len(item) == 1 and "=" in item[0]:
            item = item[0].split("=", 1)
        if len(item) != 2 or not item[0]:
            parser.error(f"-p expects NAME VALUE or NAME=VALUE, got {' '.join(item)!r}")
        overrides[item[0]] = _parse_value(item[1])
    try:
        index = run_pipeline(args.params, run_dir=args.run_dir, notebooks=args.only.split(",") if args.only else None,
                             overrides=overrides, progress=not args.quiet)
    except (PipelineError, ParameterError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
