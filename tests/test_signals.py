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


def _worker_pids(pid: int, timeout: float = 120) -> list[int]:
    """The processes under `pid` once its DataLoader workers have started."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [child.pid for child in psutil.Process(pid).children(recursive=True)]
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("no worker process started")


WORKER_CASES = {  # command, signal, sent to the whole process group (Ctrl+C in a terminal, `timeout`) or not
    "train-term-group": ("train", signal.SIGTERM, True),
    "shards-term-group": ("shards", signal.SIGTERM, True),
    "embed-kill": ("e.pt", signal.SIGKILL, False),
    "train-kill": ("train", signal.SIGKILL, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(WORKER_CASES))
def test_dataloader_workers_end_with_the_command(tmp_path: Path, case: str) -> None:
    """A signalled command with loader workers: one line and 143 (SIGTERM), and no worker a second after it ends."""
    import os

    import psutil

    what, how, group = WORKER_CASES[case]
    folder = class_folder(tmp_path / "images", per_class=400)
    if what == "train":
        argv = ["train", str(folder), str(tmp_path / "run"), "--image-size", "32", "--batch-size", "16"]
    else:
        argv = ["embed", str(folder), str(tmp_path / what), "--model", "resnet18", "--weights", "random", "-q"]
    argv += ["--num-workers", "2"]
    with open(tmp_path / "stderr.txt", "w") as err:  # a file, not a pipe: a worker holding a pipe would delay EOF
        child = subprocess.Popen([sys.executable, "-m", "embedlab.cli", *argv], stderr=err, start_new_session=True)
        workers = _worker_pids(child.pid)
        time.sleep(2.0)  # inside the work
        os.killpg(child.pid, how) if group else child.send_signal(how)
        child.wait(timeout=120)
    time.sleep(1.0)
    alive = [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    text = (tmp_path / "stderr.txt").read_text()
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.startswith("embedlab")]
    assert not alive, f"{len(alive)} worker(s) outlived the command by a second"
    if how == signal.SIGTERM:
        assert child.returncode == 143 and len(lines) == 1 and "Traceback" not in text, text[-2000:]
