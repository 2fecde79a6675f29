"""Every skip list names every skipped file: a subset made by prepare() (notebook 01), each embedding set's warning
and list, and the shards' skipped.json that their warning points to."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from test_reliability import class_folder, truncated_jpeg

from embedlab.datasets import DatasetWarning, ImageFolder, prepare

NOT_IMAGES = ["a/n0.jpg", "a/n1.png", "b/n2.jpg"]  # the header check refuses them
CUT = ["a/t0.jpg", "a/t1.jpg", "b/t2.jpg", "b/t3.jpg"]  # the header is fine, decoding fails


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 8 good images, 3 files that are not images and 4 truncated JPEGs."""
    root = class_folder(tmp_path_factory.mktemp("damaged") / "photos")
    for name in NOT_IMAGES:
        (root / name).write_bytes(b"not an image at all")
    for i, name in enumerate(CUT):
        truncated_jpeg(root / name, seed=i)
    return root


def _warned(caught: list[warnings.WarningMessage]) -> str:
    return " ".join(str(w.message) for w in caught if issubclass(w.category, DatasetWarning))


def test_a_subset_lists_the_files_it_was_made_without(damaged: Path, tmp_path: Path) -> None:
    subset = prepare(damaged, tmp_path / "data", limit=20, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = ImageFolder(subset)
    assert sorted(name for name, _ in images.skipped) == sorted(NOT_IMAGES)  # not "0 skipped"
    text = _warned(caught)
    assert all(name in text for name in NOT_IMAGES) and "e.g." not in text, text


def test_an_embedding_warning_and_list_name_every_skipped_file(damaged: Path, tmp_path: Path) -> None:
    from embedlab import cli

    out = tmp_path / "e.pt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["embed", str(damaged), str(out), "--model", "resnet18", "--weights", "random", "-q"]) == 0
    listed = json.loads((tmp_path / "e.skipped.json").read_text())
    assert sorted(e["filename"] for e in listed["skipped"]) == sorted(NOT_IMAGES + CUT)
    text = _warned(caught)
    assert all(name in text for name in CUT) and "e.g." not in text, text


def test_a_long_skip_list_is_counted_and_said_where_it_is(tmp_path: Path) -> None:
    from embedlab.datasets.errors import SHOWN_SKIPS

    root = class_folder(tmp_path / "photos", per_class=2)
    for i in range(SHOWN_SKIPS + 3):
        (root / "a" / f"bad{i:02d}.jpg").write_bytes(b"junk")
    with pytest.warns(DatasetWarning, match=r"and 3 more, all listed in \.skipped"):
        assert len(ImageFolder(root).skipped) == SHOWN_SKIPS + 3


def test_sharded_embedding_writes_the_skip_list_its_warning_points_to(damaged: Path, tmp_path: Path) -> None:
    from embedlab.embedding import embed_to_shards

    out = tmp_path / "shards"
    options = {"shard_size": 6, "weights": None, "image_size": 16, "progress": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embed_to_shards(damaged, "resnet18", out, **options)
    listed = json.loads((out / "skipped.json").read_text())
    assert listed["count"] == 7 and sorted(e["filename"] for e in listed["skipped"]) == sorted(NOT_IMAGES + CUT)
    assert str(out / "skipped.json") in _warned(caught)
    (out / "img_emb" / "img_emb_0000.npy").unlink()  # a rerun that repairs one shard still lists every file
    embed_to_shards(damaged, "resnet18", out, **options)
    again = json.loads((out / "skipped.json").read_text())
    assert sorted(e["filename"] for e in again["skipped"]) == sorted(NOT_IMAGES + CUT)


@pytest.mark.slow
def test_notebook_01_prints_the_true_skip_count_of_its_subset(damaged: Path, tmp_path: Path, monkeypatch) -> None:
    from test_damaged_notebooks import _run

    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    values = {"dataset": str(damaged), "run_dir": "runs/skips", "data_dir": "data", "limit_per_class": 20}
    notebook = _run("01_download_data", values, tmp_path)
    printed = "".join(
        out.get("text", "") for cell in notebook.cells if cell.get("id") == "01-06" for out in cell.get("outputs", [])
    )
    assert f"{len(NOT_IMAGES)} skipped" in printed, printed
