"""The `embedlab` command: --help everywhere, one-line errors on bad input, and real runs on tiny data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedlab import cli
from embedlab.settings import CurationSettings, TrainSettings

COMMANDS = [
    "download",
    "thumbnails",
    "train",
    "embed",
    "umap",
    "compare",
    "select",
    "neighbors",
    "outliers",
    "duplicates",
    "classify",
    "run",
    "demo",
]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Call main(argv) in-process; return (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2)
        status = int(stop.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *needles: str) -> None:
    """A failed command prints exactly one `embedlab: error:` line naming the problem, never a traceback."""
    assert status == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("embedlab: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def images_npy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """36 tiny grayscale images in 3 classes (bright / dark / striped) as .npy, plus their labels."""
    rng = np.random.default_rng(0)
    base = np.zeros((3, 16, 16), dtype=np.float32)
    base[0] += 0.9
    base[1] += 0.1
    base[2, ::2] = 1.0
    labels = np.repeat(np.arange(3), 12)
    images = np.clip(base[labels] + 0.05 * rng.normal(size=(36, 16, 16)), 0, 1)
    folder = tmp_path_factory.mktemp("npy")
    np.save(folder / "images.npy", (images * 255).astype(np.uint8))
    np.save(folder / "labels.npy", labels)
    return folder / "images.npy", folder / "labels.npy"


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 images per class of the embedded fashion-mnist as an image folder."""
    from embedlab import datasets

    return datasets.prepare("fashion-mnist", tmp_path_factory.mktemp("data"), limit=6, progress=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys, command):
    status, out, _ = run_cli(capsys, command, "--help")
    assert status == 0
    assert out.startswith(f"usage: embedlab {command}")
    assert "--debug" in out


def test_top_level_help_lists_every_command_and_no_command_prints_help(capsys):
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0 and all(command in out for command in COMMANDS)
    status, out, _ = run_cli(capsys)
    assert status == 2 and "COMMAND" in out


def test_embed_help_documents_the_tool_options(capsys):
    _, out, _ = run_cli(capsys, "embed", "--help")
    for option in ("--model", "--dimensions", "--layers", "--compress", "--plot", "--seed", "a PCA to N"):
        assert option in " ".join(out.split()), option


def test_embed_pca_on_npy_with_plot_and_compress(capsys, tmp_path, images_npy):
    images, labels = images_npy
    output = tmp_path / "pixels.npz"
    status, out, err = run_cli(
        capsys,
        "embed",
        images,
        output,
        "--model",
        "pca",
        "--dimensions",
        "2",
        "--plot",
        "--compress",
        "--labels",
        labels,
        "-q",
    )
    assert status == 0, err
    assert "36 x 2" in out
    from embedlab.embedding import load_embeddings

    emb = load_embeddings(output)
    assert emb.vectors.shape == (36, 2) and emb.labels.tolist() == np.load(labels).tolist()
    assert emb.filenames[0] == "00" and emb.class_names == ["0", "1", "2"]
    plot = output.with_suffix(".png")
    assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG"
    import zipfile

    with zipfile.ZipFile(output) as archive:  # --compress really compresses
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())


def test_embed_float_npy_and_a_folder_with_pca(capsys, tmp_path, images_npy, image_folder):
    images, _ = images_npy
    floats = tmp_path / "floats.npy"
    np.save(floats, (np.load(images)[..., None] / 255.0).astype(np.float32))  # (N, H, W, 1) float in [0, 1]
    status, out, err = run_cli(capsys, "embed", floats, tmp_path / "f.pt", "--model", "pca", "--dimensions", "4", "-q")
    assert status == 0 and "36 x 4" in out, err
    status, out, err = run_cli(
        capsys, "embed", image_folder, tmp_path / "folder.pt", "--model", "pca", "--dimensions", "8", "-q"
    )
    assert status == 0 and "60 x 8" in out, err


def test_embed_with_a_backbone_then_pca_dimensions(capsys, tmp_path, images_npy):
    images, labels = images_npy
    output = tmp_path / "cnn.npy"
    status, out, err = run_cli(
        capsys,
        "embed",
        images,
        output,
        "--model",
        "resnet18",
        "--weights",
        "random",
        "--layers",
        "1",
        "--image-size",
        "32",
        "--dimensions",
        "5",
        "--labels",
        labels,
        "-q",
    )
    assert status == 0 and "36 x 5" in out, err
    from embedlab.embedding import load_embeddings

    emb = load_embeddings(output)
    assert emb.meta["embedding_dim_before_pca"] == 64 and emb.meta["pca_dimensions"] == 5


