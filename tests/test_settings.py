"""The typed settings: checks per field, train()'s options and TrainSettings in step, notebook params, Drive paths."""

from __future__ import annotations

import types
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import SCRATCH

from embedlab.course import params
from embedlab.settings import (
    ALL_SETTINGS,
    CurationSettings,
    DataSettings,
    ParameterError,
    TrainSettings,
)


def test_train_takes_the_settings_object_or_keywords(tiny_data: Path, tmp_path: Path) -> None:
    """train(data, run, settings) and train(data, run, **options) are the same run; options change the settings."""
    from embedlab.training import train

    options = {**SCRATCH, "epochs": 1, "batch_size": 8, "image_size": 16, "layers": 1}
    settings = TrainSettings(**options, knn_monitor=False, progress=False)
    result = train(tiny_data, tmp_path / "a", settings, augment="grayscale")
    config = params.RunDir(tmp_path / "a").read_config()
    assert result.epochs == 1 and config["augment"] == "grayscale" and config["epochs"] == 1
    assert config["small_images"] is True and config["learning_rate"] == pytest.approx(0.06 * 8 / 128)
    with pytest.raises(ParameterError, match="unknown TrainSettings option"):
        train(tiny_data, tmp_path / "b", settings, epoch=2)


@pytest.mark.parametrize("cls", ALL_SETTINGS, ids=lambda c: c.__name__)
def test_defaults_are_valid_and_every_field_is_checked(cls: type) -> None:
    settings = cls()
    for f in fields(cls):
        assert f.metadata.get("check") is not None and f.metadata.get("help"), f"{cls.__name__}.{f.name}"
    assert settings.replace() == settings


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (TrainSettings, "epochs", 0),
        (TrainSettings, "batch_size", 1),
        (TrainSettings, "method", "simclrr"),
        (TrainSettings, "backbone", "vgg"),
        (TrainSettings, "small_images", "yes"),
        (TrainSettings, "min_scale", 1.5),
        (TrainSettings, "learning_rate", 0.0),
        (TrainSettings, "epochs", True),
        (TrainSettings, "num_workers", -1),
        (DataSettings, "dataset", "no-such-dataset"),
        (DataSettings, "limit_per_class", 0),
        (CurationSettings, "duplicate_threshold", 1.2),
        (CurationSettings, "classifier_mode", "frozn"),
        (CurationSettings, "classifier_images_per_class", 1),
        (CurationSettings, "subset_size", 0),
    ],
)
def test_bad_values_fail_with_the_parameter_named(cls: type, name: str, value: object) -> None:
    with pytest.raises(ParameterError, match=f"parameter '{name}'"):
        cls(**{name: value})


def test_known_names_come_from_the_registry() -> None:
    from embedlab.registry import BACKBONES, METHODS

    for method in METHODS:  # a registered method is accepted without touching the settings
        assert TrainSettings(method=method).method == method
    for backbone in BACKBONES:
        assert TrainSettings(backbone=backbone).backbone == backbone


def test_check_builds_typed_settings_per_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    namespace = {
        "run_dir": "runs/a",
        "dataset": "fashion-mnist",
        "epochs": 2,
        "image_size": 32,
        "max_train_minutes": 1.5,
        "seed": 4,
        "num_workers": 0,
        "sys": object(),
        "unrelated": 1,
    }
    p = params.check(namespace, "02")
    assert p.run.root == tmp_path / "runs" / "a"
    assert p.train.epochs == 2 and p.train.max_time == 90.0 and p.train.seed == 4 and p.data.seed == 4
    assert p.train_args == p.train.options() and p["image_size"] == 32
    assert "unrelated" not in p and "sys" not in p
    assert p.embed is None and p.data.dataset == "fashion-mnist"


def test_check_uses_train_if_missing_for_the_fallback_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    namespace = {
        "run_dir": "r",
        "train_if_missing": {"epochs": 1, "image_size": 32, "max_train_minutes": 2},
        "num_workers": 0,
        "seed": 7,
        "imagenet_model": "efficientnet_lite0",
    }
    p = params.check(namespace, "03")
    assert (p.train.epochs, p.train.image_size, p.train.max_time, p.train.seed) == (1, 32, 120.0, 7)
    assert p.train.num_workers == "auto"  # the loose num_workers belongs to embedding here
    assert p.embed.num_workers == 0 and p.embed.imagenet_model == "efficientnet_lite0"
    with pytest.raises(ParameterError, match="train_if_missing.*'epoch'"):
        params.check({**namespace, "train_if_missing": {"epoch": 1}}, "03")


