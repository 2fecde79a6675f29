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
    files = [*_python_files(*roots), SRC / "transforms.py", SRC / "runtime.py", SRC / "params.py", SRC / "workflow.py"]
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
        from embedlab import params, settings
        settings.TrainSettings(method="byol", backbone="resnet50", augment="aerial", teacher="efficientnet_lite0")
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

    try:
        assert TrainSettings(method="toy").method == "toy"
        options = {"epochs": 1, "batch_size": 8, "image_size": 16, "layers": 1, "max_steps": 1}
        result = train(tiny_data, tmp_path / "run", method="toy", knn_monitor=False, progress=False, **options)
        assert result.exported.is_file() and result.final_loss == result.final_loss  # trained one finite step
    finally:
        registry.METHODS.pop("toy", None)
    with pytest.raises(ParameterError, match="parameter 'method'"):
        TrainSettings(method="toy")
