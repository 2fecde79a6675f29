"""The design's promises, checked on the code: one declaration and one check per option, a torch-free settings
module, the run layout spelled in one module, short files and functions, and a new method as one file + one line."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from embedlab.settings import ALL_SETTINGS, ParameterError, TrainSettings

SRC = Path(__file__).resolve().parents[1] / "src" / "embedlab"
REPO = SRC.parents[1]
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60
OPTION_NAMES = {f.name for cls in ALL_SETTINGS for f in fields(cls)}
RUN_FILES = ("last.ckpt", "backbone.pt", "loss.csv", "epochs.csv", "config.json", "metrics.json", "skipped_images.json")


def _python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


def _checks_option(node: ast.Raise) -> str | None:
    """The option a raise statement re-validates, in the old style f"{name}={name!r}: ...", or None."""
    for text in ast.walk(node):
        if isinstance(text, ast.JoinedStr):
            for before, value in zip(text.values, text.values[1:]):
                name = getattr(value, "value", None)
                if (
                    isinstance(before, ast.Constant)
                    and isinstance(name, ast.Name)
                    and name.id in OPTION_NAMES
                    and str(before.value).endswith(f"{name.id}=")
                ):
                    return name.id
    return None


def test_no_option_is_checked_a_second_time_on_the_training_path() -> None:
    """Settings check every option where it enters; the code that takes the settings raises no option errors."""
    roots = [SRC / "training", SRC / "methods", SRC / "cli"]
    files = [*_python_files(*roots, SRC / "course"), SRC / "transforms.py", SRC / "runtime.py"]
    found = [
        f"{path.relative_to(SRC)}:{node.lineno} re-checks {option!r}"
        for path in files
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Raise) and (option := _checks_option(node))
    ]
    assert not found, "checked again outside embedlab.settings: " + "; ".join(found)


def test_the_scanner_finds_an_old_style_second_check() -> None:
    code = 'def f(batch_size):\n    raise ValueError(f"batch_size={batch_size!r}: too small")\n'
    assert [_checks_option(n) for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Raise)] == ["batch_size"]


def test_every_option_has_its_check_help_and_default_in_settings() -> None:
    for cls in ALL_SETTINGS:
        for f in fields(cls):
            assert f.metadata.get("check") and f.metadata.get("help"), f"{cls.__name__}.{f.name}"


def test_settings_check_names_with_torch_blocked() -> None:
    """Checking a notebook's method, backbone or teacher never imports torch or Lightning."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        from embedlab import settings
        from embedlab.course import params
        settings.TrainSettings(method="distillation", backbone="resnet50", augment="aerial", teacher="resnet18")
        settings.TrainSettings(method="multi_teacher", method_args={"targets": "clean"})  # a method's own args too
        params.check({"run_dir": "runs/x", "method": "moco", "epochs": 2, "dataset": "fashion-mnist"}, "02")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightly", "pytorch_lightning", "lightning"))
        print(heavy, "embedlab.training" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False"


def test_run_files_are_named_only_in_rundir() -> None:
    literal = re.compile("|".join(re.escape(f'"{name}"') for name in RUN_FILES))
    files = _python_files(SRC, REPO / "benchmarks", REPO / "data_scripts")
    stray = [
        f"{path.relative_to(REPO)}:{number}"
        for path in files
        if path.name != "rundir.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if literal.search(line)
    ]
    assert not stray, f"run-file names spelled outside embedlab/rundir.py: {stray}"


def test_files_and_functions_stay_short() -> None:
    """No module over 500 lines; no function over 60 unless the line above it says why ("# long: ...")."""
    too_long = []
    for path in _python_files(SRC):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(SRC)}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if length > MAX_FUNCTION_LINES and "# long:" not in lines[first - 2]:
                    too_long.append(f"{path.relative_to(SRC)}:{node.name}: {length} lines")
    assert not too_long, too_long


