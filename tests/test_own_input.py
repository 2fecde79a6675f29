"""No command overwrites or feeds on its own input: an OUTPUT that is an input, lies inside an input folder or
contains one is refused in one line naming both options, before any work, and the input is left untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SCRATCH
from test_reliability import class_folder, one_line, run_cli


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of images, its embeddings, labels, and a run directory with an exported backbone."""
    import numpy as np

    from embedlab import cli, train

    root = tmp_path_factory.mktemp("own")
    images = class_folder(root / "images")
    assert cli.main(["embed", str(images), str(root / "e.pt"), "--model", "resnet18", "--weights", "random", "-q"]) == 0
    np.save(root / "x.npy", np.zeros((4, 8, 8, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.zeros(4, dtype=np.int64))
    options = {**SCRATCH, "layers": 1, "image_size": 16, "batch_size": 4, "epochs": 1, "progress": False}
    train(images, root / "run", knn_monitor=False, **options)
    return root


CASES = {
    "embed-npy-onto-itself": (["embed", "{r}/x.npy", "{r}/x.npy", "--model", "pca"], "x.npy"),
    "embed-onto-model": (["embed", "{r}/images", "{r}/run/exported/backbone.pt", "--model", "{r}/run"], "backbone.pt"),
    "embed-onto-labels": (["embed", "{r}/x.npy", "{r}/labels.npy", "--labels", "{r}/labels.npy"], "labels.npy"),
    "embed-folder-into-itself": (["embed", "{r}/images", "{r}/images"], "images"),
    "embed-shards-into-input": (["embed", "{r}/images", "{r}/images/shards", "--model", "resnet18"], "images"),
    "outliers-onto-embeddings": (["outliers", "{r}/e.pt", "--output", "{r}/e.pt"], "e.pt"),
    "duplicates-onto-embeddings": (["duplicates", "{r}/e.pt", "--output", "{r}/e.pt"], "e.pt"),
    "select-onto-embeddings": (["select", "{r}/e.pt", "--output", "{r}/e.pt"], "e.pt"),
    "classify-save-onto-backbone": (
        ["classify", "{r}/run", "{r}/images", "--save", "{r}/run/exported/backbone.pt"],
        "backbone.pt",
    ),
    "pack-onto-backbone": (["pack", "{r}/run", "--output", "{r}/run/exported/backbone.pt"], "backbone.pt"),
    "thumbnails-into-input": (["thumbnails", "{r}/images", "--output", "{r}/images/thumbs"], "images"),
    "train-into-data": (["train", "{r}/images", "{r}/images"], "images"),
    "train-into-a-class": (["train", "{r}/images", "{r}/images/a/run"], "images"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_command_never_writes_onto_or_into_its_input(capsys, made: Path, case: str) -> None:
    argv, named = CASES[case]
    before = {p: p.stat().st_mtime_ns for p in made.rglob("*") if p.is_file()}
    status, _, err = run_cli(capsys, *(a.format(r=made) for a in argv))
    line = one_line(err)
    assert status == 1 and named in line and ("is" in line or "inside" in line or "contains" in line), line
    assert {p: p.stat().st_mtime_ns for p in made.rglob("*") if p.is_file()} == before  # nothing written


def test_writing_beside_the_input_or_into_the_run_still_works(capsys, made: Path) -> None:
    """The check is not over-eager: embeddings of a run into that run's folder, a classifier saved in the run."""
    status, _, err = run_cli(
        capsys, "embed", made / "images", made / "run" / "embeddings" / "ssl.pt", "--model", made / "run", "-q"
    )
    assert status == 0, err
    status, _, err = run_cli(capsys, "outliers", made / "e.pt", "--output", made / "outliers.txt", "-q")
    assert status == 0, err
