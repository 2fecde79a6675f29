"""Static checks of the notebooks: stripped, stamped, same skeleton, literal parameters with a tiny nbmake mock."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from embedlab import params
from embedlab.params import validate_params
from embedlab.pipeline import declared_parameters, pipeline_notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OWN = [nb for nb in NOTEBOOKS if nb.name[:2] in {"00", "01", "02", "03", "04", "05"}]
PARAM_SETS = sorted((REPO / "notebooks" / "params").glob("*.yaml"))
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
    assert "estimated" not in title, "GPU times are measured (benchmarks/bench_gpu.py) or say 'not measured'"
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
