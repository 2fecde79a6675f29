"""The CPU times in the notebooks' titles come from a measured demo run (notebooks/timings.json), never by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _script():
    spec = importlib.util.spec_from_file_location("stamp_timings", REPO / "data_scripts" / "stamp_timings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_title_time_matches_the_recorded_run(path: Path) -> None:
    script = _script()
    timings = script.load_timings()
    seconds = timings.get("seconds", {}).get(path.stem)
    if seconds is None:
        pytest.skip(f"no measured demo time recorded for {path.stem} in notebooks/timings.json")
    title = "".join(script._title_cell(json.loads(path.read_text(encoding="utf-8")))["source"])
    assert script.cpu_time_phrase(seconds, timings["cores"]) in title, (
        f"{path.name}: run `python data_scripts/stamp_timings.py notebooks/*.ipynb`"
    )


def test_record_and_stamp_rewrite_the_title(tmp_path: Path) -> None:
    script = _script()
    run = tmp_path / "pipeline.json"
    run.write_text(
        json.dumps(
            {"seconds": {"02_train": 431.6, "03_embed": 25.0}, "machine": "Linux x86_64, 2 CPU cores, Python 3.11.7"}
        )
    )
    timings = script.record_timings(run, tmp_path / "timings.json")
    assert timings["cores"] == 2 and timings["seconds"] == {"02_train": 431.6, "03_embed": 25.0}
    title = "**How long it takes:** CPU (2 cores, `demo` settings, measured): about 12 minutes (capped) · Colab T4 ..."
    assert script.stamped_title(title, 431.6, 2) == title.replace("about 12 minutes", "about 7 minutes")
    assert "measured): under a minute (capped)" in script.stamped_title(title, 25.0, 2)
    unmeasured = "CPU (2 cores, `demo` settings): about 2 minutes · Colab"
    assert script.stamped_title(unmeasured, 61, 4) == "CPU (4 cores, `demo` settings, measured): about 1 minute · Colab"
    assert script.stamped_title(title, None, 2) == title
    notebook = tmp_path / "02_train.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {"cell_type": "markdown", "metadata": {}, "source": ["badge"]},
                    {"cell_type": "markdown", "metadata": {}, "source": ["# 02\n", title]},
                ]
            }
        )
    )
    assert script.process(notebook, timings, check=True) is False  # 12 minutes recorded by hand: stale
    assert script.process(notebook, timings, check=False) is False
    assert script.process(notebook, timings, check=True) is True
    assert "about 7 minutes" in notebook.read_text()
