"""A results archive as a first-class input: `pack_run` writes it, and notebooks 04-06 opened alone with
`pretrained_url` run from it offline with dataset='aid' — no dataset download, no training, no embedding."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import serve_folder

from embedlab.course import params
from embedlab.course import standalone as workflow

REPO = Path(__file__).resolve().parents[1]
FROM_ARCHIVE = ("04_visualize_umap", "05_compare_with_imagenet", "06_use_the_embeddings")


def _notebook(name: str) -> dict:
    return json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))


def _mock(name: str) -> dict:
    cell = next(c for c in _notebook(name)["cells"] if "parameters" in c["metadata"].get("tags", []))
    return dict(cell["metadata"]["nbmake"]["mock"])


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (every set notebook 05 compares, thumbnails cached) packed into results.zip."""
    root = tmp_path_factory.mktemp("publisher")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMBEDLAB_ROOT", str(root))
        values = {**_mock("05_compare_with_imagenet"), "dataset": "fashion-mnist", "run_dir": "runs/published"}
        p = params.check(values, "05")
        workflow.ensure_embeddings(p)  # dataset + thumbnails, a short model, every set notebook 05 compares
        return workflow.pack_run(p.run.root)


@pytest.fixture
def server(archive: Path) -> Iterator[str]:
    """The archive served from localhost, as a teacher's published release asset would be."""
    with serve_folder(archive.parent) as base:
        yield f"{base}/{archive.name}"


def test_the_archive_holds_results_and_thumbnails_but_no_dataset(archive: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        info = json.loads(zf.read("dataset.json"))
    assert "exported/backbone.pt" in names and "embeddings/ssl.pt" in names and "embeddings/pca.pt" in names
    assert any(n.startswith("thumbnails/") and n.endswith(".png") for n in names)
    assert info["root"] is None and info["archived_thumbnails"] is True
    thumbnail_bytes = sum(zipfile.ZipFile(archive).getinfo(n).file_size for n in names if n.startswith("thumbnails/"))
    assert thumbnail_bytes < 5 * 2**20  # the pictures for the figures and the map: small


@pytest.mark.slow
@pytest.mark.parametrize("name", FROM_ARCHIVE)
def test_notebook_runs_alone_from_the_archive_without_the_dataset(
    name: str, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    notebook = nbformat.reads((REPO / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"), as_version=4)
    values = {**_mock(name), "dataset": "aid", "data_dir": "data", "run_dir": "runs/alone", "pretrained_url": server}
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # offline: a download of AID or a training run would fail the cell
    assert not (tmp_path / "data").exists(), "the dataset was prepared although the archive had what was needed"
    assert not (tmp_path / "runs" / "alone" / "checkpoints").exists(), "a model was trained"
