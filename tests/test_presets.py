"""Presets inside the package: one line (`preset = "demo"`) switches a notebook; changed values win; the table of
notebook defaults that tells them apart stays in step with the notebooks."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from embedlab.course import params, presets
from embedlab.settings import ParameterError, TrainSettings

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


# ------------------------------------------------------------------------------ recipes follow the measurements
RESULTS = REPO / "benchmarks" / "results"
RECIPE_LINE = re.compile(r"^# recipe ([\w-]+): (.+)$", re.MULTILINE)
RECIPE_OPTIONS = ("method", "backbone", "init", "teacher", "teachers")


def _bench_recipes() -> dict[str, dict[str, object]]:
    """bench_quality's recipes by key (what each trains), read from the benchmark itself."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "benchmarks" / "bench_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {key: recipe["train"] for key, recipe in module.RECIPES.items()}


def _measured_knn() -> dict[str, float]:
    """kNN of each recipe bench_quality measured on the demo's 3,000 images, from the committed results: quality.json
    and the multi-teacher ablation (every variant read from the same output, the backbone)."""
    quality = json.loads((RESULTS / "quality.json").read_text())
    ablation = json.loads((RESULTS / "quality_pays_3k_ablation.json").read_text())
    assert quality["images"] == ablation["images"]
    knn = {row["key"]: row["knn"] for row in quality["rows"] if row["kind"] == "recipe"}
    return {**knn, **{key: row["knn"] for key, row in ablation["ablation_backbone_output"].items()}}


def test_train_defaults_to_the_best_measured_recipe() -> None:
    knn = _measured_knn()
    best = _bench_recipes()[max(knn, key=knn.__getitem__)]
    defaults = TrainSettings()
    assert {k: getattr(defaults, k) for k in RECIPE_OPTIONS if k in best} == {
        k: best[k] for k in RECIPE_OPTIONS if k in best
    }


@pytest.mark.parametrize("name", presets.preset_names())
def test_each_preset_says_in_one_line_why_its_recipe(name: str) -> None:
    """`# recipe <bench_quality key>: why` trains that measured recipe; `# recipe unmeasured: why` says so. Either
    cites a committed result and, unless it is the measured best, names the best."""
    knn, recipes = _measured_knn(), _bench_recipes()
    best = max(knn, key=knn.__getitem__)
    found = RECIPE_LINE.findall(presets.preset_path(name).read_text(encoding="utf-8"))
    assert len(found) == 1, f"{name}.yaml: one '# recipe <key>: why' line"
    key, why = found[0]
    cited = re.findall(r"benchmarks/results/[\w.-]+\.json", why)
    assert cited and all((REPO / path).is_file() for path in cited), why
    assert key == best or f"`{best}`" in why, f"{name}.yaml does not name the measured best, {best}"
    if key != "unmeasured":
        assert key in knn, f"{name}.yaml: {key} has no committed measurement"
        preset = presets.load_preset(name)
        assert {k: preset.get(k) for k in RECIPE_OPTIONS if k in recipes[key]} == {
            k: recipes[key][k] for k in RECIPE_OPTIONS if k in recipes[key]
        }
