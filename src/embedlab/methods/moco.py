"""MoCo v2 (He et al., 2020; Chen et al., 2020): queries from the backbone, keys from a slow momentum copy.

The momentum encoder is an exponential moving average of the backbone and its head (factor 0.99), so keys change
slowly and a memory bank of the last keys can serve as many more negatives than one batch holds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn

from embedlab.methods.base import Method, MethodContext

PROJECTION_DIM = 128
MEMORY_BANK_SIZE = 4096
MOMENTUM = 0.99


class MoCo(Method):
    """Projection head, momentum copies of backbone and head, NT-Xent against a memory bank."""

    def __init__(self, backbone: nn.Module, settings: object, context: MethodContext) -> None:
        super().__init__(backbone, settings, context)
        dim = backbone.embedding_dim
        self.projection_head = MoCoProjectionHead(dim, max(512, dim), PROJECTION_DIM)
        self.momentum_backbone = copy.deepcopy(backbone)
        self.momentum_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.momentum_backbone)
        deactivate_requires_grad(self.momentum_projection_head)
        self.criterion = NTXentLoss(
            temperature=settings.temperature,
            memory_bank_size=(MEMORY_BANK_SIZE, PROJECTION_DIM),
            gather_distributed=context.distributed,
        )

    def before_step(self, backbone: nn.Module, step: int, total_steps: int) -> None:
        """Move the momentum encoder a little towards the backbone."""
        update_momentum(backbone, self.momentum_backbone, MOMENTUM)
        update_momentum(self.projection_head, self.momentum_projection_head, MOMENTUM)

    def loss(self, backbone: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """NT-Xent of the first view's query against the second view's key (and the bank)."""
        query = self.projection_head(backbone(views[0]))
        with torch.no_grad():
            key = self.momentum_projection_head(self.momentum_backbone(views[1])).detach()
        return self.criterion(query, key)
