"""Nothing from a results archive or any model file runs code: a `.pt`/`.ckpt` whose pickle carries a `__reduce__`
is refused in one line by every entry point that loads a model, a checkpoint or embeddings, and the code never
runs (a marker file it would create stays absent)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import SCRATCH, serve_folder
from test_reliability import class_folder, noise, one_line, run_cli

from embedlab import load_backbone, load_embeddings
from embedlab.models import BackboneLoadError


class _RunsCode:
    """Unpickling this calls os.system: what a hostile archive's backbone.pt would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code-ran"


def _hostile(path: Path, marker: Path, payload: str = "state") -> Path:
    """A file that looks like a backbone (or checkpoint) but runs `touch marker` when unpickled."""
    evil = _RunsCode(marker)
    obj: object = {"conv1.weight": torch.zeros(64, 3, 7, 7), "evil": evil}
    if payload == "checkpoint":
        obj = {"state_dict": {"backbone.conv1.weight": torch.zeros(1)}, "hyper_parameters": {"x": evil}}
    elif payload == "embeddings":
        obj = {"embeddings": torch.zeros(2, 3), "filenames": ["a/1.png", "a/2.png"], "meta": evil}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def test_the_hostile_file_really_runs_code_when_loaded_without_weights_only(tmp_path: Path, marker: Path) -> None:
    """The fixture is a real exploit: loading it the unsafe way creates the marker."""
    torch.load(_hostile(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_load_backbone_refuses_a_code_carrying_file_in_one_line(tmp_path: Path, marker: Path) -> None:
    for name, payload in (("backbone.pt", "state"), ("last.ckpt", "checkpoint")):
        with pytest.raises(BackboneLoadError, match="weights only") as caught:
            load_backbone(_hostile(tmp_path / name, marker, payload))
        assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_load_embeddings_refuses_a_code_carrying_file(tmp_path: Path, marker: Path) -> None:
    with pytest.raises(Exception) as caught:  # noqa: B017 - whatever the type, no code may run
        load_embeddings(_hostile(tmp_path / "emb.pt", marker, "embeddings"))
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_every_cli_command_that_loads_a_model_refuses_it(capsys, tmp_path: Path, marker: Path) -> None:
    folder = class_folder(tmp_path / "images")
    evil = _hostile(tmp_path / "exported" / "backbone.pt", marker)
    embeddings = tmp_path / "e.pt"
    status = run_cli(capsys, "embed", folder, embeddings, "--model", "resnet18", "--weights", "random", "-q")[0]
    assert status == 0
    new_image = tmp_path / "new.png"
    noise((20, 20), 7).save(new_image)
    for argv in (
        ["embed", folder, tmp_path / "out.pt", "--model", evil, "-q"],
        ["classify", evil, folder, "-q"],
        ["classify", tmp_path, folder, "-q"],  # a run directory: its exported/backbone.pt
        ["neighbors", embeddings, new_image, "--model", evil, "-q"],
    ):
        status, _, err = run_cli(capsys, *argv)
        assert status == 1 and "weights only" in one_line(err), (argv, err)
    assert not marker.exists()


def test_training_refuses_to_resume_from_a_code_carrying_checkpoint(tmp_path: Path, marker: Path) -> None:
    from embedlab import train
    from embedlab.training.errors import TrainingError

    folder = class_folder(tmp_path / "images")
    run = tmp_path / "run"
    _hostile(run / "checkpoints" / "last.ckpt", marker, "checkpoint")
    with pytest.raises(TrainingError, match="could run code"):
        train(folder, run, **SCRATCH, layers=1, image_size=16, batch_size=4, epochs=1, progress=False)
    assert not marker.exists()


def test_a_results_archive_with_a_hostile_backbone_runs_nothing(tmp_path: Path, marker: Path, monkeypatch) -> None:
    """The teacher-hands-out-an-archive path: pretrained_url unpacks it, the notebooks load its backbone."""
    from embedlab import embed
    from embedlab.course import params
    from embedlab.course import standalone as workflow

    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    archive = tmp_path / "results.zip"
    evil = _hostile(tmp_path / "made" / "backbone.pt", marker)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(evil, "exported/backbone.pt")
    with serve_folder(tmp_path) as base:
        p = params.check({"preset": "tiny", "run_dir": "runs/alone", "pretrained_url": f"{base}/results.zip"}, "03")
        exported = workflow.ensure_backbone(p)
    with pytest.raises(BackboneLoadError, match="weights only"):
        embed(class_folder(tmp_path / "images"), exported, progress=False)
    assert not marker.exists()
