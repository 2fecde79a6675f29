"""The kNN monitor: after each epoch, how well the current backbone's embeddings sort a labelled subset.

Labels are used only here, to watch training, never to train: leave-one-out kNN accuracy (k=20, cosine similarity,
similarity-weighted vote; embedlab.evaluation.knn_accuracy) on up to `knn_images` images decoded once, and a
collapse check that needs no labels: the spread of the normalised embeddings (about 1/sqrt(d) when healthy, 0 when
every image maps to the same vector).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

KNN_K = 20
MONITOR_BATCH = 256


def knn_subset(
    root: Path, image_size: int, limit: int | None, seed: int, max_images: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Decode (once) up to `max_images` images for the per-epoch kNN monitor; None when there are no labels."""
    from embedlab.datasets import ImageFolder
    from embedlab.transforms import eval_transform

    folder = ImageFolder(root, eval_transform(image_size), limit_per_class=limit, on_error="substitute")
    if len(folder.classes) < 2 or len(folder) < KNN_K + 2:
        return None
    index = np.sort(np.random.default_rng(seed).permutation(len(folder))[:max_images])
    images, labels = [], []
    for i in index:
        image, label, _ = folder[int(i)]
        if label >= 0:  # a damaged file (SUBSTITUTED) is left out of the monitor
            images.append(image)
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def output_spread(vectors: torch.Tensor) -> float:
    """Collapse check: the std across images of the L2-normalised embeddings, averaged over dimensions.

    Embeddings spread over the sphere give about 1/sqrt(d); a collapsed model (every image the same vector, the
    failure BYOL and MoCo must avoid without negatives) gives 0.
    """
    normalized = torch.nn.functional.normalize(vectors.float(), dim=1)
    return float(normalized.std(dim=0).mean())


@torch.no_grad()
def knn_monitor(module: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """Leave-one-out kNN accuracy and the output spread (`output_spread`) of the module's current backbone (with
    the heads a method exports, centred on the subset) on the monitor subset."""
    from embedlab.evaluation import knn_accuracy

    images, labels = data
    was_training = module.training
    module.eval()
    device = next(module.backbone.parameters()).device
    try:
        batches = [images[i : i + MONITOR_BATCH].to(device) for i in range(0, len(images), MONITOR_BATCH)]
        model = module.exported_model(batches) if hasattr(module, "exported_model") else module.backbone
        vectors = torch.cat([model(batch).float().cpu() for batch in batches])
    finally:
        module.train(was_training)  # SSLModule.train re-applies freeze_bn
    return float(knn_accuracy(vectors, labels.numpy(), k=KNN_K)), output_spread(vectors)
