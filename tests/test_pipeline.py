"""Tests for embedlab.course.params and embedlab.course.runner: parameter checks, the verdict sentence, and the whole
pipeline run with tiny.yaml through papermill into a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from embedlab.cli import main as cli_main
from embedlab.course.params import MissingInputError, ParameterError, resolve_path, validate_params
from embedlab.course.report import save_metrics
from embedlab.course.runner import (
    PipelineError,
    execute_notebook,
    load_params,
    notebooks_dir,
    pipeline_notebooks,
    run_pipeline,
    write_index,
)
from embedlab.rundir import RunDir


# ------------------------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize(
    "name, value, message",
    [
        ("dataset", "imagenet-21k", "parameter 'dataset': unknown dataset 'imagenet-21k'"),
        ("epochs", -1, "parameter 'epochs': expected an integer from 1 to 100000, got -1"),
        ("epochs", "5", "parameter 'epochs': expected an integer from 1 to 100000, got '5' (str)"),
        ("epochs", True, "parameter 'epochs'"),
        ("batch_size", 2.5, "parameter 'batch_size'"),
        ("limit_per_class", 0, "parameter 'limit_per_class'"),
        ("learning_rate", 0, "parameter 'learning_rate': expected a finite number > 0 and <= 10 or None"),
        ("backbone", "vgg16", "parameter 'backbone': expected one of 'resnet18'"),
        ("small_images", "yes", "parameter 'small_images'"),
        ("augment", "medical", "parameter 'augment'"),
        ("run_dir", "", "parameter 'run_dir': expected a non-empty string"),
        ("imagenet_model", None, "parameter 'imagenet_model'"),
    ],
)
def test_bad_parameters_name_the_parameter(name: str, value: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_params(**{name: value})


def test_good_parameters_and_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    folder = tmp_path / "my_images"
    folder.mkdir()
    p = validate_params(
        dataset="my_images",
        run_dir="runs/x",
        data_dir=str(tmp_path / "abs"),
        epochs=3,
        limit_per_class=None,
        learning_rate=1,
        small_images="auto",
        extra_name=[1],
    )
    assert p["dataset"] == str(folder) and p["run_dir"] == tmp_path / "runs" / "x"
    assert p["data_dir"] == tmp_path / "abs" and p["learning_rate"] == 1.0 and p["extra_name"] == [1]
    assert validate_params(dataset="aid")["dataset"] == "aid"
    monkeypatch.delenv("EMBEDLAB_ROOT")
    monkeypatch.chdir(notebooks_dir())  # as under nbmake: relative paths still resolve to the repository root
    assert resolve_path("runs/nbmake") == notebooks_dir().parent / "runs" / "nbmake"


def test_missing_inputs_name_the_notebook_that_makes_them(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(MissingInputError, match="run notebooks/01_download_data.ipynb first"):
        run.dataset_root()
    with pytest.raises(MissingInputError, match=r"embeddings/ssl.pt: run notebooks/03_embed_images.ipynb"):
        run.require(run.embedding("ssl"), made_by="03_embed_images")
    images = tmp_path / "ds" / "raw"
    (images / "a").mkdir(parents=True)
    (images / "a" / "1.png").write_bytes(b"x")
    run.record_dataset(images, dataset="ds", thumbnail_size=64)
    assert run.dataset_root() == images and run.image_root(32) == images  # no thumbnails yet -> raw
    (tmp_path / "ds" / "thumbnails-64" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "thumbnails-64" / "a" / "1.png").write_bytes(b"y")
    assert run.image_root(32) == tmp_path / "ds" / "thumbnails-64" and run.image_root(128) == images


# ------------------------------------------------------------------------------------------------ verdict
SSL = "SimCLR continued from ImageNet, EfficientNet-Lite0, 32 px"


def _row(name: str, recipe: str, kind: str, size: int, knn: float, probe: float) -> dict:
    return {
        "name": name,
        "recipe": recipe,
        "kind": kind,
        "image_size": size,
        "knn_accuracy": knn,
        "linear_probe_accuracy": probe,
        "cluster_nmi": 0.5,
    }


def _table(
    ssl: tuple[float, float],
    imagenet: tuple[float, float],
    random: float = 0.3,
    small_imagenet: tuple[float, float] = (0.5, 0.5),
) -> pd.DataFrame:
    rows = [
        _row("ssl", SSL, "self-supervised", 32, *ssl),
        _row("imagenet", "ImageNet weights (no training), EfficientNet-Lite0, 112 px", "ImageNet", 112, *imagenet),
        _row(
            "imagenet-32", "ImageNet weights (no training), EfficientNet-Lite0, 32 px", "ImageNet", 32, *small_imagenet
        ),
        _row("random", "random init (no training), EfficientNet-Lite0, 32 px", "floor", 32, random, random),
    ]
    return pd.DataFrame(rows)


# the verdict itself: tests/test_report.py


def test_metrics_and_index_without_a_run(tmp_path: Path) -> None:
    save_metrics(tmp_path / "metrics.json", _table((0.8, 0.8), (0.7, 0.7)), "verdict <b>", knn_k=5)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["knn_k"] == 5 and metrics["comparison"][0]["name"] == "ssl"
    assert metrics["best"] == "ssl" and metrics["strongest_baseline"] == "imagenet"
    assert metrics["comparison"][1] == {**metrics["comparison"][1], "image_size": 112, "kind": "ImageNet"}
    index = write_index(tmp_path).read_text()
    assert "verdict &lt;b&gt;" in index and "<td>0.800</td>" in index


# ------------------------------------------------------------------------------------------------ pipeline
def test_parameter_sets_and_overrides_fail_before_running(tmp_path: Path) -> None:
    assert load_params("tiny")["epochs"] == 1
    with pytest.raises(PipelineError, match="no parameter set 'nope'"):
        load_params("nope")
    with pytest.raises(ParameterError, match="unknown parameter\\(s\\) 'epoch'"):
        run_pipeline("tiny", run_dir=tmp_path, overrides={"epoch": 3})
    with pytest.raises(ParameterError, match="parameter 'epochs'"):
        run_pipeline("tiny", run_dir=tmp_path, overrides={"epochs": -2})
    assert [p.name[:2] for p in pipeline_notebooks(["03", "04"])] == ["03", "04"]
    assert cli_main(["run", "tiny", "--run-dir", str(tmp_path), "-p", "dataset", "nope", "--quiet"]) == 1
    assert not (tmp_path / "notebooks").exists()  # nothing ran


def test_an_interrupted_run_leaves_nothing_of_the_previous_run_that_describes_another_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped in notebook 03 (after 02 made a new model) must not leave the previous run's "ssl" embeddings,
    metrics, index page and results archive beside the new backbone; ImageNet's embeddings do not depend on it."""
    from embedlab.course import runner

    run = RunDir(tmp_path / "run")
    previous = [run.embedding("ssl"), run.embedding("imagenet"), run.metrics, run.index_page, run.results_archive]
    for path in previous:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the previous run")

    def stopped_in_03(notebook: Path, *args: object, **kwargs: object) -> None:
        if notebook.name.startswith("03"):
            raise KeyboardInterrupt("stopped")

    monkeypatch.setattr(runner, "execute_notebook", stopped_in_03)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline("tiny", run_dir=run.root, progress=False)
    assert [path.exists() for path in previous] == [False, True, False, False, False]

    for path in (run.index_page, run.results_archive, run.embedding("ssl"), run.metrics):
        path.write_text("the previous run")
    with pytest.raises(KeyboardInterrupt):  # only 03-04: the model and its metrics stay, the summary pages go
        run_pipeline("tiny", run_dir=run.root, notebooks=["03", "04"], progress=False)
    assert run.embedding("ssl").exists() and run.metrics.exists()
    assert not run.index_page.exists() and not run.results_archive.exists()


