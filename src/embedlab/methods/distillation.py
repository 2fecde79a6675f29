"""Distillation as in LightlyTrain's `method="distillationv1"` (its default before 0.7.0; LightlyTrain recommends v1
for global tasks such as classification, which kNN is): a student learns a frozen teacher's embeddings.

Each step the teacher embeds an augmented (and mixed-up) batch of *your* images; the student backbone plus a
linear projection head embeds the same batch. Both are L2-normalised and compared against a queue of recent
teacher embeddings, which acts as a pseudo classifier: the student's softmax over the queue is pulled towards the
teacher's (cross-entropy, temperature 0.07). Teachers: DINOv2 through torch.hub (needs the internet once), any
embedlab backbone with ImageNet weights (offline for EfficientNet-Lite0), or an exported backbone file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from embedlab.methods.base import Method, MethodContext
from embedlab.models import Backbone
from embedlab.registry import DINOV2_TEACHERS, teacher_names

DISTILLATION_TEMPERATURE = 0.07  # LightlyTrain's distillationv1 value: sharp pseudo-labels over the queue
DEFAULT_TEACHER = "dinov2_vitb14"  # LightlyTrain's distillationv1 teacher (ViT-B/14); needs the internet once
DINOV2_HUB_REPO = "facebookresearch/dinov2"
# LightlyTrain's queue sizes: about a quarter to a half of the dataset, so the queue never holds stale duplicates.
_QUEUE_BUCKETS: tuple[tuple[float, int], ...] = (
    (50, 16),
    (100, 32),
    (250, 64),
    (500, 128),
    (1_000, 256),
    (2_000, 512),
    (4_000, 1024),
    (10_000, 2048),
    (20_000, 4096),
    (float("inf"), 8192),
)


class DistillationError(ValueError):
    """A distillation option is invalid, or the teacher cannot be loaded (the message says what to do)."""


def default_teacher_image_size(teacher: str, student_image_size: int) -> int:
    """224 px for DINOv2 (its training size, a multiple of its 14 px patches); else the student's size."""
    return 224 if teacher in DINOV2_TEACHERS else student_image_size


def queue_size_for(n_images: int) -> int:
    """The queue length LightlyTrain picks for a dataset of n_images (16 ... 8192)."""
    for limit, size in _QUEUE_BUCKETS:
        if n_images < limit:
            return size
    return _QUEUE_BUCKETS[-1][1]


class _DinoTeacher(nn.Module):
    """A torch.hub DINOv2 model as a teacher: image batch -> class-token embedding [N, D]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embedding_dim = int(model.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class token (what DINOv2's hub model returns)."""
        return self.model(x)


def _load_dinov2(name: str) -> nn.Module:
    """Load a DINOv2 model through torch.hub, with a one-line error when there is no network or cache."""
    try:
        model = torch.hub.load(DINOV2_HUB_REPO, name, trust_repo=True, verbose=False)
    except Exception as exc:  # noqa: BLE001 - network, cache and hub errors all get the same advice
        raise DistillationError(
            f"Cannot load teacher {name!r} through torch.hub ({type(exc).__name__}: {str(exc)[:120]}). It needs "
            f"the internet once (then it is cached in {torch.hub.get_dir()}); offline, use an embedlab backbone "
            f"as the teacher, e.g. teacher='efficientnet_lite0'."
        ) from None
    return _DinoTeacher(model)


def load_teacher(teacher: str | os.PathLike[str]) -> nn.Module:
    """A frozen teacher in eval mode with an `embedding_dim`: DINOv2 (torch.hub), an ImageNet backbone, or a file."""
    from embedlab.models import BackboneLoadError, WeightsUnavailableError, resolve_backbone

    name = str(teacher)
    path = Path(name).expanduser()
    if name not in teacher_names() and not path.is_file():
        raise DistillationError(
            f"Unknown teacher {name!r}: use one of {', '.join(teacher_names())}, or the path "
            f"of an exported backbone (.pt) or checkpoint (.ckpt)."
        )
    if name in DINOV2_TEACHERS:
        model = _load_dinov2(name)
    else:
        try:
            model = resolve_backbone(path if path.is_file() else name)
        except (WeightsUnavailableError, BackboneLoadError) as exc:
            raise DistillationError(f"teacher {name!r}: {exc}") from None
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    queue: torch.Tensor,
    temperature: float = DISTILLATION_TEMPERATURE,
    filled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy between the teacher's and the student's softmax over the queue (all inputs L2-normalised).

    The queue of teacher embeddings plays the classifier's weights: the teacher's similarities to it are the soft
    pseudo-labels, the student's similarities to it the predictions. `filled` (a tensor, so the host never waits
    for the device to read it): only the queue's first `filled` rows count.
    """
    teacher_logits, student_logits = teacher @ queue.T / temperature, student @ queue.T / temperature
    if filled is not None:
        empty = torch.arange(queue.shape[0], device=queue.device) >= filled.clamp(min=1)
        teacher_logits = teacher_logits.masked_fill(empty, -torch.inf)
        student_logits = student_logits.masked_fill(empty, -torch.inf)
    targets = F.softmax(teacher_logits, dim=1)
    log_predictions = F.log_softmax(student_logits, dim=1)
    return -torch.where(targets > 0, targets * log_predictions, 0.0).sum(dim=1).mean()


def mixup(images: torch.Tensor) -> torch.Tensor:
    """Blend the batch with a shuffled copy of itself, one weight ~ U(0, 1) per batch (as LightlyTrain does), drawn
    on the images' device (no host sync)."""
    weight = torch.rand((), device=images.device)
    return weight * images + (1.0 - weight) * images[torch.randperm(images.shape[0], device=images.device)]


