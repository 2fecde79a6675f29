"""Presets inside the package: one line (`preset = "demo"`) switches a notebook; changed values win; the table of
notebook defaults that tells them apart stays in step with the notebooks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from embedlab.course import params, presets
from embedlab.settings import ParameterError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _defaults(notebook: str) -> dict[str, object]:
    return dict(presets.notebook_defaults()[notebook])


def test_every_shipped_preset_loads_and_says_what_it_is_for() -> None:
    assert {"demo", "classroom", "full", "tiny"} <= set(presets.preset_names())
    for name in presets.preset_names():
        assert presets.load_preset(name) and presets.describe(name)


def test_notebook_defaults_table_matches_the_notebooks() -> None:
    sys.path.insert(0, str(REPO / "data_scripts"))
    from stamp_notebooks import defaults_table

    assert json.loads(defaults_table(NOTEBOOKS)) == presets.notebook_defaults(), "run `make strip`"


def test_a_preset_replaces_the_notebooks_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    p = params.check({**_defaults("02"), "preset": "demo"}, "02")
    demo = presets.load_preset("demo")
    assert (p.data.dataset, p.train.backbone, p.train.init) == (demo["dataset"], demo["backbone"], demo["init"])
    assert p.run.root == tmp_path / demo["run_dir"] and p.train.max_time == 60 * demo["max_train_minutes"]


def test_a_value_the_learner_changed_wins_over_the_preset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    p = params.check({**_defaults("02"), "preset": "demo", "epochs": 3, "run_dir": "runs/mine"}, "02")
    assert p.train.epochs == 3 and p.run.root == tmp_path / "runs" / "mine"
    assert p.train.backbone == presets.load_preset("demo")["backbone"]


def test_notebooks_that_train_only_when_needed_take_the_presets_recipe(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDLAB_ROOT", str(tmp_path))
    p = params.check({**_defaults("03"), "preset": "demo"}, "03")
    demo = presets.load_preset("demo")
    assert (p.train.backbone, p.train.max_steps, p.embed.imagenet_model) == (
        demo["backbone"],
        demo["max_steps"],
        demo["imagenet_model"],
    )


def test_an_unknown_preset_is_one_line_naming_the_parameter() -> None:
    with pytest.raises(ParameterError, match="parameter 'preset'.*no parameter set 'dem0'.*demo"):
        params.check({**_defaults("01"), "preset": "dem0"}, "01")
