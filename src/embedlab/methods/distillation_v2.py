"""Distillation as in LightlyTrain's `method="distillation"` since 0.7.0 (its v2): the student regresses the frozen
teacher's *feature map*, not a pseudo-label over a queue.

Each step the teacher sees a mixed-up batch of your images and gives one feature vector per spatial cell (a DINOv2
teacher: its patch tokens of the last two blocks, concatenated; a network of ours: its feature map before pooling).
The student's feature map goes through a linear head to the teacher's width and is resized to the teacher's grid;
the loss is the mean squared error between the two, unnormalised (as in LightlyTrain). The teacher and
`teacher_image_size` are the distillation method's settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from embedlab.methods.base import Method, MethodContext
from embedlab.methods.distillation import _DinoTeacher, default_teacher_image_size, load_teacher, mixup

DINOV2_BLOCKS = 2  # LightlyTrain v2's n_teacher_blocks: the patch tokens of the teacher's last two blocks


def teacher_feature_map(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The frozen teacher's features of a batch as a grid [N, h, w, D] (DINOv2: patch tokens of its last blocks)."""
    if isinstance(teacher, _DinoTeacher):
        blocks = teacher.model.get_intermediate_layers(images, n=DINOV2_BLOCKS, reshape=True)
        return torch.cat(list(blocks), dim=1).permute(0, 2, 3, 1)
    return teacher.features(images).permute(0, 2, 3, 1)


def teacher_width(teacher: nn.Module) -> int:
    """The width D of `teacher_feature_map`: DINOv2 concatenates DINOV2_BLOCKS blocks of its embedding."""
    return DINOV2_BLOCKS * teacher.embedding_dim if isinstance(teacher, _DinoTeacher) else teacher.embedding_dim


def feature_map_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """MSE between the teacher's grid [N, h, w, D] and the student's [N, C, h', w'] through `head` (C -> D), resized
    to h x w (bilinear)."""
    projected = head(student_map.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    resized = F.interpolate(projected, size=teacher_map.shape[1:3], mode="bilinear", align_corners=False)
    return F.mse_loss(resized.permute(0, 2, 3, 1), teacher_map.to(resized.dtype))


class DistillationV2(Method):
    """The registered method: one mixed-up view per image, the feature-map regression against the teacher."""

    def __init__(self, backbone: nn.Module, settings: object, context: MethodContext) -> None:
        super().__init__(backbone, settings, context)
        teacher = load_teacher(settings.teacher)
        self.__dict__["_teacher"] = teacher  # not a submodule: not saved, not trained, moved lazily
        self.teacher_image_size = settings.teacher_image_size or default_teacher_image_size(
            settings.teacher, settings.image_size
        )
        self.head = nn.Linear(backbone.embedding_dim, teacher_width(teacher))
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def teacher_map(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's feature grid of a batch, resized to the teacher's input size first."""
        teacher = self.__dict__["_teacher"]
        first = next(teacher.parameters(), None)
        if first is not None and first.device != images.device:
            teacher.to(images.device)
        size = (self.teacher_image_size, self.teacher_image_size)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        return teacher_feature_map(teacher.eval(), images).float()

    def loss(self, backbone: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The student's feature map, projected and resized, against the teacher's (mean squared error)."""
        images = mixup(views[0]) if self.training else views[0]
        return feature_map_loss(backbone.features(images), self.teacher_map(images), self.head)
