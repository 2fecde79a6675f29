"""BYOL (Grill et al., 2020): predict a slow momentum target's projection of the other view; no negatives.

Without negatives nothing forbids a constant output (collapse); the predictor on the online side and the momentum
target, whose factor ramps from 0.99 to 1 over training, are what keep the embeddings spread out in practice.
Watch the kNN monitor: a collapsed model's accuracy falls to chance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from embedlab.methods.base import Method, MethodContext

PROJECTION_DIM = 256


class BYOL(Method):
    """Online projection + prediction heads, momentum target, symmetric negative cosine similarity."""

    def __init__(self, backbone: nn.Module, settings: object, context: MethodContext) -> None:
        super().__init__(backbone, settings, context)
        hidden = 2 * max(512, backbone.embedding_dim)
        self.projection_head = BYOLProjectionHead(backbone.embedding_dim, hidden, PROJECTION_DIM)
        self.prediction_head = BYOLPredictionHead(PROJECTION_DIM, hidden, PROJECTION_DIM)
        self.momentum_backbone = copy.deepcopy(backbone)
        self.momentum_projection_head = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.momentum_backbone)
        deactivate_requires_grad(self.momentum_projection_head)
        self.criterion = NegativeCosineSimilarity()

    def before_step(self, backbone: nn.Module, step: int, total_steps: int) -> None:
        """EMA update of the target; its factor follows a cosine from 0.99 to 1 over the run."""
        total = max(total_steps, 1)
        momentum = cosine_schedule(min(step, total), total, 0.99, 1.0)
        update_momentum(backbone, self.momentum_backbone, momentum)
        update_momentum(self.projection_head, self.momentum_projection_head, momentum)

    @torch.no_grad()
    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return self.momentum_projection_head(self.momentum_backbone(x)).detach()

    def loss(self, backbone: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each view's prediction against the other view's target, averaged."""
        p0 = self.prediction_head(self.projection_head(backbone(views[0])))
        p1 = self.prediction_head(self.projection_head(backbone(views[1])))
        return 0.5 * (self.criterion(p0, self._target(views[1])) + self.criterion(p1, self._target(views[0])))
