"""benchmarks/gpu_check.py --smoke runs on a CPU in seconds and writes one JSON with every part; GPU figures say
"not measured"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_writes_one_json_with_every_part(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    script = REPO / "benchmarks" / "gpu_check.py"
    run = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(out), "--work-dir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] and "logical CPUs" in result["machine"]
    assert result["auto_precision"] == "32-true" and result["capability"].startswith("not measured")
    arms = {(row["method"], row["precision"]) for row in result["train"]}
    assert arms == {(m, p) for m in ("simclr", "distillation") for p in ("32-true", "bf16-mixed")}
    for row in result["train"]:
        assert row["steps_timed"] == 2 and row["images_per_second"] > 0 and 0.0 <= row["data_wait_share"] < 1.0
        assert row["peak_memory_gib"].startswith("not measured") and row["host_syncs_per_step"].startswith("not")
    assert result["embed"]["images"] == 40 and result["embed"]["agrees"]
    resumed = result["capped_resume"]
    assert resumed["first"]["steps_run"] > 0 and resumed["rerun_finished_its_plan"], resumed
    assert resumed["rerun"]["steps_run"] == resumed["rerun"]["planned_steps"] - resumed["first"]["steps_run"]
    assert result["out_of_memory_message"].startswith("not measured")
