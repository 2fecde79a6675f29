"""Static checks of the notebooks: stripped, stamped, same skeleton, literal parameters with a tiny nbmake mock."""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from embedlab.course import params
from embedlab.course.params import validate_params
from embedlab.course.runner import declared_parameters, pipeline_notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OWN = [nb for nb in NOTEBOOKS if nb.name[:2] in {"00", "01", "02", "03", "04", "05"}]
PARAM_SETS = sorted((REPO / "src" / "embedlab" / "course" / "presets").glob("*.yaml"))
MAX_CELL_LINES = 12


def _stamp_module():
    spec = importlib.util.spec_from_file_location("stamp_notebooks", REPO / "data_scripts" / "stamp_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _params_cell(nb: dict) -> tuple[int, dict]:
    found = [(i, c) for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, "exactly one cell must be tagged 'parameters'"
    return found[0]


def test_all_seven_notebooks_present() -> None:
    names = [nb.name for nb in OWN]
    assert names == [
        "00_quickstart.ipynb",
        "01_download_data.ipynb",
        "02_train_embedding_model.ipynb",
        "03_embed_images.ipynb",
        "04_visualize_umap.ipynb",
        "05_compare_with_imagenet.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stripped_and_stamped(path: Path) -> None:
    nb = _load(path)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: run `make strip`"
    stamp = _stamp_module()
    assert path.read_text(encoding="utf-8") == stamp.render(stamp.stamp(nb, path.name)), (
        f"{path.name} drifted from data_scripts/stamp_notebooks.py: run `make strip`"
    )
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_stamp_check_detects_outputs_and_badge_drift(tmp_path: Path) -> None:
    stamp = _stamp_module()
    nb = _load(OWN[1])
    dirty = json.loads(json.dumps(nb))
    code = next(c for c in dirty["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    code["execution_count"] = 3
    dirty["cells"][0]["source"] = ["an old badge"]
    target = tmp_path / OWN[1].name
    target.write_text(json.dumps(dirty), encoding="utf-8")
    assert stamp.main(["--check", str(target)]) == 1
    assert stamp.main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == OWN[1].read_text(encoding="utf-8")


@pytest.mark.parametrize("path", OWN, ids=lambda p: p.stem)
def test_skeleton(path: Path) -> None:
    nb = _load(path)
    cells = nb["cells"]
    colab = f"https://colab.research.google.com/github/embedlab/embedlab/blob/main/notebooks/{path.name}"
    assert colab in _source(cells[0])
    title = _source(cells[1])
    assert title.startswith("# ") and "You will learn" in title and "How long it takes" in title
    assert "Colab T4" in title and "CPU" in title and "GPU" in title
    assert "estimated" not in title, "GPU times are measured (benchmarks/gpu_check.py) or say 'not measured'"
    assert '"google.colab" in sys.modules' in _source(cells[2]) and "%pip install" in _source(cells[2])
    index, params = _params_cell(nb)
    assert index == 3
    assert f'params.check(globals(), "{path.name[:2]}")' in _source(cells[index + 1]), (
        "the cell after the parameters checks them in one call"
    )
    tail = "".join(_source(c) for c in cells[-2:])
    assert "## Exercises for a class" in tail
    if not path.name.startswith("05"):
        assert ".ipynb)" in _source(cells[-1]), "end with a link to the next notebook"


@pytest.mark.parametrize("path", OWN, ids=lambda p: p.stem)
def test_parameters_are_literals_with_a_tiny_mock(path: Path) -> None:
    nb = _load(path)
    _, cell = _params_cell(nb)
    tree = ast.parse(_source(cell))
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "parameters: plain assignments only"
        ast.literal_eval(node.value)  # raises on anything derived
        names.append(node.targets[0].id)
    assert set(names) == declared_parameters(path)
    defaults = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body}
    assert defaults.get("dataset", "aid") == "aid"  # defaults are the real tutorial
    assert defaults.get("imagenet_model", "resnet18") == "resnet18"
    mock = cell["metadata"]["nbmake"]["mock"]
    assert set(mock) <= set(names)
    assert "run_dir" in mock and not Path(mock["run_dir"]).is_absolute()
    if "dataset" in mock:
        assert mock["dataset"] == "fashion-mnist" and 0 < mock["limit_per_class"] <= 30
    if "epochs" in mock:
        assert mock["epochs"] == 1 and mock["image_size"] == 32
    if "imagenet_model" in mock:
        assert mock["imagenet_model"] == "efficientnet_lite0"  # ResNet ImageNet weights are not available offline
    if "train_if_missing" in names:  # a notebook that trains a model only when it runs alone: tiny in tests
        assert mock["train_if_missing"]["epochs"] == 1 and mock["train_if_missing"]["image_size"] == 32
    if path.name[:2] != "00":  # every notebook but the quickstart runs alone: it can make its inputs, tiny in tests
        assert {"dataset", "data_dir", "limit_per_class", "use_drive"} <= set(names)
        assert mock["dataset"] == "fashion-mnist" and not Path(mock["data_dir"]).is_absolute()
    checked = params.check({**defaults, **mock}, path.name[:2])  # the notebook's own check, on the mock
    assert set(checked) == set(names), "params.check must see every parameter the cell declares"
    validate_params(**{**defaults, "dataset": "fashion-mnist"})  # the defaults pass too


@pytest.mark.parametrize("path", OWN, ids=lambda p: p.stem)
def test_code_cells_are_short_and_import_helpers(path: Path) -> None:
    for cell in _load(path)["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = _source(cell)
        if "parameters" in cell["metadata"].get("tags", []):
            continue  # one literal per parameter, as long as the list of parameters
        assert len(source.splitlines()) <= MAX_CELL_LINES, f"{path.name}: cell too long:\n{source}"
        python = [
            line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith("%") else line
            for line in source.splitlines()
        ]
        tree = ast.parse("\n".join(python))  # IPython magics (%pip) replaced by `pass`
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.walk(tree)), (
            "helper code belongs in embedlab, not in notebook cells"
        )


@pytest.mark.parametrize("path", PARAM_SETS, ids=lambda p: p.stem)
def test_parameter_sets_are_valid(path: Path) -> None:
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    declared = set().union(*(declared_parameters(nb) for nb in pipeline_notebooks()))
    assert set(values) <= declared, f"{path.name}: names no notebook declares: {set(values) - declared}"
    validate_params(**values)
    assert {"dataset", "data_dir", "run_dir", "epochs", "image_size"} <= set(values)


FIGURE_CALL = re.compile(
    r"(?<![\w.])(scatter|side_by_side|image_grid|samples_per_class|augmented_pairs|"
    r"nearest_neighbor_grid|loss_curve)\(|\.plot\.|plt\.subplots\("
)


@pytest.mark.parametrize("path", OWN, ids=lambda p: p.stem)
def test_every_figure_shown_is_saved_under_run_dir(path: Path) -> None:
    drawing = [c for c in _load(path)["cells"] if c["cell_type"] == "code" and FIGURE_CALL.search(_source(c))]
    assert drawing, f"{path.name} shows no figure"
    for cell in drawing:
        source = _source(cell)
        assert "save_figure(" in source and "run.figure(" in source, f"{path.name}: figure not saved:\n{source}"


# ------------------------------------------------------------------------------------------------ the lesson (issue 15)
def _defaults(path: Path) -> dict:
    _, cell = _params_cell(_load(path))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(_source(cell)).body}


def _section(path: Path, heading: str) -> str:
    """The text under a '## heading' up to the next '## ' heading, over all markdown cells."""
    text = "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
    after = text.split(f"## {heading}\n", 1)[1]
    return after.split("\n## ", 1)[0].split("**Next:**")[0].split("**Back to the start:**")[0]


def _items(section: str) -> list[str]:
    """The numbered items of a list ('1. ...' with its continuation lines)."""
    return [" ".join(item.split()) for item in re.split(r"(?m)^\d+\. ", section)[1:]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_next_line_claims_only_what_the_defaults_do(path: Path) -> None:
    last = _source(_load(path)["cells"][-1])
    claim = re.search(r"\]\((\d\d_\w+\.ipynb)\).*reads what this notebook wrote to `run_dir`", last)
    if claim:  # notebook 00's default run_dir is its own: its Next line must not claim 01 reads it
        following = REPO / "notebooks" / claim.group(1)
        assert _defaults(path)["run_dir"] == _defaults(following)["run_dir"], f"{path.name}: 'Next' line is false"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_say_what_to_see_and_recall_questions_follow(path: Path) -> None:
    exercises = _items(_section(path, "Exercises for a class"))
    assert exercises, f"{path.name}: no numbered exercises"
    for item in exercises:
        assert "You should see" in item or "you should see" in item, f"{path.name}: exercise without an outcome: {item}"
    assert 5 <= len(_items(_section(path, "Recall questions"))) <= 8, f"{path.name}: 5-8 recall questions"


RECIPE_SETTING = re.compile(r"`(augment|init|method|backbone|temperature|min_scale|freeze_bn|dataset)\s*=")


@pytest.mark.parametrize("path", [nb for nb in NOTEBOOKS if nb.name[:2] in ("00", "01", "02")], ids=lambda p: p.stem)
def test_every_exercise_that_changes_the_recipe_says_new_run_dir(path: Path) -> None:
    for item in _items(_section(path, "Exercises for a class")):
        if RECIPE_SETTING.search(item):
            assert "new `run_dir`" in item or "own `run_dir`" in item, f"{path.name}: say 'new run_dir': {item}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_preset_is_the_first_parameter(path: Path) -> None:
    assert next(iter(_defaults(path))) == "preset" and _defaults(path)["preset"] is None


def test_notebook_02_header_promise_matches_its_cap() -> None:
    path = REPO / "notebooks" / "02_train_embedding_model.ipynb"
    title = _source(_load(path)["cells"][1])
    minutes = _defaults(path)["max_train_minutes"]
    assert minutes == 20 and "at most 20 minutes (`max_train_minutes = 20`)" in title


def test_factual_slips_stay_fixed() -> None:
    text = {nb.name[:2]: "\n".join(_source(c) for c in _load(nb)["cells"]) for nb in NOTEBOOKS}
    assert "0.9 or more" not in text["03"] and "never negative" in text["03"]  # ReLU guarantees >= 0 only
    assert "Flat from early on" not in text["02"] and "augmentations too weak" in text["02"]
    assert "learning rate too low" in text["02"] and "collapse" in text["02"]
    assert "rerun with another `seed`" not in text["05"]  # leave-one-out kNN has no seed
    assert "Opened alone" in text["05"]  # a standalone 05 has no floors: its intro says so


def _index_of(path: Path, needle: str) -> int:
    return next(i for i, c in enumerate(_load(path)["cells"]) if needle in _source(c))


def test_concept_cells_come_before_the_dataset_cell() -> None:
    nb02 = REPO / "notebooks" / "02_train_embedding_model.ipynb"
    dataset = _index_of(nb02, "ensure_dataset(p)")
    for idea in ("NTXentLoss(temperature=T)", "SimCLRProjectionHead(", "for t in (0.1, 0.5, 1.0)", "output_spread("):
        assert _index_of(nb02, idea) < dataset, f"notebook 02: {idea} must come before the dataset cell"
    nb05 = REPO / "notebooks" / "05_compare_with_imagenet.ipynb"
    assert _index_of(nb05, "knn_accuracy(x, y, k=20)") < _index_of(nb05, "ensure_embeddings(p")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_diagrams_are_attached_pngs_drawn_by_the_project(path: Path) -> None:
    for cell in _load(path)["cells"]:
        tags = [t for t in cell.get("metadata", {}).get("tags", []) if t.startswith("diagram-")]
        if not tags:
            continue
        name = tags[0].removeprefix("diagram-")
        assert f"(attachment:{name}.png)" in _source(cell)
        png = base64.b64decode(cell["attachments"][f"{name}.png"]["image/png"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 100_000


def test_the_three_diagrams_are_shown() -> None:
    tags = {
        t
        for nb in NOTEBOOKS
        for c in _load(nb)["cells"]
        for t in c.get("metadata", {}).get("tags", [])
        if t.startswith("diagram-")
    }
    assert tags == {"diagram-pipeline", "diagram-simclr", "diagram-distillation"}


# ------------------------------------------------------------------------------------------------ Colab forms
COLAB_FORM = re.compile(
    r'  # @param (?:\{type:"(?P<type>boolean|integer|number|string|raw)"\}'
    r"|(?P<choices>\[[^\]]*\])(?P<other> \{allow-input: true\})?)(?:  # .*)?$"
)
FORM_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


@pytest.mark.parametrize("path", OWN, ids=lambda p: p.stem)
def test_every_parameter_is_a_colab_form_field_of_its_type(path: Path) -> None:
    """Every assignment carries Colab's `# @param` in a valid form syntax: a dropdown that holds the default (or
    takes other text), the value's own type, or raw Python (None, lists, dicts, values of several types)."""
    _, cell = _params_cell(_load(path))
    for line in _source(cell).splitlines():
        if not line or line.startswith("#"):
            continue
        form, value = COLAB_FORM.search(line), ast.literal_eval(ast.parse(line).body[0].value)
        assert form, f"{path.name}: no Colab form annotation on {line!r}"
        if form["choices"]:
            assert isinstance(value, str) and (value in json.loads(form["choices"]) or form["other"]), line
        else:
            assert form["type"] in (FORM_TYPES.get(type(value)), "raw"), line


@pytest.mark.parametrize("path", OWN, ids=lambda p: p.stem)
def test_papermill_still_reads_and_overrides_the_form_cell(path: Path) -> None:
    """papermill infers every parameter with its default from the annotated cell, and its injected cell wins."""
    import papermill
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    defaults = _defaults(path)
    inferred = papermill.inspect_notebook(str(path))
    assert {name: ast.literal_eval(p["default"]) for name, p in inferred.items()} == defaults
    nb = parameterize_notebook(load_notebook_node(str(path)), {"seed": 7})  # as papermill runs it
    index, cell = _params_cell(nb)
    assert "parameters" in cell.metadata.tags and "injected-parameters" in nb.cells[index + 1].metadata.tags
    namespace: dict = {}
    exec(_source(cell) + "\n" + _source(nb.cells[index + 1]), namespace)  # the parameters, then papermill's values
    assert namespace["seed"] == 7 and all(namespace[k] == v for k, v in defaults.items() if k != "seed")
