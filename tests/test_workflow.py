"""A notebook's missing inputs: the dataset prepared, a published run archive fetched over HTTP (pretrained_url)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import serve_folder

from embedlab.course import params
from embedlab.course import standalone as workflow
from embedlab.settings import ParameterError

TINY_TRAIN = {"epochs": 1, "image_size": 32, "batch_size": 8, "small_images": False, "num_workers": 0}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A localhost HTTP server over a fresh folder: (base URL, folder)."""
    folder = tmp_path / "published"
    folder.mkdir()
    with serve_folder(folder) as base:
        yield base, folder


def _notebook_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notebook: str, **extra: object):
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    values = {
        "run_dir": "runs/fresh",
        "data_dir": "data",
        "dataset": "fashion-mnist",
        "limit_per_class": 3,
        "train_if_missing": TINY_TRAIN,
        "imagenet_model": "efficientnet_lite0",
        "num_workers": 0,
        **extra,
    }
    return params.check(values, notebook)


def _published_run(tmp_path: Path) -> Path:
    """A finished run (an exported, untrained backbone and its 'ssl' embeddings) as a published archive would hold."""
    from embedlab import create_backbone, embed, export_backbone, prepare

    root = prepare("fashion-mnist", tmp_path / "publisher-data", limit=3, progress=False)
    run = tmp_path / "publisher-run"
    backbone = create_backbone("resnet18", None, small_images=False)
    export_backbone(backbone, run / "exported" / "backbone.pt", extra_meta={"image_size": 32})
    embed(root, backbone, image_size=32, name="ssl", progress=False, num_workers=0).save(run / "embeddings" / "ssl.pt")
    return run


def test_ensure_dataset_prepares_and_records_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    p = _notebook_params(tmp_path, monkeypatch, "02")
    root = workflow.ensure_dataset(p)
    assert root.is_dir() and p.run.dataset_root() == root and len(list(root.glob("*/*.png"))) == 30
    assert (root.parent / "thumbnails-64").is_dir()
    assert "No dataset recorded" in capsys.readouterr().out
    assert workflow.ensure_dataset(p) == root and capsys.readouterr().out == ""  # the second call finds it


def test_pretrained_url_fetches_model_and_embeddings_instead_of_computing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, Path], capsys
) -> None:
    from embedlab import embedding, load_embeddings, training

    base, folder = server
    published = _published_run(tmp_path)
    workflow.pack_run(published, folder / "run.zip")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed although the published archive holds it")

    monkeypatch.setattr(training, "train", refuse)
    monkeypatch.setattr(embedding, "embed", refuse)
    p = _notebook_params(tmp_path, monkeypatch, "04", pretrained_url=f"{base}/run.zip")
    found = workflow.ensure_embeddings(p, "ssl")
    assert list(found) == ["ssl"] and "Using the published results" in capsys.readouterr().out
    assert torch.equal(found["ssl"].vectors, load_embeddings(published / "embeddings" / "ssl.pt").vectors)
    assert workflow.ensure_backbone(p).read_bytes() == (published / "exported" / "backbone.pt").read_bytes()
    assert not (tmp_path / "data").exists()  # the vectors came without preparing the dataset
    assert not p.run.has_images()  # this archive has no thumbnails: pictures would prepare the dataset
    assert workflow.ensure_images(p, 32) == p.run.image_root(32) and p.run.dataset_root().is_dir()


def test_imagenet_set_honours_the_notebooks_image_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook that declares one imagenet_image_size embeds at that size; a list gives a set per size."""
    p = _notebook_params(tmp_path, monkeypatch, "04", imagenet_image_size=48)
    assert workflow.imagenet_sizes(p) == (48,)
    assert workflow.comparison_sets(p) == ("ssl", "imagenet", "random", "pca", "imagenet+pca")
    assert workflow.make_embedding(p, "imagenet").meta["image_size"] == 48
    p = _notebook_params(tmp_path, monkeypatch, "03", imagenet_image_sizes=[32, 48])
    assert workflow.comparison_sets(p) == ("ssl", "imagenet", "imagenet-32", "random", "pca", "imagenet+pca")
    assert workflow.make_embedding(p, "imagenet-32").meta["image_size"] == 32


def test_the_imagenet_pca_concatenation_is_made_from_the_saved_sets_without_embedding_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Notebook 03's last comparison set: the saved "imagenet" (the largest size) and "pca" sets, concatenated."""
    import numpy as np

    from embedlab import embedding
    from embedlab.course.comparison import describe_embeddings
    from embedlab.embedding import Embeddings

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("embedded the images again")

    monkeypatch.setattr(embedding, "embed", refuse)
    monkeypatch.setattr(embedding, "embed_pca", refuse)
    p = _notebook_params(tmp_path, monkeypatch, "05", imagenet_image_sizes=[32, 48])
    files, labels = [f"c{i % 2}/{i}.png" for i in range(6)], np.arange(6) % 2
    imagenet_meta = {"model": "efficientnet_lite0", "backbone": "efficientnet_lite0", "weights": "imagenet"}
    parts = {
        "imagenet": Embeddings(torch.rand(6, 5), files, labels, ["c0", "c1"], meta={**imagenet_meta, "image_size": 48}),
        "pca": Embeddings(torch.rand(6, 3), files, labels, ["c0", "c1"], meta={"model": "pca", "image_size": 32}),
    }
    for name, part in parts.items():
        part.save(p.run.embedding(name))
    name = workflow.comparison_sets(p)[-1]
    assert name == "imagenet+pca" and p.run.embedding(name).name == "imagenet+pca.pt"
    found = workflow.ensure_embeddings(p, name)
    assert "concatenating the saved 'imagenet' and 'pca' sets" in capsys.readouterr().out
    assert p.run.embedding(name).is_file() and set(found) == {"imagenet", "pca", "imagenet+pca"}
    combined = found[name]
    assert combined.dim == 8 and combined.filenames == files and combined.meta["components"] == ["imagenet", "pca"]
    assert describe_embeddings(name, combined)["kind"] == "combination"
    assert describe_embeddings(name, combined)["image_size"] == 48  # the ImageNet part's size
    assert not (tmp_path / "data").exists()  # no dataset needed: only the saved sets