def test_docs_toy_method_registers_and_trains(tiny_data: Path, tmp_path: Path) -> None:
    """The worked example in docs/development.md ("Add a method") runs as written: one class + one registry line."""
    text = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    example = re.search(r"<!-- toy-method -->\s*```python\n(.*?)```", text, re.S)
    assert example, "docs/development.md lost its toy-method example"
    namespace: dict[str, object] = {}
    exec(compile(example.group(1), "docs/development.md", "exec"), namespace)  # noqa: S102 - our own docs
    from embedlab import registry
    from embedlab.training import train
    from embedlab.training.checkpoints import recipe

    try:
        assert TrainSettings(method="toy").method_args == {"sharpness": 2.0}  # its own option, default filled in
        assert TrainSettings(method="toy", method_args="sharpness=4").method_args == {"sharpness": 4.0}  # CLI form
        assert recipe(TrainSettings(method="toy", method_args={"sharpness": 3}))["method_args"] == {"sharpness": 3.0}
        with pytest.raises(ParameterError, match="parameter 'sharpness': expected a number > 0, got -1"):
            TrainSettings(method="toy", method_args={"sharpness": -1})
        with pytest.raises(ParameterError, match="unknown ToyArgs option.*'sharp'"):
            TrainSettings(method="toy", method_args={"sharp": 3})
        with pytest.raises(ParameterError, match="parameter 'method_args': method 'byol' takes none"):
            TrainSettings(method="byol", method_args={"sharpness": 3})
        options = {"epochs": 1, "batch_size": 8, "image_size": 16, "layers": 1, "max_steps": 1, "knn_monitor": False}
        run = tmp_path / "run"
        result = train(tiny_data, run, method="toy", method_args={"sharpness": 3}, progress=False, **options)
        assert result.exported.is_file() and result.final_loss == result.final_loss  # trained one finite step
        with pytest.raises(Exception, match="method_args"):  # a resume cannot silently change the method's option
            train(tiny_data, run, method="toy", method_args={"sharpness": 9}, progress=False, **options)
        with pytest.raises(ParameterError, match="parameter 'temperature': method 'byol' does not use it"):
            TrainSettings(method="byol", temperature=0.3)
    finally:
        registry.METHODS.pop("toy", None)
    with pytest.raises(ParameterError, match="parameter 'method'"):
        TrainSettings(method="toy")


