"""Fixtures shared by the training, distillation and time-budget tests; a localhost file server for downloads."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


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
