"""Kept for one release: distillation now lives in `embedlab.methods.distillation` (one file per method)."""

from embedlab.methods.distillation import (  # noqa: F401 - re-exported under the old import path
    DEFAULT_TEACHER,
    DISTILLATION_TEMPERATURE,
    DistillationError,
    Distiller,
    default_teacher_image_size,
    distillation_loss,
    load_teacher,
    mixup,
    queue_size_for,
)
from embedlab.registry import DINOV2_TEACHERS, teacher_names  # noqa: F401
