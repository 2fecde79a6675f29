"""A results archive as a first-class input: `pack_run` writes it, and notebooks 04-06 opened alone with
`pretrained_url` run from it offline with dataset='aid' — no dataset download, no training, no embedding."""

from __future__ import annotations

import ast
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


# ------------------------------------------------------------------ an archive made with other settings
IMAGENET_META = {"backbone": "efficientnet_lite0", "model": "efficientnet_lite0", "weights": "imagenet"}


def _small_archive(path: Path, model: bytes = b"finished model") -> Path:
    """A results archive as the demo's would be (Fashion-MNIST, EfficientNet-Lite0 at 32 and 112 px), tiny."""
    import torch

    from embedlab.embedding import Embeddings

    files, labels = [f"c{i % 2}/{i}.png" for i in range(12)], [i % 2 for i in range(12)]
    metas = {
        "ssl": {"backbone": "efficientnet_lite0", "method": "distillation", "image_size": 64},
        "imagenet": {**IMAGENET_META, "image_size": 112},
        "imagenet-32": {**IMAGENET_META, "image_size": 32},
        "random": {"backbone": "efficientnet_lite0", "image_size": 64},
        "pca": {"model": "pca", "embedding_dim": 4, "image_size": 64},
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, meta in metas.items():
            emb = Embeddings(torch.rand(12, 4), files, labels, ["c0", "c1"], meta=meta, name=name)
            emb.save(path.parent / f"{name}.pt")
            zf.write(path.parent / f"{name}.pt", f"embeddings/{name}.pt")
        zf.writestr("exported/backbone.pt", model)
        zf.writestr("exported/backbone.json", json.dumps({"method": "distillation", "image_size": 64}))
        info = {"dataset": "fashion-mnist", "root": None, "archived_thumbnails": False}
        zf.writestr("dataset.json", json.dumps(info))
    return path


def _alone(tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch) -> params.NotebookParams:
    """Notebook 05 opened alone with its own defaults (AID, ResNet18 at 64/112/224 px) and the archive; any dataset
    preparation or download fails the test."""
    import embedlab.datasets as datasets

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dataset download was started")

    monkeypatch.setattr(datasets, "prepare", refuse)
    monkeypatch.setattr(datasets, "download", refuse)
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    cells = _notebook("05_compare_with_imagenet")["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse("".join(cell["source"])).body}
    alone = {"use_drive": False, "run_dir": "runs/alone", "pretrained_url": str(archive)}
    return params.check({**values, **alone}, "05")


def test_an_archive_made_with_other_settings_is_compared_as_it_is_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _small_archive(tmp_path / "demo-results.zip")
    p = _alone(tmp_path, archive, monkeypatch)
    embeddings = workflow.ensure_embeddings(p)  # the classroom sizes imagenet-64/-112 are not in the archive
    assert sorted(embeddings) == ["imagenet", "imagenet+pca", "imagenet-32", "pca", "random", "ssl"]
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("pretrained_url:")]
    assert "dataset: 'fashion-mnist' in the archive, 'aid' here" in line
    assert "imagenet_model: 'efficientnet_lite0' in the archive, 'resnet18' here" in line
    assert "imagenet_image_sizes: [32, 112] in the archive, [64, 112, 224] here" in line
    assert "'imagenet-64', 'imagenet-112'" in line and "no dataset download" in line
    assert not (tmp_path / "data").exists()


def test_an_archive_replaces_a_half_trained_export_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _small_archive(tmp_path / "results.zip")
    p = _alone(tmp_path, archive, monkeypatch)
    (p.run.root / "exported").mkdir(parents=True)
    p.run.exported.write_bytes(b"half-trained model")  # an interrupted training's export (export_after_stop)
    p.run.exported.with_suffix(".json").write_text(json.dumps({"image_size": 64, "stopped_at_step": 7}), "utf-8")
    assert workflow.ensure_backbone(p).read_bytes() == b"finished model"
    said = capsys.readouterr().out
    assert "half-trained model (training stopped at step 7)" in said and said.count("half-trained") == 1
    assert "stopped_at_step" not in p.run.exported.with_suffix(".json").read_text("utf-8")
    workflow.ensure_backbone(p)  # now finished: nothing more is replaced or said
    assert "half-trained" not in capsys.readouterr().out


def test_a_finished_export_in_run_dir_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _alone(tmp_path, _small_archive(tmp_path / "results.zip"), monkeypatch)
    (p.run.root / "exported").mkdir(parents=True)
    p.run.exported.write_bytes(b"my own model")
    p.run.exported.with_suffix(".json").write_text(json.dumps({"image_size": 64}), "utf-8")
    assert workflow.ensure_backbone(p).read_bytes() == b"my own model"
