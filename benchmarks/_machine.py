"""The machine line every benchmark prints: a number only means something next to the machine it was measured on."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import torch

from embedlab.course.runner import cpu_model  # the CPU's model name: the same words as the demo's machine line


def machine_info() -> str:
    """Date, CPU, usable cores, load average, torch version and threads, GPU (or none)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (GPU throughput not measured)"
    return (
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC | {cpu_model()} | {os.cpu_count()} logical CPUs "
        f"({usable} usable) | load avg {load} | torch {torch.__version__} ({torch.get_num_threads()} threads) | "
        f"GPU: {gpu}"
    )


def save_result(path: str | os.PathLike[str] | None, result: dict[str, Any]) -> None:
    """With `--json PATH`: write the result, the machine line and the exact command (benchmarks/results/<name>.json).

    docs/benchmarks.md and the README's results are generated from these files (data_scripts/make_docs.py).
    """
    if path is None:
        return
    from embedlab._io import write_json

    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    write_json(path, {"machine": machine_info(), "command": command, **result})
    print(f"results: {path}")
