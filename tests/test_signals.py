"""One signal policy for every command: SIGTERM like Ctrl+C. A real `embedlab` process signalled mid-work prints one
line, exits with 143 and leaves no half-written output."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reliability import class_folder


def _signal_when_working(argv: list[str], marker: str, how: int = signal.SIGTERM) -> subprocess.CompletedProcess:
    """Start `embedlab ARGV`, wait until its stderr shows `marker` (the work has begun), send `how`."""
    child = subprocess.Popen([sys.executable, "-m", "embedlab.cli", *argv], stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    while marker not in seen and time.monotonic() < deadline:
        char = child.stderr.read(1)
        if not char:
            break  # the command ended before the work was seen
        seen += char
    time.sleep(0.5)  # well inside the work, not in its first setup
    child.send_signal(how)
    rest = child.communicate(timeout=120)[1]
    return subprocess.CompletedProcess(argv, child.returncode, "", seen + rest)


@pytest.mark.slow
def test_sigterm_during_embed_to_a_file_is_one_line_and_exit_143(tmp_path: Path) -> None:
    folder = class_folder(tmp_path / "images", per_class=300)
    out = tmp_path / "e.pt"
    argv = ["embed", str(folder), str(out), "--model", "resnet18", "--weights", "random", "--image-size", "64"]
    done = _signal_when_working(argv, "/s]")
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("embedlab")]
    assert done.returncode == 143 and len(lines) == 1 and "SIGTERM" in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.slow
def test_sigterm_during_thumbnails_is_one_line_and_exit_143(tmp_path: Path) -> None:
    folder = class_folder(tmp_path / "images", per_class=2000)
    argv = ["thumbnails", str(folder), "--output", str(tmp_path / "thumbs")]
    done = _signal_when_working(argv, "/s]")
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("embedlab")]
    assert done.returncode == 143 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
