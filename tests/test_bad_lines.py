"""Bad values that used to exit 0, end in a traceback or a raw errno, or fail only after the work: each is now one
line naming the problem, given before any work (or, for a disk that fills, naming the folder and the rerun)."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from test_reliability import class_folder, one_line, run_cli

IMAGES = 16  # 2 classes x 8


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 16 images, their embeddings, a .npy of images and its labels as .npz."""
    from embedlab import cli

    root = tmp_path_factory.mktemp("bad")
    images = class_folder(root / "images")
    assert cli.main(["embed", str(images), str(root / "e.pt"), "--model", "resnet18", "--weights", "random", "-q"]) == 0
    np.save(root / "x.npy", np.zeros((4, 8, 8, 3), dtype=np.uint8))
    np.savez(root / "labels.npz", labels=np.zeros(4, dtype=np.int64))
    (root / "a-file").write_text("not a folder")
    return root


CASES = {
    "pca-with-a-bad-device": (["embed", "{r}/images", "{o}/p.pt", "--model", "pca", "--device", "foo"], "foo"),
    "neighbors-negative-index": (["neighbors", "{r}/e.pt", "-1"], "-1"),
    "dimensions-as-many-as-images": (
        ["embed", "{r}/images", "{o}/d.pt", "--model", "resnet18", "--weights", "random", "--dimensions", "16", "-q"],
        "--dimensions",
    ),
    "labels-as-npz": (["embed", "{r}/x.npy", "{o}/l.pt", "--model", "pca", "--labels", "{r}/labels.npz"], "--labels"),
    "run-dir-under-a-file": (["run", "tiny", "--run-dir", "{r}/a-file/run", "-q"], "--run-dir"),
    "umap-image-root-missing": (
        ["umap", "{r}/e.pt", "--output-dir", "{o}/u", "--image-root", "/nonexistent"],
        "--image-root",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_is_one_line_and_exit_1_before_any_work(capsys, made: Path, tmp_path: Path, monkeypatch, case):
    from embedlab import projection
    from embedlab.course import runner

    monkeypatch.setattr(projection.Projector, "fit", lambda *a, **k: pytest.fail("UMAP ran before the check"))
    monkeypatch.setattr(runner, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran before the check"))
    argv, named = CASES[case]
    status, _, err = run_cli(capsys, *(a.format(r=made, o=tmp_path) for a in argv))
    line = one_line(err)
    assert status == 1 and line.startswith("embedlab: error:") and named in line, line
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_read_only_run_dir_is_one_line_naming_it(capsys, made: Path, tmp_path: Path, monkeypatch) -> None:
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)  # the probe write of check_output (root ignores modes)
    status, _, err = run_cli(capsys, "run", "tiny", "--run-dir", tmp_path / "run", "-q")
    line = one_line(err)
    assert status == 1 and "--run-dir" in line and "Read-only" in line, line


def test_pca_never_keeps_a_zero_column(capsys, made: Path, tmp_path: Path) -> None:
    """16 centred images span at most 15 directions: a 16th component would be a column of zeros."""
    from embedlab.embedding import load_embeddings

    status, _, err = run_cli(capsys, "embed", made / "images", tmp_path / "p.pt", "--model", "pca", "-q")
    assert status == 0, err
    vectors = load_embeddings(tmp_path / "p.pt").numpy()
    assert vectors.shape == (IMAGES, IMAGES - 1) and (vectors.std(axis=0) > 1e-6).all()
    assert f"PCA kept {IMAGES - 1} components" in err


def test_a_disk_that_fills_while_sharding_is_one_line_naming_the_folder_and_the_rerun(
    capsys, made: Path, tmp_path: Path, monkeypatch
) -> None:
    real = np.save

    def full_disk(file, array, *args, **kwargs):
        if getattr(file, "name", "").endswith(".tmp"):  # a shard's vectors, written through atomic_open
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full_disk)
    out = tmp_path / "shards"
    argv = ["embed", made / "images", out, "--model", "resnet18", "--weights", "random", "--num-workers", "0", "-q"]
    status, _, err = run_cli(capsys, *argv)
    line = one_line(err)
    assert status == 1 and str(out) in line and "No space left" in line and "same command" in line, line
    monkeypatch.setattr(np, "save", real)
    assert run_cli(capsys, *argv)[0] == 0  # the rerun continues
