"""Every notebook 01-06 runs alone in an empty folder (the stand-in for a fresh Colab runtime), with its nbmake mock.

Each notebook is executed with nbclient exactly as nbmake would run it (its mock values assigned in a cell right
after the `parameters` cell) but with EMBEDLAB_ROOT pointing at an empty temporary folder, so the run directory and
the data directory start empty: the notebook must make its missing inputs itself and never stop with
MissingInputError.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STANDALONE = sorted(p for p in (REPO / "notebooks").glob("0[1-6]_*.ipynb"))
CELL_TIMEOUT_S = 600


def _mock(notebook: dict) -> tuple[int, dict]:
    """Index of the `parameters` cell and its nbmake mock."""
    cells = notebook["cells"]
    index = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    return index, cells[index]["metadata"]["nbmake"]["mock"]


def with_mock(notebook: dict) -> dict:
    """The notebook with its nbmake mock assigned right after the `parameters` cell (what nbmake does)."""
    import nbformat

    cells = notebook["cells"]
    index, mock = _mock(notebook)
    source = "\n".join(f"{name} = {value!r}" for name, value in mock.items())
    cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-mock"]}))
    return notebook


def _outputs_text(notebook: dict) -> str:
    return "\n".join(
        o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
        for c in notebook["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", STANDALONE, ids=lambda p: p.stem)
def test_notebook_runs_alone_in_an_empty_folder(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    notebook = with_mock(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError (naming the cell) on any error, MissingInputError included
    run_dir = tmp_path / _mock(notebook)[1]["run_dir"]
    assert (run_dir / "dataset.json").is_file(), "the notebook recorded (or made) its dataset in run_dir"
    if path.name[:2] != "01":  # it made what notebook 01 would have, and said so
        assert "No dataset recorded" in _outputs_text(notebook)
    if path.name[:2] >= "03":
        assert (run_dir / "exported" / "backbone.pt").is_file()
        assert "No trained model" in _outputs_text(notebook)
    if path.name[:2] >= "04":
        assert (run_dir / "embeddings" / "ssl.pt").is_file()
