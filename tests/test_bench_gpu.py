"""benchmarks/bench_gpu.py --smoke runs on a CPU and writes a JSON result with every arm measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gpu_smoke_writes_measured_json(tmp_path: Path) -> None:
    out = tmp_path / "bench_gpu.json"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_gpu.py"),
            "--smoke",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] and "logical CPUs" in result["machine"]
    assert {row["precision"] for row in result["train"]} == {"32-true", "bf16-mixed"}
    for row in result["train"]:
        assert row["steps_timed"] == 2 and row["images_per_second"] > 0
        assert 0.0 <= row["data_wait_share"] < 1.0
    assert result["embed"]["images"] == 40 and result["embed"]["images_per_second"] > 0
    assert len(list((tmp_path / "work" / "raw").rglob("*.jpg"))) == 40
    from PIL import Image

    with Image.open(next((tmp_path / "work" / "raw").rglob("*.jpg"))) as image:
        assert image.size == (600, 600) and image.mode == "RGB"