@pytest.fixture(scope="module")
def folder_embeddings(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> tuple[Path, Path]:
    """Two embedding sets of the same labeled folder (PCA 8 and PCA 16)."""
    folder = tmp_path_factory.mktemp("emb")
    for dims in (8, 16):
        assert (
            cli.main(
                [
                    "embed",
                    str(image_folder),
                    str(folder / f"pca{dims}.pt"),
                    "--model",
                    "pca",
                    "--dimensions",
                    str(dims),
                    "-q",
                ]
            )
            == 0
        )
    return folder / "pca8.pt", folder / "pca16.pt"


def test_select_writes_a_diverse_subset(capsys, tmp_path, folder_embeddings):
    listing = tmp_path / "subset.txt"
    status, _, err = run_cli(capsys, "select", folder_embeddings[0], "--subset-size", "7", "--output", listing)
    assert status == 0, err
    names = listing.read_text().split()
    assert len(names) == 7 == len(set(names)) and all("/" in name for name in names)
    assert "cover" in err
    status, out, _ = run_cli(capsys, "select", folder_embeddings[0], "--subset-size", "7", "-q")
    assert out.split() == names  # deterministic, stdout by default


def test_compare_prints_and_saves_a_table(capsys, tmp_path, folder_embeddings):
    table = tmp_path / "metrics.csv"
    status, out, err = run_cli(capsys, "compare", *folder_embeddings, "--knn-k", "5", "--output", table)
    assert status == 0, err
    assert "pca8" in out and "pca16" in out and "knn" in out.lower()
    import pandas as pd

    saved = pd.read_csv(table)
    assert sorted(saved["name"]) == ["pca16", "pca8"] and saved.filter(like="knn").to_numpy().max() > 0.1


def test_neighbors_outliers_duplicates(capsys, folder_embeddings):
    emb_path = folder_embeddings[0]
    from embedlab.embedding import load_embeddings

    emb = load_embeddings(emb_path)
    status, out, err = run_cli(capsys, "neighbors", emb_path, emb.filenames[3], "--neighbors-k", "3")
    assert status == 0, err
    assert emb.filenames[3] not in out and len(out.strip().splitlines()) == 4  # header + 3 rows
    status, out, _ = run_cli(capsys, "neighbors", emb_path, "3", "--neighbors-k", "3")
    assert status == 0 and len(out.strip().splitlines()) == 4
    status, out, _ = run_cli(capsys, "outliers", emb_path, "--n", "4", "-q")
    scores = [float(line.split("\t")[0]) for line in out.strip().splitlines()]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    status, out, _ = run_cli(capsys, "duplicates", emb_path, "--duplicate-threshold", "1.0", "-q")
    assert status == 0 and out.strip() == ""  # no two fashion-mnist images are identical


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["embed", "{tmp}/missing.npy", "{tmp}/out.pt"], ["not found", "missing.npy"]),
        (["embed", "{tmp}/nowhere", "{tmp}/out.pt"], ["nowhere", "neither a dataset name"]),
        (["embed", "{labels}", "{tmp}/out.pt"], ["shape (36,)", "(N, H, W)"]),
        (["embed", "{images}", "{tmp}/out.csv"], ["must end in .pt, .npy or .npz"]),
        (["embed", "{images}", "{tmp}/out.pt", "--compress"], [".npz"]),
        (["embed", "{images}", "{tmp}/out.pt", "--model", "vgg99"], ["vgg99"]),
        (["embed", "{images}", "{tmp}/out.pt", "--model", "pca", "--layers", "2"], ["--layers"]),
        (
            [
                "embed",
                "{images}",
                "{tmp}/out.pt",
                "--model",
                "resnet18",
                "--weights",
                "random",
                "--layers",
                "1",
                "--image-size",
                "16",
                "--dimensions",
                "500",
                "-q",
            ],
            ["--dimensions 500"],
        ),
        (["embed", "{folder}", "{tmp}/out.pt", "--labels", "{labels}"], ["--labels"]),
        (["select", "{tmp}/none.pt", "--subset-size", "3"], ["not found", "none.pt"]),
        (["select", "{emb}", "--subset-size", "999"], ["n=999", "60"]),
        (["neighbors", "{emb}", "Nope/none.png"], ["Nope/none.png"]),
        (["neighbors", "{emb}", "600"], ["out of range"]),
        (["compare", "{tmp}/a.pt"], ["a.pt"]),
        (["compare", "{images}"], ["embeddings", "images.npy"]),
        (["duplicates", "{emb}", "--duplicate-threshold", "3"], ["--duplicate-threshold", "got 3"]),
        (["embed", "{images}", "{tmp}/out.pt", "--embed-batch-size", "0"], ["--embed-batch-size", "got 0"]),
        (["umap", "{emb}", "--projection", "mds"], ["--projection", "'mds'"]),
        (["train", "{folder}", "{tmp}/run", "--epochs", "2.5"], ["--epochs", "got 2.5"]),
        (["classify", "{tmp}", "{folder}", "--classifier-mode", "all"], ["--classifier-mode"]),
        (["download", "fashion-mnist", "--limit-per-class", "0"], ["--limit-per-class"]),
        (["train", "{tmp}/nowhere", "{tmp}/run"], ["nowhere"]),
        (["classify", "{tmp}", "{folder}"], ["exported", "backbone.pt"]),
        (["thumbnails", "{tmp}/nowhere"], ["nowhere"]),
        (["download", "imagenet-22k"], ["imagenet-22k"]),
        (["run", "-p", "epochs"], ["NAME=VALUE"]),
        (["run", "-p", "a", "b", "c"], ["NAME=VALUE", "a b c"]),
    ],
)
def test_bad_input_is_one_clear_line(capsys, tmp_path, images_npy, image_folder, folder_embeddings, argv, needles):
    images, labels = images_npy
    values = {"tmp": tmp_path, "images": images, "labels": labels, "folder": image_folder, "emb": folder_embeddings[0]}
    status, _, err = run_cli(capsys, *[a.format(**values) for a in argv])
    assert_one_line_error(status, err, *needles)


