"""Every notebook 01-06 runs alone in an empty folder (the stand-in for a fresh Colab runtime), with its nbmake mock.

Each notebook is executed with nbclient exactly as nbmake would run it (its mock values assigned in a cell right
after the `parameters` cell) but with EMBEDLAB_ROOT pointing at an empty temporary folder, so the run directory and
the data directory start empty: the notebook must make its missing inputs itself and never stop with
MissingInputError.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
STANDALONE = sorted(p for p in (REPO / "notebooks").glob("0[1-6]_*.ipynb"))


def _runner() -> ModuleType:
    """data_scripts/run_notebook_alone.py: the mock injection and execution the Colab stand-in uses too."""
    spec = importlib.util.spec_from_file_location("run_notebook_alone", REPO / "data_scripts" / "run_notebook_alone.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _runner()


@pytest.mark.slow
@pytest.mark.parametrize("path", STANDALONE, ids=lambda p: p.stem)
def test_notebook_runs_alone_in_an_empty_folder(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat

    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    notebook = runner.with_mock(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))
    runner.execute(notebook, tmp_path)  # CellExecutionError (naming the cell) on any error
    run_dir = tmp_path / runner.parameters_mock(notebook)[1]["run_dir"]
    assert (run_dir / "dataset.json").is_file(), "the notebook recorded (or made) its dataset in run_dir"
    if path.name[:2] != "01":  # it made what notebook 01 would have, and said so
        assert "No dataset recorded" in runner.outputs_text(notebook)
    if path.name[:2] >= "03":
        assert (run_dir / "exported" / "backbone.pt").is_file()
        assert "No trained model" in runner.outputs_text(notebook)
    if path.name[:2] >= "04":
        assert (run_dir / "embeddings" / "ssl.pt").is_file()