def test_check_reports_bad_values_and_unknown_notebooks() -> None:
    with pytest.raises(ParameterError, match="parameter 'subset_size'"):
        params.check({"run_dir": "r", "subset_size": 0}, "06")
    with pytest.raises(ParameterError, match="parameter 'duplicate_threshold'"):
        params.check({"run_dir": "r", "duplicate_threshold": 2}, "06")
    with pytest.raises(ParameterError, match="unknown notebook"):
        params.check({"run_dir": "r"}, "07")


def _fake_colab(mounted: list[str]) -> dict[str, object]:
    def mount(path: str) -> None:
        mounted.append(path)
        (Path(path) / "MyDrive").mkdir(parents=True)

    return {"google.colab": types.ModuleType("google.colab"), "google.colab.drive": types.SimpleNamespace(mount=mount)}


def test_storage_base_mounts_drive_only_on_colab(tmp_path: Path) -> None:
    mounted: list[str] = []
    assert params.storage_base(True, modules={}, mount_point=tmp_path) is None  # not Colab: local disk
    assert params.storage_base(False, modules=_fake_colab(mounted), mount_point=tmp_path) is None
    base = params.storage_base(True, modules=_fake_colab(mounted), mount_point=tmp_path)
    assert base == tmp_path / "MyDrive" / "embedlab" and base.is_dir() and mounted == [str(tmp_path)]
    assert params.storage_base(True, modules=_fake_colab(mounted), mount_point=tmp_path) == base
    assert mounted == [str(tmp_path)]  # mounted once


def test_check_puts_the_run_and_thumbnails_on_drive_and_the_raw_images_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounted: list[str] = []
    fake = _fake_colab(mounted)
    real = params.storage_base
    monkeypatch.setattr(params, "storage_base", lambda use: real(use, modules=fake, mount_point=tmp_path / "drive"))
    drive = tmp_path / "drive" / "MyDrive" / "embedlab"
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path / "content"))
    p = params.check({"run_dir": "runs/a", "data_dir": "data", "use_drive": True, "dataset": "fashion-mnist"}, "01")
    assert p.run.root == drive / "runs" / "a" and p.data.data_dir == tmp_path / "content" / "data"
    assert p.thumbnail_dir(p.data.data_dir / "aid" / "raw") == drive / "thumbnails" / "aid-64"
    absolute = params.check({"run_dir": str(tmp_path / "elsewhere"), "use_drive": True}, "01")
    assert absolute.run.root == tmp_path / "elsewhere"  # an absolute path is kept as given


def test_cli_train_offers_every_train_setting() -> None:
    from embedlab.cli.parser import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # noqa: SLF001 - argparse has no public getter
    options = {a.dest for a in train._actions}  # noqa: SLF001
    assert set(TrainSettings.names()) - {"knn_monitor", "progress"} <= options  # those two: --no-knn, --quiet
    args = train.parse_args(["data", "run", "--max-steps", "7", "--freeze-bn", "true", "--init", "none"])
    settings = TrainSettings.from_mapping(vars(args))
    assert (settings.max_steps, settings.freeze_bn, settings.init) == (7, True, None)
    with pytest.raises(ParameterError, match="parameter 'epochs'"):
        TrainSettings.from_mapping(vars(train.parse_args(["data", "run", "--epochs", "2.5"])))


def test_settings_and_params_import_no_heavy_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, embedlab.settings, embedlab.course.params, embedlab.course.standalone; "
        "print(sorted(m for m in ('torch', 'lightly', 'umap', 'embedlab.training') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the CLI's --help and a notebook's parameter check stay instant


def test_setup_cell_versions_line_reads_like_no_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The setup cell prints versions; a runner extra that Colab does not install (papermill) is left out rather
    than printed as "not installed", which reads like an error there."""
    from importlib import metadata

    real = metadata.version

    def version(name: str) -> str:
        if name == "papermill":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    params.show_versions()
    out = capsys.readouterr().out
    assert "torch " in out and "papermill" not in out and "not installed" not in out
