"""One damaged JPEG never stops a notebook: notebook 02 (augmentation figures, training) runs on a folder holding
a truncated JPEG, with the notebook's tiny test settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_reliability import class_folder, truncated_jpeg

REPO = Path(__file__).resolve().parents[1]


def _run(name: str, values: dict, cwd: Path) -> Any:
    """Execute notebooks/<name>.ipynb with its nbmake mock plus `values` injected after the parameters cell."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.reads((REPO / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"), as_version=4)
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    mock = dict(notebook.cells[index].metadata["nbmake"]["mock"])
    source = "\n".join(f"{k} = {v!r}" for k, v in {**mock, **values}.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()


@pytest.mark.slow
def test_notebook_02_runs_on_a_folder_with_a_truncated_jpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    folder = class_folder(tmp_path / "photos", per_class=12)
    truncated_jpeg(folder / "a" / "zz_cut.jpg")
    _run("02_train_embedding_model", {"dataset": str(folder), "run_dir": "runs/damaged"}, tmp_path)
    run = tmp_path / "runs" / "damaged"
    figures = {p.stem for p in (run / "figures").glob("*.png")}
    assert {"augmented_pairs", "loss_curve"} <= figures  # the cells before and after the histogram all ran
    assert (run / "exported" / "backbone.pt").is_file() and (run / "exported" / "backbone.json").is_file()
