"""Fixtures shared by the training, distillation and time-budget tests; a localhost file server for downloads; the
built wheel (packaging and Colab stand-in tests)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


# Tiny and fast training: the stem + first stage of a standard-stem ResNet18 on 32 px images, one epoch.
# SimCLR on a random-init ResNet18: the cheapest recipe, for tests of the training machinery (not the default recipe)
SCRATCH: dict[str, Any] = {"method": "simclr", "backbone": "resnet18", "init": None}
SCRATCH_ARGS = ["--method", "simclr", "--backbone", "resnet18", "--init", "none"]
TINY_TRAINING: dict[str, Any] = {
    **SCRATCH,
    "small_images": False,
    "layers": 1,
    "image_size": 32,
    "batch_size": 8,
    "epochs": 1,
    "progress": False,
    "knn_images": 40,
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 Fashion-MNIST images (4 classes x 10) as 32 px PNGs in <root>/<class>/<file>."""
    from embedlab.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist()
    root = tmp_path_factory.mktemp("tiny") / "raw"
    for cls in range(4):
        folder = root / f"class{cls}"
        folder.mkdir(parents=True)
        for j, idx in enumerate(np.flatnonzero(labels == cls)[:10]):
            Image.fromarray(images[idx]).resize((32, 32)).save(folder / f"{j}.png")
    return root


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve `folder` over HTTP on localhost (a published release asset, offline); yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """embedlab's wheel + sdist (python -m build, no isolation: offline) from a copy of the sources; twine-checked."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, out.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return out


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small exported backbone (random ResNet18, two stages: 128-d) to serve as an offline teacher."""
    import torch

    from embedlab.models import create_backbone, export_backbone

    torch.manual_seed(1)
    net = create_backbone("resnet18", None, small_images=False, layers=2)
    return export_backbone(net, tmp_path_factory.mktemp("teacher") / "teacher.pt")
