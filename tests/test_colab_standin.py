"""Colab stand-in: Colab's Python minor version with Colab's pinned packages; every notebook runs alone through its
own setup cell with a fake google.colab (Drive branch taken), and the install changes none of Colab's packages.

Needs root (debootstrap, chroot), Debian's debootstrap and access to deb.debian.org and PyPI; `.ci/run` provides
them. It skips with a one-line reason elsewhere. See data_scripts/colab_standin.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data_scripts" / "colab_standin.py"
NOTEBOOKS = sorted((REPO / "notebooks").glob("0[0-9]_*.ipynb"))


def _unavailable() -> str | None:
    """Why the stand-in cannot be built on this machine, or None."""
    if os.geteuid() != 0:
        return "the Colab stand-in needs root (debootstrap and chroot); .ci/run runs it"
    if not shutil.which("debootstrap") or not shutil.which("chroot"):
        return "the Colab stand-in needs Debian's debootstrap (apt-get install debootstrap); .ci/run installs it"
    return None


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_every_notebook_runs_alone_on_colabs_python_and_packages(dist: Path, tmp_path: Path) -> None:
    if reason := _unavailable():
        pytest.skip(reason)
    wheel = next(dist.glob("embedlab-*.whl"))
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--wheel",
            str(wheel),
            "--root",
            str(tmp_path / "root"),
            "--report",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=2900,
    )
    assert report_path.is_file(), (done.stdout + done.stderr)[-4000:]
    report = json.loads(report_path.read_text())
    assert report["python"].startswith("Python 3.13."), report["python"]
    pinned = report["colab_packages"]
    assert pinned["torch"] == "2.11.0" and pinned["torchvision"] == "0.26.0", pinned
    assert pinned["ipykernel"] == "6.17.1" and pinned["ipython"] == "7.34.0" and pinned["numpy"] == "2.1.3", pinned
    assert not report["changed"], f"the setup cell changed Colab's packages: {report['changed']}"
    assert {"embedlab", "lightly"} <= set(report["added"]), report["added"]
    ran = {item["notebook"]: item for item in report["notebooks"]}
    assert sorted(ran) == [path.name for path in NOTEBOOKS]
    failed = {name: item["tail"] for name, item in ran.items() if not item["ok"]}
    assert not failed, "\n\n".join(f"{name}:\n{tail}" for name, tail in failed.items())
    assert all(item["drive_used"] for item in ran.values()), "a notebook did not keep its run on the fake Drive"
    assert done.returncode == 0, done.stdout[-2000:]
