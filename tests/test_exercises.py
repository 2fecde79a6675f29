"""Each exercise of notebooks 00, 02, 03, 04, 05 and 06 applied on tiny settings: the change it asks for has the
effect its text promises (or the text says why the effect cannot be seen on the demo settings, and this checks the
rest)."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def _cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _defaults(name: str) -> dict[str, Any]:
    """The literals of a notebook's parameters cell."""
    cell = next(c for c in _cells(name) if "parameters" in c["metadata"].get("tags", []))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(_source(cell)).body}


def _exercises(name: str) -> str:
    text = "\n".join(_source(c) for c in _cells(name) if c["cell_type"] == "markdown")
    return " ".join(text.split("## Exercises for a class", 1)[1].split("## Recall questions", 1)[0].split())


def _steps(run_dir: Path) -> int:
    return len((run_dir / "loss.csv").read_text(encoding="utf-8").strip().splitlines()) - 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- 00 · train longer
def test_00_train_longer_names_the_step_cap_and_a_new_run_dir() -> None:
    text = _exercises("00_quickstart.ipynb")
    assert "max_steps" in text and "new `run_dir`" in text.split("2. ")[0]
    from embedlab.course.params import with_preset

    defaults = _defaults("00_quickstart.ipynb")
    assert with_preset({**defaults, "preset": "demo"}, "00")["max_steps"] == 210  # the cap the text names
    raised = with_preset({**defaults, "preset": "demo", "epochs": 10, "max_steps": 420}, "00")
    assert raised["max_steps"] == 420 and raised["epochs"] == 10  # the learner's values win over the preset


def test_00_train_longer_trains_more_steps_only_with_the_cap_raised(tiny_data: Path, tmp_path: Path) -> None:
    from embedlab import train

    capped = {**TINY_TRAINING, "epochs": 2, "max_steps": 3}  # 40 images / batch 8: 5 steps per epoch; the cap binds
    train(tiny_data, tmp_path / "first", **capped)
    assert _steps(tmp_path / "first") == 3
    train(tiny_data, tmp_path / "first", **{**capped, "epochs": 4})  # doubling epochs alone, same run_dir
    assert _steps(tmp_path / "first") == 3, "doubling epochs under a step cap trained more: the exercise text is wrong"
    train(tiny_data, tmp_path / "longer", **{**capped, "epochs": 4, "max_steps": 6})  # the exercise: both, new run_dir
    assert _steps(tmp_path / "longer") == 6  # twice the steps; the first run is left as it was
    assert _steps(tmp_path / "first") == 3


# --------------------------------------------------------------------------------- 00 · the strongest baseline
def test_00_compares_with_every_imagenet_size_and_imagenet_plus_pca(tmp_path: Path) -> None:
    from embedlab import comparison_sets
    from embedlab.course import params

    values = {**_defaults("00_quickstart.ipynb"), "run_dir": str(tmp_path / "run"), "use_drive": False}
    p = params.check(values, "00")
    assert comparison_sets(p) == ("ssl", "imagenet", "imagenet-64", "imagenet-112", "random", "pca", "imagenet+pca")
    code = "\n".join(_source(c) for c in _cells("00_quickstart.ipynb") if c["cell_type"] == "code")
    assert "comparison_sets(p)" in code and "compare(embeddings" in code


# --------------------------------------------------------------------------------- 03 · embedded at the wrong size
def test_03_wrong_size_is_a_new_set_and_ssl_pt_stays(tiny_data: Path, tmp_path: Path) -> None:
    from embedlab import RunDir, compare, embed, load_backbone, train

    text = _exercises("03_embed_images.ipynb")
    assert 'name="ssl-224"' in text and "`ssl.pt` stays as it is" in text
    run = RunDir(tmp_path / "run")
    train(tiny_data, run.root, **TINY_TRAINING)
    model = load_backbone(run.exported)
    ssl = embed(tiny_data, model, image_size=32, name="ssl", progress=False, num_workers=0)
    ssl.save(run.embedding("ssl"))
    before = _sha(run.embedding("ssl"))
    wrong = embed(tiny_data, model, image_size=224, name="ssl-224", progress=False, num_workers=0)  # the exercise
    table = compare({"ssl": ssl, "ssl-224": wrong}, k=5)
    assert _sha(run.embedding("ssl")) == before and run.embedding_names() == ["ssl"]  # nothing overwritten or added
    sizes = dict(zip(table["name"], table["image_size"]))
    assert sizes == {"ssl": 32, "ssl-224": 224}
    assert not np.allclose(np.asarray(ssl.vectors), np.asarray(wrong.vectors))