def test_pack_run_needs_a_model_and_urls_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="no exported/backbone.pt"):
        workflow.pack_run(tmp_path, tmp_path / "x.zip")
    with pytest.raises(ParameterError, match="parameter 'pretrained_url'"):
        _notebook_params(tmp_path, monkeypatch, "03", pretrained_url="ftp://example.org/run.zip")


def test_a_fresh_runtime_uses_the_thumbnails_when_the_raw_images_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Colab: the raw images lived on the old runtime's disk, the thumbnail cache on Drive; a new runtime trains and
    draws from the thumbnails instead of downloading the dataset again."""
    import shutil

    p = _notebook_params(tmp_path, monkeypatch, "02")
    root = workflow.ensure_dataset(p)
    cache = p.run.recorded_thumbnails()
    assert cache == root.parent / "thumbnails-64" and p.run.image_root(32) == cache and p.run.image_root(128) == root
    shutil.rmtree(root)  # the runtime was recycled
    capsys.readouterr()
    assert workflow.ensure_dataset(p) == cache and "using its thumbnails" in capsys.readouterr().out
    assert p.run.image_root(128) == cache and p.run.has_images()


class _TinyHubModel(torch.nn.Module):
    """Stands in for a torch.hub DINOv2 model offline: image batch -> [N, embed_dim]."""

    embed_dim = 24

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, self.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=(2, 3)))


def test_a_distillation_teacher_that_is_no_imagenet_row_becomes_a_baseline_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run distilled from DINOv2 (the `full` preset) is compared with its teacher: notebook 03 embeds it as the
    "teacher" set, whose kind is a baseline the trained model must beat; a teacher that is already an ImageNet
    row (the demo's) adds nothing."""
    from embedlab import create_backbone, export_backbone
    from embedlab.course.comparison import describe_embeddings

    monkeypatch.setattr(torch.hub, "load", lambda *args, **kwargs: _TinyHubModel())
    p = _notebook_params(tmp_path, monkeypatch, "05", imagenet_image_sizes=[32])
    meta = {"image_size": 32, "method": "distillation", "teacher": "dinov2_vits14", "teacher_image_size": 28}
    export_backbone(create_backbone("resnet18", None, layers=1), p.run.exported, extra_meta=meta)
    assert workflow.teacher_row(p) == ("dinov2_vits14", 28) and "teacher" in workflow.comparison_sets(p)
    teacher = workflow.make_embedding(p, "teacher")
    assert teacher.dim == _TinyHubModel.embed_dim and teacher.meta["image_size"] == 28
    described = describe_embeddings("teacher", teacher)
    assert described["kind"] == "teacher" and described["recipe"].startswith("the distillation teacher")
    same = {**meta, "teacher": "efficientnet_lite0", "teacher_image_size": 32}
    export_backbone(create_backbone("resnet18", None, layers=1), p.run.exported, extra_meta=same)
    assert workflow.teacher_row(p) is None and "teacher" not in workflow.comparison_sets(p)


def test_pretrained_url_takes_a_local_file_such_as_one_on_drive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A results archive a teacher put on Google Drive (a mounted path) or a file the learner downloaded."""
    published = _published_run(tmp_path)
    archive = workflow.pack_run(published, tmp_path / "drive" / "MyDrive" / "run.zip")
    p = _notebook_params(tmp_path, monkeypatch, "04", pretrained_url=str(archive))
    assert workflow.fetch_pretrained(p) and p.run.exported.is_file()
    missing = _notebook_params(tmp_path, monkeypatch, "04", pretrained_url=str(tmp_path / "nowhere.zip"))
    with pytest.raises(FileNotFoundError, match="no results archive at"):
        workflow.fetch_pretrained(missing)