# ------------------------------------------------------------------------------------------------ the rooms
def _room(module: str) -> str | None:
    """The room of a dotted module name: the top-level module or package under embedlab (None: not embedlab's)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "embedlab" and len(parts) > 1 else None


def _imported(path: Path, node: ast.AST, src: Path) -> list[str]:
    """The embedlab modules one import statement names (relative imports resolved; `from embedlab import x`: x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    module = node.module or ""
    if node.level:
        package = list(path.relative_to(src.parent).with_suffix("").parts)[: -node.level]
        module = ".".join([*package, *([module] if module else [])])
    return [f"{module}.{alias.name}" for alias in node.names] if module == "embedlab" else [module]


def room_graph(src: Path = SRC) -> dict[tuple[str, str], list[str]]:
    """(importing room, imported room) -> where: every import in the package, lazy ones inside functions included."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in _python_files(src):
        relative = path.relative_to(src)
        if relative == Path("__init__.py"):
            continue  # the public surface re-exports every room
        here = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for module in _imported(path, node, src):
                there = _room(module)
                if there and there != here and there != "__version__":
                    edges.setdefault((here, there), []).append(f"{relative}:{node.lineno}")
    return edges


def documented_layout() -> tuple[list[str], set[tuple[str, str]]]:
    """docs/development.md's rooms, lowest first (its Layout block), and the upward imports it lists."""
    text = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    rooms = []
    for line in block.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            names = line.split("  ", 2)[1].strip() if line.strip() else ""
            rooms += [n.strip().removesuffix(".py").removesuffix("/") for n in names.split(",") if n.strip()]
    upward = set(re.findall(r"^- `([\w.]+)` -> `([\w.]+)`", text.split("## Upward imports", 1)[-1], re.M))
    return rooms, upward


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Every cycle of rooms, as the rooms of each strongly connected component with more than one room."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    reach = {room: set() for room in graph}
    for room in graph:
        todo = list(graph[room])
        while todo:
            nxt = todo.pop()
            if nxt not in reach[room]:
                reach[room].add(nxt)
                todo += graph.get(nxt, ())
    return sorted(
        {tuple(sorted(r for r in graph if r in reach[room] and room in reach.get(r, ()))) for room in graph} - {()}
    )


def test_rooms_have_no_cycle_and_import_only_downward_or_as_documented() -> None:
    edges = room_graph()
    rooms, upward = documented_layout()
    missing = sorted({room for pair in edges for room in pair} - set(rooms))
    assert not missing, f"rooms missing from docs/development.md's Layout: {missing}"
    assert not _cycles(set(edges)), f"cycles between rooms: {_cycles(set(edges))}"
    order = {room: i for i, room in enumerate(rooms)}
    wrong = [
        f"{a} -> {b} ({where[0]})"
        for (a, b), where in sorted(edges.items())
        if order[b] > order[a] and (a, b) not in upward
    ]
    assert not wrong, f"upward imports docs/development.md does not list: {wrong}"
    stale = sorted(pair for pair in upward if pair not in edges)
    assert not stale, f"docs/development.md lists upward imports the code no longer has: {stale}"


def test_the_room_check_sees_a_lazy_upward_import_and_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "embedlab"
    (package / "low").mkdir(parents=True)
    (package / "low" / "__init__.py").write_text("def f():\n    from embedlab.high import g\n")
    (package / "high.py").write_text("from .low import f\n")
    edges = room_graph(package)
    assert set(edges) == {("low", "high"), ("high", "low")} and _cycles(set(edges)) == [("high", "low")]


def test_the_course_layer_is_one_room_and_the_top_holds_at_most_12_loose_modules() -> None:
    loose = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= 12, loose
    library = [p for p in _python_files(SRC) if p.relative_to(SRC).parts[0] not in ("course", "cli", "__init__.py")]
    reaching_up = [str(p.relative_to(SRC)) for p in library if "embedlab.course" in p.read_text(encoding="utf-8")]
    assert not reaching_up, f"the library imports the course layer: {reaching_up}"


def test_library_defaults_are_the_settings_declarations():
    """The library's functions take their defaults from the one declaration of each option (settings), so the
    notebooks, the CLI and a direct call agree; a literal that drifts from its declaration fails here."""
    import inspect

    from embedlab import classifier, curation, evaluation, projection
    from embedlab.embedding import shards
    from embedlab.settings import CompareSettings, CurationSettings, EmbedSettings, ProjectionSettings

    compare, curate, project, embed = CompareSettings(), CurationSettings(), ProjectionSettings(), EmbedSettings()
    expected = [
        (evaluation.knn_accuracy, "k", compare.knn_k),
        (evaluation.knn_correct, "k", compare.knn_k),
        (evaluation.knn_predict, "k", compare.knn_k),
        (projection.project, "n_neighbors", project.umap_n_neighbors),
        (projection.project, "min_dist", project.umap_min_dist),
        (projection.Projector, "n_neighbors", project.umap_n_neighbors),
        (projection.Projector, "min_dist", project.umap_min_dist),
        (curation.nearest_neighbors, "k", curate.neighbors_k),
        (curation.outlier_scores, "k", curate.outlier_k),
        (curation.most_unusual, "k", curate.outlier_k),
        (curation.near_duplicates, "threshold", curate.duplicate_threshold),
        (shards.embed_to_shards, "shard_size", embed.embed_shard_size),
        (classifier.train_classifier, "batch_size", curate.classifier_batch_size),
    ]
    for function, option, declared in expected:
        assert inspect.signature(function).parameters[option].default == declared, (function.__name__, option)