# ------------------------------------------------------------------------------ 04 · projection="pca", then 05
def test_04_pca_maps_are_not_reused_as_umap_by_05(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedlab import Projector, RunDir, load_or_project

    assert "05 still draws UMAP maps" in _exercises("04_visualize_umap.ipynb")
    run = RunDir(tmp_path / "run")
    vectors = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    pca_map = Projector("pca", name="ssl", seed=0).fit(vectors)  # notebook 04 with projection="pca"
    pca_map.save(run.umap("ssl"))

    class StandIn:  # UMAP itself costs ~30 s of numba compilation: what matters is that 05 fits anew
        def fit_transform(self, array: np.ndarray) -> np.ndarray:
            return np.full((len(array), 2), 7.0, dtype=np.float32)

    monkeypatch.setattr(Projector, "_make_reducer", lambda self, n: StandIn() if self.method == "umap" else None)
    points = load_or_project(vectors, run.umap("ssl"), seed=0, n_neighbors=15, min_dist=0.1)  # notebook 05's call
    assert np.all(points == 7.0), "notebook 05 reused notebook 04's PCA map as a UMAP map"
    assert json.loads(run.umap("ssl").with_suffix(".json").read_text(encoding="utf-8"))["method"] == "umap"


# ------------------------------------------------------------------------------- 06 · start from 05's verdict
def _choose(run_dir: Path, embedding_name: str = "auto") -> tuple[str, str]:
    """Run notebook 06's choosing cell as it is; (the chosen name, what it printed)."""
    import contextlib
    import io

    from embedlab import RunDir

    cell = next(_source(c) for c in _cells("06_use_the_embeddings.ipynb") if "use_line =" in _source(c))
    namespace: dict[str, Any] = {"p": {"embedding_name": embedding_name}, "run": RunDir(run_dir)}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(cell, "06-choose", "exec"), namespace)  # noqa: S102 - the notebook's own cell
    return namespace["name"], out.getvalue()


def test_06_uses_the_set_the_verdict_says_to_use(tmp_path: Path) -> None:
    assert _defaults("06_use_the_embeddings.ipynb")["embedding_name"] == "auto"
    (tmp_path / "metrics.json").write_bytes((REPO / "benchmarks" / "results" / "demo.json").read_bytes())
    name, said = _choose(tmp_path)
    assert name == "imagenet+pca" and "notebook 05's verdict" in said and "Use:" in said
    assert said.count("\n") == 1  # one line


def test_06_follows_the_use_line_when_it_is_not_the_best_row(tmp_path: Path) -> None:
    metrics = json.loads((REPO / "benchmarks" / "results" / "demo.json").read_text(encoding="utf-8"))
    ssl = next(r for r in metrics["comparison"] if r["name"] == "ssl")
    use = f"- **Use:** embed this data with “{ssl['recipe']}”: it is as good within the noise and cheaper to embed."
    metrics["verdict"] = metrics["verdict"].rsplit("- **Use:**", 1)[0] + use  # a tie at a cheaper size: use ssl
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    assert metrics["best"] != "ssl" and _choose(tmp_path)[0] == "ssl"


def test_06_falls_back_to_ssl_and_says_so(tmp_path: Path) -> None:
    name, said = _choose(tmp_path)
    assert name == "ssl" and "no metrics.json" in said
    shutil.copy(REPO / "benchmarks" / "results" / "demo.json", tmp_path / "metrics.json")
    name, said = _choose(tmp_path, "imagenet")  # a learner's own choice wins, and the line says so
    assert name == "imagenet" and "you chose it" in said


