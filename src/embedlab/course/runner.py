"""Run the numbered notebooks in order with one parameter set (papermill), then write an index.html of the run.

    embedlab run demo                                   # the shipped preset demo -> runs/demo/index.html
    embedlab run classroom --only 03,04 -p epochs 80   # two notebooks again, one parameter changed

Each notebook gets only the parameters it declares; the executed copies go to <run_dir>/notebooks/. The first
failing notebook stops the run with a PipelineError naming it and the failing cell's error.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from embedlab._io import write_json
from embedlab.course.params import (
    ParameterError,
    check_overrides,
    find_project_root,
    validate_params,
)
from embedlab.course.report import format_seconds, write_index
from embedlab.rundir import RunDir

__all__ = [  # in the order of the stages of a run
    "PipelineError",
    "notebooks_dir",
    "params_file",
    "load_params",
    "pipeline_notebooks",
    "declared_parameters",
    "execute_notebook",
    "run_pipeline",
    "machine_line",
    "cpu_model",
    "write_index",
]

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
    candidates.append(Path(__file__).resolve().parents[3] / "notebooks")
    root = find_project_root()
    if root:
        candidates.append(root / "notebooks")
    for folder in candidates:
        if any(folder.glob(PIPELINE_NOTEBOOKS_GLOB)):
            return folder
    raise PipelineError("cannot find the notebooks/ folder: run from an embedlab checkout or set EMBEDLAB_ROOT")


def params_file(params: str | os.PathLike[str]) -> Path:
    """Path of a parameter set: a shipped preset name (demo, classroom, full, tiny) or a YAML path."""
    from embedlab.course.presets import PresetError, preset_path

    try:
        return preset_path(params)
    except PresetError as error:
        raise PipelineError(str(error)) from None


def load_params(params: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Load a named parameter set or YAML file (a mapping is copied as is)."""
    from embedlab.course.presets import PresetError, load_preset

    if isinstance(params, Mapping):
        return dict(params)
    try:
        return load_preset(params)
    except PresetError as error:
        raise PipelineError(str(error)) from None


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
    run = RunDir(values["run_dir"])
    run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    _say(progress, f"embedlab pipeline: {len(selected)} notebooks -> {run.root}")
    if removed := clear_stale_outputs(run, selected):
        _say(progress, f"removed the previous run's {', '.join(p.name for p in removed)}: this run writes them again")
    for i, notebook in enumerate(selected, 1):
        t0 = time.perf_counter()
        own = {k: v for k, v in values.items() if k in declared[notebook]}
        with _ProgressLine(progress, f"[{i}/{len(selected)}] {notebook.stem}", t0) as line:
            execute_notebook(notebook, run.notebooks_dir / notebook.name, own, cwd=run.notebooks_dir)
            timings[notebook.stem] = time.perf_counter() - t0
            line.finish(
                f"done in {format_seconds(timings[notebook.stem])} "
                f"(total {format_seconds(time.perf_counter() - started)})"
            )
        _record(run, params, values, timings)
    index = write_index(run.root, timings=timings, parameters=values, html_notebooks=html_report)
    if run.exported.is_file():  # the run's results archive: what a teacher publishes for `pretrained_url`
        from embedlab.course.standalone import pack_run

        _say(progress, f"results archive for pretrained_url: {pack_run(run.root)}")
    _say(progress, f"done in {format_seconds(time.perf_counter() - started)}: {index}")
    return index


def clear_stale_outputs(run: RunDir, selected: Sequence[Path]) -> list[Path]:
    """Remove, before the first notebook, what would describe another model if this run stopped half-way: the index
    page and results archive (written again at the end), metrics.json when notebook 05 runs, and the trained model's
    embeddings ("ssl") when notebook 02 may change the model. Returns what was removed."""
    numbers = {notebook.stem[:2] for notebook in selected}
    stale = [run.index_page, run.results_archive]
    stale += [run.metrics] if "05" in numbers else []
    stale += [run.embedding("ssl")] if "02" in numbers else []
    removed = [path for path in stale if path.is_file()]
    for path in removed:
        path.unlink()
    return removed


def _record(run: RunDir, params: object, values: Mapping[str, Any], timings: Mapping[str, float]) -> Path:
    """Write pipeline.json: the parameter set, every parameter, each notebook's seconds and the machine."""
    return write_json(
        run.pipeline_record,
        {
            "parameter_set": None if isinstance(params, Mapping) else str(params),
            "parameters": dict(values),
            "seconds": dict(timings),
            "machine": machine_line(),
        },
    )


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
            self._write(f"{self.label} ... {format_seconds(time.perf_counter() - self.started)}")

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
            self._write(f"{self.label} failed after {format_seconds(time.perf_counter() - self.started)}", end="\n")
