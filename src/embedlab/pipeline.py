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
            return {
                t.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            }
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


KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]  # hides ipykernel's start-up warning about TCP transport


def execute_notebook(
    notebook: Path,
    output: Path,
    parameters: Mapping[str, Any],
    *,
    cwd: Path,
    progress: bool = False,
    kernel_name: str = KERNEL,
) -> None:
    """Run one notebook with papermill; raise PipelineError with the notebook name on failure.

    progress shows papermill's per-cell bar; the pipeline keeps it off and prints one line per notebook instead.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=dict(parameters),
            kernel_name=kernel_name,
            cwd=str(cwd),
            progress_bar=progress,
            log_output=False,
            report_mode=False,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except PapermillExecutionError as error:
        raise _failure(notebook.name, output, error) from None
    except Exception as error:  # kernel missing, dead kernel, timeouts: still say which notebook
        raise _failure(notebook.name, output, error) from error


def run_pipeline(
    params: str | os.PathLike[str] | Mapping[str, Any] = "demo",
    *,
    run_dir: str | os.PathLike[str] | None = None,
    notebooks: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    html_report: bool = True,
) -> Path:
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
        t0 = time.perf_counter()
        own = {k: v for k, v in values.items() if k in declared[notebook]}
        with _ProgressLine(progress, f"[{i}/{len(selected)}] {notebook.stem}", t0) as line:
            execute_notebook(notebook, out_dir / notebook.name, own, cwd=out_dir)
            timings[notebook.stem] = time.perf_counter() - t0
            line.finish(
                f"done in {_format_seconds(timings[notebook.stem])} "
                f"(total {_format_seconds(time.perf_counter() - started)})"
            )
        write_json(
            run_root / "pipeline.json",
            {
                "parameter_set": None if isinstance(params, Mapping) else str(params),
                "parameters": values,
                "seconds": timings,
                "machine": machine_line(),
            },
        )
    index = write_index(run_root, timings=timings, parameters=values, html_notebooks=html_report)
    _say(progress, f"done in {_format_seconds(time.perf_counter() - started)}: {index}")
    return index


def machine_line() -> str:
    """Where the timings were measured: CPU cores (and the GPU, if torch sees one), OS and Python."""
    import platform

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = ""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu_model()}, {cores} CPU cores{gpu}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows: speeds differ by model."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


class _ProgressLine:
    """One console line per notebook: on a terminal it ticks the elapsed time in place; elsewhere (logs, CI)
    only the finished line is printed."""

    def __init__(self, progress: bool, label: str, started: float, every: float = 1.0) -> None:
        self.progress, self.label, self.started, self.every = progress, label, started, every
        self.live = progress and sys.stdout.isatty()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _write(self, text: str, end: str = "") -> None:
        with self.lock:
            print(f"\r{text}\033[K" if self.live else text, end=end, flush=True)

    def _tick(self) -> None:
        while not self.stop.wait(self.every):
            self._write(f"{self.label} ... {_format_seconds(time.perf_counter() - self.started)}")

    def finish(self, message: str) -> None:
        """End the line with the result (the notebook's time)."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.progress:
            self._write(f"{self.label} {message}", end="\n")

    def __enter__(self) -> _ProgressLine:
        if self.live:
            self._write(f"{self.label} ...")
            self.thread.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        if exc_type is not None and self.live:
            self._write(f"{self.label} failed after {_format_seconds(time.perf_counter() - self.started)}", end="\n")


# ------------------------------------------------------------------------------------------------ results
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
    first = (
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


def write_index(
    run_dir: str | os.PathLike[str],
    *,
    timings: Mapping[str, float] | None = None,
    parameters: Mapping[str, Any] | None = None,
    html_notebooks: bool = True,
) -> Path:
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
        parts += [
            f"<li><a href='interactive/{esc(p.name)}'>{esc(p.stem)}</a> (hover for thumbnails; click the legend "
            f"to hide classes)</li>"
            for p in interactive
        ]
        parts.append("</ul>")
    figures = sorted((root / "figures").glob("*.png"))
    if figures:
        parts.append("<h2>Figures</h2><div class='figures'>")
        parts += [
            f"<figure><a href='figures/{esc(p.name)}'><img src='{thumbnail_data_uri(p, 360)}' "
            f"alt='{esc(p.stem)}'/></a>"
            f"<figcaption>{esc(p.stem)}</figcaption></figure>"
            for p in figures
        ]
        parts.append("</div>")
    if parameters:
        parts.append("<h2>Parameters</h2>")
        parts.append(_table_html([{"parameter": k, "value": v} for k, v in sorted(parameters.items())]))
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        ".figures{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;width:360px}"
        "figure img{max-width:360px;border:1px solid #ddd}.verdict{font-size:1.1em}"
    )
    document = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>embedlab run {esc(root.name)}"
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )
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
    parser.add_argument(
        "params", nargs="?", default="demo", help="parameter set name (demo, classroom, full, tiny) or YAML file"
    )
    parser.add_argument("--run-dir", help="where results go (default: run_dir of the parameter set)")
    parser.add_argument("--only", help="comma-separated notebook prefixes, e.g. 03,04")
    parser.add_argument(
        "-p",
        "--param",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME VALUE",
        help="override one parameter: -p epochs 5 (papermill style) or -p epochs=5 (repeatable)",
    )
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
        index = run_pipeline(
            args.params,
            run_dir=args.run_dir,
            notebooks=args.only.split(",") if args.only else None,
            overrides=overrides,
            progress=not args.quiet,
        )
    except (PipelineError, ParameterError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