def test_bad_numbers_are_refused_by_the_settings_naming_their_range(capsys, images_npy):
    status, _, err = run_cli(capsys, "embed", images_npy[0], "x.pt", "--model", "pca", "--dimensions", "0")
    assert status == 1 and "--dimensions" in err and "from 1 to 4096" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    from embedlab.curation import CurationError

    with pytest.raises(FileNotFoundError):
        cli.main(["select", str(tmp_path / "none.pt"), "--debug"])
    assert issubclass(CurationError, ValueError)  # our own errors are caught at the top like ValueError


def test_console_script_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "embedlab.cli", "select", str(tmp_path / "x.pt"), "--subset-size", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("embedlab: error: embeddings file not found")
    assert "Traceback" not in result.stderr


def test_run_and_demo_call_the_pipeline_with_the_parameters(capsys, monkeypatch, tmp_path):
    from embedlab.course import runner as pipeline

    calls = []

    def fake_run_pipeline(params, *, run_dir=None, notebooks=None, overrides=None, progress=True):
        calls.append((params, run_dir, notebooks, overrides))
        return tmp_path / "index.html"

    monkeypatch.setattr(pipeline, "run_pipeline", fake_run_pipeline)
    status, out, _ = run_cli(
        capsys,
        "run",
        "--params",
        "classroom",
        "--run-dir",
        "runs/x",
        "--notebooks",
        "00",
        "03",
        "-p",
        "epochs=3",
        "-p",
        "init=null",
        "-p",
        "dataset=eurosat",
    )
    assert status == 0 and "index.html" in out
    assert calls[-1] == ("classroom", "runs/x", ["00", "03"], {"epochs": 3, "init": None, "dataset": "eurosat"})
    status, _, _ = run_cli(capsys, "demo")
    assert status == 0 and calls[-1] == ("demo", None, None, None)
    # the README's spelling: a positional set, --only 03,04, -p NAME VALUE
    status, _, err = run_cli(capsys, "run", "tiny", "--only", "03,04", "-p", "epochs", "80", "-p", "min_scale=0.5")
    assert status == 0 and calls[-1] == ("tiny", None, ["03", "04"], {"epochs": 80, "min_scale": 0.5}), err
    assert run_cli(capsys, "run", "classroom", "-p", "seed", "none", "-q")[0] == 0
    assert calls[-1] == ("classroom", None, None, {"seed": None})