class Distiller(nn.Module):
    """The student's projection head, the teacher-embedding queue and the loss; the teacher stays out of the state.

    The teacher is kept outside the registered modules, so checkpoints hold only what training changes (head,
    queue) and the teacher is rebuilt from its name when a run resumes.
    """

    def __init__(
        self,
        student_dim: int,
        teacher: str | os.PathLike[str],
        teacher_image_size: int,
        queue_size: int,
        temperature: float = DISTILLATION_TEMPERATURE,
        use_mixup: bool = True,
    ) -> None:
        super().__init__()
        model = load_teacher(teacher)
        self.__dict__["_teacher"] = model  # not a submodule: not saved, not trained, moved lazily
        dim = int(model.embedding_dim)
        self.teacher_image_size = int(teacher_image_size)
        self.temperature = float(temperature)
        self.use_mixup = bool(use_mixup)
        self.projection_head = nn.Linear(student_dim, dim)
        nn.init.trunc_normal_(self.projection_head.weight, std=0.02)
        nn.init.zeros_(self.projection_head.bias)
        self.register_buffer("queue", torch.zeros(int(queue_size), dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher network."""
        return self.__dict__["_teacher"]

    @torch.no_grad()
    def teacher_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised teacher embeddings of a batch, resized to the teacher's input size first."""
        teacher = self.teacher
        first = next(teacher.parameters(), None)
        if first is not None and first.device != images.device:
            teacher.to(images.device)
        teacher.eval()
        if images.shape[-1] != self.teacher_image_size or images.shape[-2] != self.teacher_image_size:
            images = F.interpolate(
                images,
                size=(self.teacher_image_size, self.teacher_image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return F.normalize(teacher(images).float(), dim=1)

    @torch.no_grad()
    def _update_queue(self, embeddings: torch.Tensor) -> None:
        """Push a batch of teacher embeddings to the front of the queue (oldest fall off the end)."""
        size, batch = self.queue.shape[0], embeddings.shape[0]
        if batch >= size:
            self.queue.copy_(embeddings[:size])
        else:
            self.queue[batch:] = self.queue[:-batch].clone()
            self.queue[:batch] = embeddings
        self.queue_filled.add_(batch).clamp_(max=size)  # on the device: no host sync

    def forward(self, student: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The distillation loss of the student backbone on one batch of augmented views."""
        if self.use_mixup and self.training:
            images = mixup(images)
        targets = self.teacher_embeddings(images)
        predictions = F.normalize(self.projection_head(student(images)), dim=1)
        self._update_queue(targets)
        return distillation_loss(predictions, targets, self.queue, self.temperature, self.queue_filled)


class Distillation(Method):
    """The registered method: one augmented view per image, the Distiller's loss on it (TrainSettings: teacher,
    teacher_image_size; the queue is sized to the dataset as LightlyTrain does)."""

    def __init__(self, backbone: nn.Module, settings: object, context: MethodContext) -> None:
        super().__init__(backbone, settings, context)
        teacher = settings.teacher
        size = settings.teacher_image_size or default_teacher_image_size(teacher, settings.image_size)
        self.distiller = Distiller(backbone.embedding_dim, teacher, size, queue_size_for(context.num_images))

    def loss(self, backbone: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The student's cross-entropy against the teacher's soft pseudo-labels over the queue."""
        return self.distiller(backbone, views[0])


class HubBackbone(Backbone):
    """A torch.hub teacher (DINOv2) seen as an embedlab Backbone: image batch -> [N, embedding_dim]."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__(name, int(model.embedding_dim), small_images=False, layers=None, weights="torch.hub")
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The hub model's embedding (its class token; no feature map to pool)."""
        return self.model(x)


def teacher_backbone(teacher: str | os.PathLike[str]) -> Backbone:
    """The frozen teacher as a Backbone, so `embed` and the comparison can use it as a baseline row: the teacher of
    a distillation run is an off-the-shelf model a user could take instead of training."""
    model = load_teacher(teacher)
    backbone = model if isinstance(model, Backbone) else HubBackbone(model, str(teacher))
    backbone.meta = {**backbone.meta, "teacher_of": "distillation"}
    return backbone