def test_bad_parameter_fails_in_the_parameters_step_through_papermill(tmp_path: Path) -> None:
    notebook = notebooks_dir() / "01_download_data.ipynb"
    with pytest.raises(PipelineError) as info:
        execute_notebook(
            notebook,
            tmp_path / "out.ipynb",
            {"dataset": "no-such-dataset", "run_dir": str(tmp_path)},
            cwd=tmp_path,
            progress=False,
        )
    message = str(info.value)
    assert "notebook 01_download_data.ipynb failed" in message
    assert "ParameterError: parameter 'dataset': unknown dataset 'no-such-dataset'" in message
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    failing = [c for c in executed["cells"] if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failing) == 1 and "params.check(globals()" in "".join(failing[0]["source"])


def test_command_line_overrides(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen = {}
    monkeypatch.setattr(
        "embedlab.course.runner.run_pipeline", lambda params, **kw: seen.update(params=params, **kw) or "i"
    )
    assert cli_main(["run", "tiny", "-p", "epochs", "3", "-p", "init=null", "--only", "03,04", "--run-dir", "r"]) == 0
    assert seen["overrides"] == {"epochs": 3, "init": None} and seen["notebooks"] == ["03", "04"]
    assert seen["params"] == "tiny" and seen["run_dir"] == "r"
    assert cli_main(["run", "tiny", "-p", "epochs"]) == 1  # the same command as `embedlab run`: one line, status 1
    assert "embedlab: error: -p expects NAME=VALUE or NAME VALUE" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole pipeline with tiny.yaml, executed once through papermill (about 2-4 minutes on 2 busy cores)."""
    base = tmp_path_factory.mktemp("pipeline")
    index = run_pipeline(
        "tiny",
        run_dir=base / "run",
        overrides={"data_dir": str(base / "data")},
        progress=False,
        notebooks=["01", "02", "03", "04", "05"],
    )  # 06 runs under nbmake; this keeps the test short
    assert index == base / "run" / "index.html"
    return base / "run"


@pytest.mark.slow
def test_tiny_pipeline_writes_every_result(tiny_run: Path) -> None:
    for rel in ("checkpoints/last.ckpt", "exported/backbone.pt", "metrics.json", "index.html", "pipeline.json"):
        assert (tiny_run / rel).is_file(), rel
    assert {p.stem for p in (tiny_run / "embeddings").glob("*.pt")} >= {"ssl", "imagenet", "random", "pca"}
    assert {p.stem for p in (tiny_run / "umap").glob("*.npy")} >= {"ssl", "imagenet", "random", "pca"}
    figures = {p.stem for p in (tiny_run / "figures").glob("*.png")}
    assert {
        "samples_per_class",
        "augmented_pairs",
        "loss_curve",
        "umap_ssl",
        "compare_umap",
        "compare_metrics",
        "quality_cost",
        "label_efficiency",
    } <= figures
    assert {p.stem for p in (tiny_run / "interactive").glob("*.html")} >= {"ssl", "imagenet"}
    executed = sorted(p.name[:2] for p in (tiny_run / "notebooks").glob("*.ipynb"))
    assert executed[:5] == ["01", "02", "03", "04", "05"]
    saved = torch.load(tiny_run / "embeddings" / "ssl.pt", weights_only=True)
    assert len(saved["filenames"]) == 200 and saved["embeddings"].shape[0] == 200


@pytest.mark.slow
def test_tiny_pipeline_metrics_are_sane_and_indexed(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    rows = {r["name"]: r for r in metrics["comparison"]}
    assert set(rows) >= {"ssl", "imagenet", "random", "pca"}
    assert rows["ssl"]["knn_accuracy"] > 0.1  # above chance for 10 classes, even after one tiny epoch
    assert all(0.0 <= r["knn_accuracy"] <= 1.0 and 0.0 <= r["linear_probe_accuracy"] <= 1.0 for r in rows.values())
    assert metrics["verdict"].startswith("**On this data")
    assert {"knn_low", "knn_high", "probe_low", "probe_high"} <= set(rows["ssl"])  # 95% bootstrap intervals
    assert any(p["a"] == "ssl" for p in metrics["paired"])  # paired differences behind the verdict's ties
    curves = metrics["label_efficiency"]  # what a few labels buy: the trained row and the strongest baselines
    assert len(curves) >= 2 and all(c and c[0]["labels_per_class"] == 1 for c in curves.values())
    assert all(r["images_per_second"] for r in metrics["comparison"] if r["kind"] in ("self-supervised", "ImageNet"))
    index = (tiny_run / "index.html").read_text()
    for link in ("notebooks/02_train_embedding_model.html", "interactive/ssl.html", "metrics.json"):
        assert f"href='{link}'" in index
    assert index.count("data:image/jpeg;base64,") >= 6  # figure thumbnails inline
    assert (tiny_run / "notebooks" / "05_compare_with_imagenet.html").stat().st_size > 10_000


@pytest.mark.slow
def test_make_site_builds_the_course_from_the_tiny_runs_executed_notebooks(tiny_run: Path, tmp_path: Path) -> None:
    """`make site` (data_scripts/make_site.py): MkDocs + mkdocs-jupyter, strict, offline, with the outputs."""
    pytest.importorskip("mkdocs_jupyter", reason="the `site` extra is not installed (make venv installs it)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_site", notebooks_dir().parent / "data_scripts" / "make_site.py")
    make_site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_site)
    index = make_site.build(tiny_run, tmp_path / "site")
    assert index.is_file() and "does training on your own" in index.read_text(encoding="utf-8")
    page = (tmp_path / "site" / "notebooks" / "05_compare_with_imagenet.html").read_text(encoding="utf-8")
    assert "Against the strongest baseline" in page  # the executed verdict, an output of the tiny run
    assert "data:image/png" in page  # its figures are embedded
    train = (tmp_path / "site" / "notebooks" / "02_train_embedding_model.html").read_text(encoding="utf-8")
    assert train.count("data:image/png") >= 3  # the diagrams (attachments) and the run's figures
    assert (tmp_path / "site" / "docs" / "glossary.html").is_file()
    assert not (tmp_path / "site" / "docs" / "answers.html").exists()  # the teacher's key stays out