def test_train_thumbnails_download_classify_pass_valid_arguments(capsys, monkeypatch, tmp_path, image_folder):
    """The wrappers call the package functions with arguments their real signatures accept."""
    import inspect
    from types import SimpleNamespace

    from embedlab import classifier, datasets, training

    seen = {}

    def checked(module, name, result):
        real = getattr(module, name)

        def fake(*args, **kwargs):
            inspect.signature(real).bind(*args, **kwargs)  # TypeError if the CLI drifted from the API
            seen[name] = kwargs
            return result

        monkeypatch.setattr(module, name, fake)

    checked(
        training,
        "train",
        SimpleNamespace(
            epochs=1,
            seconds=2.0,
            images_per_second=3.0,
            final_loss=4.0,
            checkpoint=tmp_path / "c.ckpt",
            exported=tmp_path / "b.pt",
        ),
    )
    checked(
        datasets,
        "make_thumbnails",
        SimpleNamespace(out_root=tmp_path, written=5, skipped=0, failed=[], images_per_second=9.0),
    )
    checked(classifier, "train_classifier", SimpleNamespace(summary=lambda: "frozen classifier: test accuracy 0.5"))
    status, out, err = run_cli(
        capsys,
        "train",
        image_folder,
        tmp_path / "run",
        "--epochs",
        "3",
        "--small-images",
        "true",
        "--devices",
        "2",
        "--no-knn",
        "-q",
    )
    assert status == 0 and "final loss 4.000" in out, err
    settings = seen["train"]["settings"]  # one TrainSettings, built and checked from the options
    assert (settings.epochs, settings.small_images, settings.devices, settings.knn_monitor) == (3, True, 2, False)
    assert settings.batch_size == TrainSettings().batch_size  # options not given: the settings' defaults
    status, out, err = run_cli(capsys, "thumbnails", image_folder, "--thumbnail-size", "16", "-q")
    assert status == 0 and "5 written" in out, err
    status, out, err = run_cli(
        capsys, "classify", tmp_path, image_folder, "--classifier-mode", "finetune", "--classifier-epochs", "1", "-q"
    )
    assert status == 0 and "test accuracy" in out and seen["train_classifier"]["mode"] == "finetune", err
    assert seen["train_classifier"]["batch_size"] == CurationSettings().classifier_batch_size
    status, out, err = run_cli(capsys, "download", image_folder, "-q")  # a folder: validated, root printed
    assert status == 0 and out.strip() == str(image_folder), err


def test_umap_command_writes_points_figure_and_interactive_html(capsys, tmp_path, folder_embeddings, image_folder):
    out = tmp_path / "maps"
    status, stdout, err = run_cli(
        capsys,
        "umap",
        folder_embeddings[0],
        "--projection",
        "pca",
        "--image-root",
        image_folder,
        "--output-dir",
        out,
        "-q",
    )
    assert status == 0, err
    points = np.load(out / "pca8-pca.npy")
    assert points.shape == (60, 2) and np.isfinite(points).all()
    assert (out / "pca8-pca.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "pca8-pca.html").read_text(encoding="utf-8")
    assert "Bokeh" in html and "data:image/jpeg;base64," in html
    assert str(out / "pca8-pca.html") in stdout


def test_options_that_are_settings_come_from_the_settings(capsys, monkeypatch, folder_embeddings):
    """Every option named like a settings field is generated from it: its default is the settings' default."""
    import argparse

    from embedlab import curation
    from embedlab.settings import parse_text

    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    generated = 0
    for name, sub in commands.items():
        for fields in (sub.get_default("settings_fields") or {}).values():
            for action in sub._actions:
                if action.dest in fields:
                    assert action.type is parse_text and action.default is argparse.SUPPRESS, (name, action.dest)
                    generated += 1
    assert generated >= 40
    seen = {}
    monkeypatch.setattr(curation, "near_duplicates", lambda emb, **kw: seen.update(kw) or [])
    status, _, err = run_cli(capsys, "duplicates", folder_embeddings[0], "-q")
    assert status == 0 and seen["threshold"] == CurationSettings().duplicate_threshold == 0.97, err


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["thumbnails", "fashion-mnist", "--size", "32"], "thumbnail_size", 32),
        (["compare", "a.pt", "--k", "5"], "knn_k", 5),
        (["duplicates", "a.pt", "--threshold", "0.9"], "duplicate_threshold", 0.9),
        (["umap", "a.pt", "--method", "pca", "--min-dist", "0.2"], "projection", "pca"),
        (["classify", "run", "data", "--mode", "finetune"], "classifier_mode", "finetune"),
    ],
)
def test_short_option_spellings_still_work(argv: list[str], dest: str, value: object) -> None:
    """Each generated option also takes the command's short spelling declared with its setting (`--k`, `--size`)."""
    from embedlab.cli.parser import build_parser

    assert getattr(build_parser().parse_args(argv), dest) == value


def test_pack_writes_the_results_archive_and_refuses_a_run_without_a_model(capsys, tmp_path: Path) -> None:
    """`embedlab pack RUN_DIR` writes RUN_DIR/results.zip; a run without an exported model is one line, status 1."""
    import zipfile

    from embedlab import create_backbone, export_backbone

    run = tmp_path / "run"
    export_backbone(create_backbone("resnet18", None, layers=1), run / "exported" / "backbone.pt")
    assert cli.main(["pack", str(run)]) == 0
    assert "exported/backbone.pt" in zipfile.ZipFile(run / "results.zip").namelist()
    assert "results archive:" in capsys.readouterr().out
    assert cli.main(["pack", str(tmp_path / "empty")]) == 1
    assert "no exported/backbone.pt" in capsys.readouterr().err
