"""Multi-teacher distillation: one small student learns what several frozen teachers know about your images.

Before the first step every teacher embeds every training image once, un-augmented: a pretrained network at its
own input size (the ImageNet EfficientNet-Lite0 at 112 px, say) and raw-pixel PCA fitted on the same images. Each
teacher's vectors are centered and L2-normalised (as the comparison's concatenation baseline does) and cached in
the run directory. Each step the student embeds one augmented view per image; one linear head per teacher maps
the student's embedding into that teacher's space; the loss is the mean over teachers of 1 - cosine similarity
with the teacher's vector of the clean image. The student so learns, from distorted views, to predict what each
teacher sees in the original image (the idea of AM-RADIO, CVPR 2024, with targets computed once).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embedlab.embedding.combine import centred_unit_rows
from embedlab.methods.base import Method, MethodContext

PCA_TEACHER = "pca"  # the raw-pixel PCA teacher (fitted on the training images at the student's input size)


class MultiTeacherError(ValueError):
    """The teachers cannot be prepared (no training images given, an unknown teacher): the message says why."""


def parse_teachers(text: str) -> tuple[str, ...]:
    """'efficientnet_lite0+pca' -> ('efficientnet_lite0', 'pca'): names, weight files or 'pca', joined by '+'."""
    names = tuple(part.strip() for part in str(text).split("+") if part.strip())
    if not names:
        raise MultiTeacherError(f"no teacher in {text!r}; e.g. teachers='efficientnet_lite0+pca'")
    return names


def _cache_file(cache_dir: Path | None, teacher: str, size: int) -> Path | None:
    """Where one teacher's vectors of the training images are kept (None: not cached)."""
    if cache_dir is None:
        return None
    label = Path(teacher).stem if Path(teacher).suffix else teacher
    return Path(cache_dir) / f"{label}-{size}px.pt"


def teacher_vectors(teacher: str, dataset: Any, size: int, cache_dir: Path | None = None, progress: bool = True) -> Any:
    """One teacher's Embeddings of every training image (cached in cache_dir; recomputed if the images differ)."""
    from embedlab.embedding import embed, embed_pca, load_embeddings
    from embedlab.methods.distillation import teacher_backbone
    from embedlab.runtime import is_rank_zero
    from embedlab.settings import EmbedSettings

    cache = _cache_file(cache_dir, teacher, size)
    if cache is not None and cache.is_file():
        cached = load_embeddings(cache)
        if list(cached.filenames) == list(dataset.filenames):
            return cached
    if teacher == PCA_TEACHER:
        dimensions = EmbedSettings().pca_dimensions  # as the comparison's PCA row
        found = embed_pca(dataset, dimensions=dimensions, image_size=size, name="pca teacher", progress=progress)
    else:
        model = teacher_backbone(teacher)
        found = embed(dataset, model, image_size=size, name=f"teacher {teacher}", num_workers=0, progress=progress)
    if cache is not None and is_rank_zero():
        cache.parent.mkdir(parents=True, exist_ok=True)
        found.save(cache)
    return found


class MultiTeacherDistillation(Method):
    """The registered method `multi_teacher` (TrainSettings: teachers, teacher_image_size for network teachers).

    Needs the training images (MethodContext.dataset); caches the teachers' vectors in MethodContext.cache_dir.
    """

    def __init__(self, backbone: nn.Module, settings: Any, context: MethodContext) -> None:
        super().__init__(backbone, settings, context)
        if context.dataset is None:
            raise MultiTeacherError("method 'multi_teacher' needs the training images (MethodContext.dataset)")
        self.teachers = parse_teachers(settings.teachers)
        index = {name: row for row, name in enumerate(context.dataset.filenames)}
        targets = []
        for teacher in self.teachers:
            size = settings.image_size if teacher == PCA_TEACHER else settings.teacher_image_size or settings.image_size
            found = teacher_vectors(teacher, context.dataset, size, context.cache_dir, settings.progress)
            table = torch.zeros(len(index), found.vectors.shape[1])  # an image the teacher skipped: no target
            table[[index[name] for name in found.filenames]] = centred_unit_rows(torch.as_tensor(found.vectors).float())
            targets.append(table)
        self.__dict__["_targets"] = targets  # not state: recomputed (or read from the cache) when a run resumes
        self.__dict__["_index"] = index
        self.heads = nn.ModuleList(nn.Linear(backbone.embedding_dim, t.shape[1]) for t in targets)

    def batch_loss(self, backbone: nn.Module, views: Sequence[torch.Tensor], filenames: Sequence[str]) -> torch.Tensor:
        """Mean over teachers of 1 - cos(head(student(view)), teacher's vector of the clean image)."""
        rows = torch.tensor([self.__dict__["_index"][name] for name in filenames])
        student = backbone(views[0])
        losses = []
        for head, table in zip(self.heads, self.__dict__["_targets"]):
            target = table[rows].to(student.device)
            losses.append(1.0 - F.cosine_similarity(head(student), target, dim=1).mean())
        return torch.stack(losses).mean()
