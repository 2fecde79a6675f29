"""SimCLR (Chen et al., 2020): two augmented views of each image; pull the pair together, push the batch apart.

The backbone's embedding h goes through a small MLP, the projection head g, to z = g(h); the NT-Xent loss
(InfoNCE) on z treats the other view of the same image as the positive and the other 2N - 2 views as negatives,
with a temperature that sets how sharply the closest negatives count. After training g is thrown away: h keeps
more of what the augmentations changed (colour, crop) and serves downstream tasks better than z.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from embedlab.methods.base import Method, MethodContext

PROJECTION_DIM = 128


class SimCLR(Method):
    """Projection head + NT-Xent loss (negatives gathered from every process under DDP)."""

    def __init__(self, backbone: nn.Module, settings: object, context: MethodContext) -> None:
        super().__init__(backbone, settings, context)
        dim = backbone.embedding_dim
        self.projection_head = SimCLRProjectionHead(dim, max(512, dim), PROJECTION_DIM)
        self.criterion = NTXentLoss(temperature=settings.temperature, gather_distributed=context.distributed)

    def loss(self, backbone: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """NT-Xent between the projections of the two views."""
        z0 = self.projection_head(backbone(views[0]))
        z1 = self.projection_head(backbone(views[1]))
        return self.criterion(z0, z1)
