"""The base of every self-supervised method: the heads and loss for one batch of views, and a per-step hook.

A method never sees Lightning, the optimizer or the data loader: `embedlab.training.SSLModule` holds the backbone
and one method, calls `before_step` and `loss` each step, and optimizes every trainable parameter of both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


def run_here(compute: Callable[[], Any]) -> Any:
    """`Method.prepare`'s `once` in a single process: run the work here."""
    return compute()


@dataclass(frozen=True)
class MethodContext:
    """What a method may need to know about the run beyond its settings."""

    world_size: int = 1  # processes training together (a contrastive loss gathers negatives across them)
    num_images: int = 0  # images in the training set (distillation sizes its queue from it)
    dataset: Any = None  # the training ImageFolder (root, filenames): multi-teacher embeds it once before training
    cache_dir: Path | None = None  # a folder of the run where a method keeps what it computes once

    @property
    def distributed(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1


class Method(nn.Module):
    """Heads + loss of one self-supervised method. Subclasses build their heads in __init__ and define `loss`.

    `backbone` maps a batch of images to embeddings [N, backbone.embedding_dim]; `settings` is the run's
    TrainSettings (read what you need: temperature, ...). Parameters of the method train with the heads'
    learning rate; the backbone's get learning_rate x backbone_lr_scale.
    """

    def __init__(self, backbone: nn.Module, settings: object, context: MethodContext) -> None:
        super().__init__()
        self.context = context

    def loss(self, backbone: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The loss of one batch: `views[i]` is the i-th augmented view of every image, [N, 3, H, W]."""
        raise NotImplementedError

    def batch_loss(self, backbone: nn.Module, views: Sequence[torch.Tensor], filenames: Sequence[str]) -> torch.Tensor:
        """The loss of one batch whose images are `filenames` (the training step calls this); `loss` by default.
        A method whose targets belong to particular images (cached teacher vectors) overrides it."""
        return self.loss(backbone, views)

    def prepare(self, device: torch.device, once: Callable[[Callable[[], Any]], Any] = run_here) -> None:
        """Called on every process once its device is set, before training: compute what the method needs from the
        training images, once for all processes (`once(work)` runs work on rank 0 and gives each rank its result).
        Nothing by default."""

    def before_step(self, backbone: nn.Module, step: int, total_steps: int) -> None:
        """Called before each optimizer step's loss (momentum updates live here); nothing by default."""

    def exported(self, backbone: nn.Module, images: Sequence[torch.Tensor] | None = None) -> nn.Module:
        """The model a run exports and its kNN monitor measures: the backbone by default. A method whose heads are
        part of the embedding wraps them around it, centred on `images` (batches) or else on the training images."""
        return backbone
