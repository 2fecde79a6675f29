"""benchmarks/bench_quality.py runs end to end at a tiny size: baselines, the off-the-shelf concatenation, two
multi-teacher recipes (one a registered variant), each output of the model with heads, paired intervals against the
strongest single model and the combination, the speed ratio, and a verdict computed from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quality_reports_intervals_and_a_computed_verdict(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_quality.py"),
        *("--images", "8", "--steps", "2", "--calibration-steps", "1", "--baseline-sizes", "32", "64"),
        *(
            "--recipes",
            "multi-64",
            "multi-64-clean-targets",
            "--speed-images",
            "2",
            "--out",
            str(tmp_path / "runs"),
            "--json",
            str(out),
        ),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = json.loads(out.read_text())
    kinds = {row["kind"] for row in result["rows"]}
    assert kinds == {"baseline", "floor", "combination", "recipe"}
    strongest = max((r for r in result["rows"] if r["kind"] == "baseline"), key=lambda r: r["knn"])
    for row in result["rows"]:
        if row is not strongest:
            diff, low, high = row["vs_strongest_single"]
            assert low <= diff <= high and diff == pytest.approx(100 * (row["knn"] - strongest["knn"]), abs=0.01)
    recipe, clean = (r for r in result["rows"] if r["kind"] == "recipe")
    assert recipe["train_options"]["teachers"] == "efficientnet_lite0+pca" and recipe["steps_done"] == 2
    assert clean["train_options"]["method_args"] == {"targets": "clean"} and clean["steps_done"] == 2
    outputs = {"backbone", "heads", "backbone+heads", "head efficientnet_lite0", "head pca"}
    assert set(recipe["knn_by_output"]) == set(recipe["vs_combination_by_output"]) == outputs
    assert recipe["exported_output"][0] == "backbone" and recipe["speed_ratio_vs_combination"] > 0
    assert recipe["knn"] in recipe["knn_by_output"].values()  # the output the model was exported with
    diff, low, high = recipe["vs_combination"]
    assert low <= diff <= high
    verdict = result["verdict"]
    assert verdict["target_met"] == (verdict["gain_points"] >= 2 and verdict["gain_interval"][0] > 0)
    assert verdict["best_recipe"] in result["headline"] and "verdict:" in done.stdout