# ------------------------------------------------------------------- 02·2, 05·3 · two runs side by side in 05
def _fake_run(folder: Path, knn: dict[str, float]) -> Path:
    """A run folder whose metrics.json holds one row per set (as notebook 05 writes it), kNN scores as given."""
    from embedlab.course.comparison import COLUMNS

    rows = [
        {**dict.fromkeys(COLUMNS), "name": n, "recipe": f"recipe of {n}", "kind": "ImageNet" if "imagenet" in n else
         "self-supervised", "knn_accuracy": v, "knn_low": v - 0.02, "knn_high": v + 0.02, "linear_probe_accuracy": v,
         "probe_low": v - 0.03, "probe_high": v + 0.03, "cluster_nmi": 0.5, "images_per_second": 100.0 + 10 * v}
        for n, v in knn.items()
    ]  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"comparison": rows, "paired": []}), encoding="utf-8")
    return folder


def test_02_and_05_compare_two_runs_in_one_table_and_chart(tmp_path: Path) -> None:
    import zipfile

    import pandas as pd

    from embedlab import cost_chart, join_runs, metrics_chart
    from embedlab.course import params

    assert 'compare_runs=["<the new run_dir>"]' in _exercises("02_train_embedding_model.ipynb")
    assert 'compare_runs=["<the natural run_dir>"]' in _exercises("05_compare_with_imagenet.ipynb")
    aerial = _fake_run(tmp_path / "aerial", {"ssl": 0.80, "imagenet": 0.78})
    natural = _fake_run(tmp_path / "natural", {"ssl": 0.75, "imagenet": 0.78})
    with zipfile.ZipFile(tmp_path / "grey.zip", "w") as zf:  # a results archive stands for a run too
        zf.write(_fake_run(tmp_path / "grey", {"ssl": 0.70}) / "metrics.json", "metrics.json")
    values = {**_defaults("05_compare_with_imagenet.ipynb"), "run_dir": str(aerial), "use_drive": False}
    p = params.check({**values, "compare_runs": [str(natural), str(tmp_path / "grey.zip")]}, "05")
    table = pd.DataFrame(json.loads((aerial / "metrics.json").read_text(encoding="utf-8"))["comparison"])
    shown = join_runs(table, p["compare_runs"], label=p.run.root.name)  # notebook 05's cell
    assert list(shown["name"]) == ["aerial: ssl", "aerial: imagenet", "natural: imagenet", "natural: ssl", "grey: ssl"]
    assert shown["recipe"].str.startswith(("aerial: ", "natural: ", "grey: ")).all()
    ticks = " ".join(t.get_text() for t in metrics_chart(shown).axes[0].get_yticklabels())
    assert all(f"{run}: recipe of ssl" in ticks.replace("\n", " ") for run in ("aerial", "natural", "grey"))
    assert {t.get_text() for t in cost_chart(shown).axes[0].texts} >= {"aerial: ssl", "natural: ssl", "grey: ssl"}
    assert join_runs(table, [], label="aerial") is table  # no other runs: the table as compare() made it


def test_05_compare_runs_refuses_a_run_without_metrics_in_one_line(tmp_path: Path) -> None:
    import pandas as pd

    from embedlab import ParameterError, join_runs
    from embedlab.course import params
    from embedlab.rundir import MissingInputError

    with pytest.raises(ParameterError, match="compare_runs"):
        params.check({**_defaults("05_compare_with_imagenet.ipynb"), "compare_runs": "runs/other"}, "05")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match=r"compare_runs: no readable metrics\.json .*notebook 05") as error:
        join_runs(pd.DataFrame(columns=["name", "recipe"]), [tmp_path / "empty"], label="this")
    assert "\n" not in str(error.value)
    code = "\n".join(_source(c) for c in _cells("05_compare_with_imagenet.ipynb") if c["cell_type"] == "code")
    assert 'join_runs(table, p["compare_runs"]' in code
    assert "metrics_chart(shown" in code and "cost_chart(shown)" in code
