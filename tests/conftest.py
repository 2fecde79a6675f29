"""Fixtures shared by the training, distillation and time-budget tests."""

from __future__ import annotations

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
