"""Multi-teacher distillation: one small student learns what several frozen teachers know about your images.

The idea of AM-RADIO (CVPR 2024): one head per teacher maps the student's features into that teacher's space, and
the heads stay part of the model (`embedlab.models.heads.HeadedBackbone`): it embeds as the parts chosen (the backbone's
features and/or each head's output), each centred on the training images and L2-normalised, concatenated. Measured
(benchmarks/bench_quality.py), the centred backbone alone embeds best: the default output.

Teachers: a pretrained network at its own input size (the ImageNet EfficientNet-Lite0 at 112 px, say) and raw-pixel
PCA. Each step the student embeds one augmented (mixed-up) view per image, and every teacher describes *that same
view*: the PCA teacher is a fixed linear map of pixels (mean and components fitted once on the training images,
preprocessed as `embed_pca` does), applied online for free; a network teacher embeds the view resized to its size
(or, with targets="clean", its vectors of the clean images are cached once and mixed up like the view). Every
teacher is learned with the queue distillation loss of `methods/distillation.py` (the loss that worked for one
teacher); the PCA teacher may use a cosine loss instead (pca_loss="cosine").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embedlab.methods.args import MultiTeacherArgs
from embedlab.methods.base import Method, MethodContext, run_here
from embedlab.methods.distillation import Distiller, distillation_loss, queue_size_for

PCA_TEACHER = "pca"  # the raw-pixel PCA teacher (fitted on the training images at the student's input size)


class MultiTeacherError(ValueError):
    """The teachers cannot be prepared (no training images given, an unknown teacher): the message says why."""


def parse_teachers(text: str) -> tuple[str, ...]:
    """'efficientnet_lite0+pca' -> ('efficientnet_lite0', 'pca'): names, weight files or 'pca', joined by '+'."""
    names = tuple(part.strip() for part in str(text).split("+") if part.strip())
    if not names:
        raise MultiTeacherError(f"no teacher in {text!r}; e.g. teachers='efficientnet_lite0+pca'")
    return names


def teacher_label(teacher: str) -> str:
    """A teacher's short name (a file's stem), usable as a file name and a module key."""
    label = Path(teacher).stem if Path(teacher).suffix else teacher
    return re.sub(r"\W", "_", label)


def _cache_file(cache_dir: Path | None, teacher: str, size: int) -> Path | None:
    """Where one teacher's vectors of the training images are kept (None: not cached)."""
    if cache_dir is None:
        return None
    return Path(cache_dir) / f"{teacher_label(teacher)}-{size}px.pt"


def teacher_vectors(
    teacher: str, dataset: Any, size: int, cache_dir: Path | None = None, progress: bool = True, device: Any = "auto"
) -> Any:
    """A network teacher's Embeddings of every training image on `device` (cached in cache_dir; recomputed if the
    images differ)."""
    from embedlab.embedding import embed, load_embeddings
    from embedlab.methods.distillation import teacher_backbone
    from embedlab.runtime import is_rank_zero

    cache = _cache_file(cache_dir, teacher, size)
    if cache is not None and cache.is_file():
        cached = load_embeddings(cache)
        if list(cached.filenames) == list(dataset.filenames):
            return cached
    model = teacher_backbone(teacher)
    name = f"teacher {teacher}"
    found = embed(dataset, model, image_size=size, name=name, device=device, num_workers=0, progress=progress)
    if cache is not None and is_rank_zero():
        cache.parent.mkdir(parents=True, exist_ok=True)
        found.save(cache)
    return found


class PixelPCA(nn.Module):
    """The raw-pixel PCA teacher as a fixed linear map: a batch of normalised views -> its PCA vectors [N, k].

    Fitted on the training images exactly as `embed_pca` preprocesses them (resize + centre crop, [0, 1] pixels in
    HWC order); a view is un-normalised back to [0, 1] pixels first, so the map applies to any augmented view.
    """

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, image_size: int) -> None:
        super().__init__()
        from embedlab.transforms import normalization

        pixel_mean, pixel_std = normalization()
        self.image_size = int(image_size)
        self.register_buffer("mean", mean.float().reshape(-1))
        self.register_buffer("components", components.float())
        self.register_buffer("input_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(pixel_std).view(1, 3, 1, 1))

    @property
    def dimensions(self) -> int:
        """How many components (the teacher's embedding size)."""
        return int(self.components.shape[0])

    @classmethod
    def planned(cls, dataset: Any, size: int, dimensions: int) -> PixelPCA:
        """An unfitted teacher of the size a fit on `dataset` gives (`prepare` fills it): zero mean and components."""
        from embedlab.projection import pca_components

        features = 3 * int(size) ** 2
        rows = pca_components(dimensions, (len(dataset), features))  # the fit's rule: at most N - 1 components
        return cls(torch.zeros(features), torch.zeros(rows, features), size)

    def load(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        """Take a fit's mean and components (fewer components than planned, when images were undecodable: zeros)."""
        self.mean.copy_(mean.reshape(-1))
        self.components.zero_()[: components.shape[0]].copy_(components)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """PCA vectors of normalised NCHW views at the teacher's size."""
        pixels = (views * self.input_std + self.input_mean).permute(0, 2, 3, 1).reshape(views.shape[0], -1)
        return (pixels - self.mean) @ self.components.T


def fit_pixel_pca(dataset: Any, size: int, dimensions: int, cache_dir: Path | None = None) -> PixelPCA:
    """The PCA teacher fitted on every training image at `size` px (cached in cache_dir with its filenames)."""
    from embedlab.embedding.inference import _check_spread, _dataset, _pixels
    from embedlab.projection import pca_components, pca_reducer
    from embedlab.runtime import is_rank_zero

    cache = None if cache_dir is None else Path(cache_dir) / f"pca-{size}px-fit.pt"
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved["filenames"] == list(dataset.filenames) and saved["components"].shape[0] <= dimensions:
            return PixelPCA(saved["mean"], saved["components"], size)
    pixels, _, filenames = _pixels(_dataset(dataset, size, None), 256, "fit the PCA teacher", False)
    _check_spread(pixels, getattr(dataset, "root", ""))
    pca = pca_reducer(pca_components(dimensions, pixels.shape), 0).fit(pixels)
    mean, components = torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float()
    if cache is not None and is_rank_zero():
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"mean": mean, "components": components, "filenames": list(filenames)}, cache)
    return PixelPCA(mean, components, size)


def mixup_weights(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One blend weight ~ U(0, 1) for the batch and the shuffled partner of every image (as LightlyTrain mixes),
    both on the device (no host sync)."""
    return torch.rand((), device=device), torch.randperm(batch, device=device)


def blend(x: torch.Tensor, weight: float | torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """weight * x + (1 - weight) * x[partner]: the same mix for images, cached targets or anything per image."""
    return weight * x + (1.0 - weight) * x[partner]


class _QueueTeacher(nn.Module):
    """The queue distillation loss for one teacher's targets (Distiller's head, queue and loss, targets given)."""

    def __init__(self, student_dim: int, teacher_dim: int, queue_size: int) -> None:
        super().__init__()
        self.head = nn.Linear(student_dim, teacher_dim)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("queue", torch.zeros(int(queue_size), teacher_dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    update_queue = Distiller._update_queue  # the same first-in-first-out queue as single-teacher distillation

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the head's softmax over the queue against the (L2-normalised) targets' softmax."""
        targets = F.normalize(targets.float(), dim=1)
        self.update_queue(targets.detach())
        return distillation_loss(F.normalize(self.head(features), dim=1), targets, self.queue, filled=self.queue_filled)


class _CosineTeacher(nn.Module):
    """1 - cosine similarity between the head's output and the teacher's vector."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(student_dim, teacher_dim)

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean over the batch of 1 - cos(head(features), targets)."""
        return 1.0 - F.cosine_similarity(self.head(features), targets.float(), dim=1).mean()


class MultiTeacherDistillation(Method):
    """The registered method `multi_teacher` (TrainSettings: teachers, teacher_image_size for network teachers; its
    own options in method_args, checked by MultiTeacherArgs). Needs the training images (MethodContext.dataset) to fit
    the PCA teacher and centre the exported heads; keeps what it computes once in MethodContext.cache_dir."""

    def __init__(self, backbone: nn.Module, settings: Any, context: MethodContext) -> None:
        super().__init__(backbone, settings, context)
        if context.dataset is None:
            raise MultiTeacherError("method 'multi_teacher' needs the training images (MethodContext.dataset)")
        self.options = MultiTeacherArgs.from_mapping(settings.method_args or {}, strict=True)
        self.teachers = parse_teachers(settings.teachers)
        self.image_size = int(settings.image_size)
        self.teacher_size = settings.teacher_image_size or settings.image_size
        self.progress = bool(settings.progress)
        queue = queue_size_for(context.num_images or len(context.dataset))
        dim = backbone.embedding_dim
        self.losses = nn.ModuleDict()
        self.__dict__["_sources"] = {}  # part -> the frozen teacher (not state: rebuilt when a run resumes)
        self.__dict__["_prepared"] = False  # the PCA fit and clean targets: made by `prepare`, once
        for teacher in self.teachers:
            part = teacher_label(teacher)
            if teacher == PCA_TEACHER:
                self.pca = self._pca_teacher(settings, context)
                self.losses[part] = (
                    _QueueTeacher(dim, self.pca.dimensions, queue)
                    if self.options.pca_loss == "queue"
                    else _CosineTeacher(dim, self.pca.dimensions)
                )
            else:
                source = self._network_teacher(teacher)
                self.__dict__["_sources"][part] = source
                self.losses[part] = _QueueTeacher(dim, self._teacher_dim(source), queue)

    def _pca_teacher(self, settings: Any, context: MethodContext) -> PixelPCA:
        """The PCA teacher at the student's size with the comparison's dimensions (EmbedSettings.pca_dimensions),
        unfitted until `prepare`."""
        from embedlab.settings import EmbedSettings

        return PixelPCA.planned(context.dataset, settings.image_size, EmbedSettings().pca_dimensions)

    def _network_teacher(self, teacher: str) -> Any:
        """targets="view": a Distiller that embeds each view (resized); "clean": the teacher, whose vectors of the
        clean images `prepare` computes."""
        from embedlab.methods.distillation import teacher_backbone

        if self.options.targets == "view":
            return Distiller(1, teacher, self.teacher_size, 1, use_mixup=False)
        return teacher_backbone(teacher)

    @staticmethod
    def _teacher_dim(source: Any) -> int:
        """The teacher's embedding size."""
        return int(source.teacher.embedding_dim if isinstance(source, Distiller) else source.embedding_dim)

    def prepare(self, device: torch.device, once: Callable[[Callable[[], Any]], Any] = run_here) -> None:
        """Fit the PCA teacher and embed the clean images' targets on `device`, once for all processes: `once` runs
        the work on one rank and gives every rank its result (the training module calls this after Lightning has
        set the rank's device; a first step without it prepares here)."""
        if self.__dict__["_prepared"]:
            return
        found = once(lambda: self._prepared_targets(device))
        if "pca" in found:
            self.pca.load(*found["pca"])
        for part, (vectors, filenames) in found["clean"].items():
            index = {name: row for row, name in enumerate(filenames)}
            self.__dict__["_sources"][part] = F.normalize(vectors.float(), dim=1), index  # as a view's targets are
        self.__dict__["_prepared"] = True

    def _prepared_targets(self, device: torch.device) -> dict[str, Any]:
        """The PCA fit (mean, components) and each clean-target teacher's (vectors, filenames), on the CPU."""
        context, found = self.context, {"clean": {}}
        if hasattr(self, "pca"):
            fitted = fit_pixel_pca(context.dataset, self.image_size, self.pca.dimensions, context.cache_dir)
            found["pca"] = fitted.mean.cpu(), fitted.components.cpu()
        for teacher in self.teachers:
            if teacher == PCA_TEACHER or isinstance(self.__dict__["_sources"][teacher_label(teacher)], Distiller):
                continue
            size, progress = self.teacher_size, self.progress
            vectors = teacher_vectors(teacher, context.dataset, size, context.cache_dir, progress, device)
            found["clean"][teacher_label(teacher)] = torch.as_tensor(vectors.vectors).cpu(), list(vectors.filenames)
        return found

    def _targets(self, part: str, views: torch.Tensor, filenames: Sequence[str], mix: Any) -> torch.Tensor:
        """One teacher's description of this batch's (mixed) views."""
        if part == PCA_TEACHER:
            return self.pca(views)
        source = self.__dict__["_sources"][part]
        if isinstance(source, Distiller):
            return source.teacher_embeddings(views)
        table, index = source
        targets = table[[index[name] for name in filenames]].to(views.device)
        return blend(targets, *mix) if mix is not None else targets

    def batch_loss(self, backbone: nn.Module, views: Sequence[torch.Tensor], filenames: Sequence[str]) -> torch.Tensor:
        """Mean over teachers of each teacher's loss on the same (mixed-up) view the student sees."""
        images = views[0]
        self.prepare(images.device)
        mix = mixup_weights(images.shape[0], images.device) if self.options.mixup and self.training else None
        if mix is not None:
            images = blend(images, *mix)
        features = backbone(images)
        losses = [loss(features, self._targets(part, images, filenames, mix)) for part, loss in self.losses.items()]
        return torch.stack(losses).mean()

    def loss(self, backbone: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Needs the filenames (cached targets): use batch_loss."""
        raise MultiTeacherError("multi_teacher's loss needs the batch's filenames: call batch_loss")

    def output_parts(self) -> tuple[str, ...]:
        """The exported embedding's parts, in order ("heads" expanded to every teacher's head)."""
        heads = tuple(self.losses)
        parts = [p for name in self.options.output.split("+") for p in (heads if name == "heads" else (name,))]
        return tuple(dict.fromkeys(parts))

    def exported(self, backbone: nn.Module, images: Sequence[torch.Tensor] | None = None) -> nn.Module:
        """The backbone with every teacher's head (a HeadedBackbone sharing their weights), centred on `images`, or
        else on the training images at the student's size."""
        from embedlab.models.heads import HeadedBackbone

        model = HeadedBackbone(backbone, {part: loss.head for part, loss in self.losses.items()}, self.output_parts())
        model.meta = {**model.meta, "teachers": "+".join(self.teachers), "heads_output": list(model.output)}
        return model.fit_centres(images if images is not None else self._training_batches(model))

    def _training_batches(self, model: nn.Module) -> Any:
        """The training images at the student's size, normalised as `embed` reads them, in batches (eval mode)."""
        from embedlab.embedding.images import _dataset, _loader
        from embedlab.embedding.inference import _Normalize
        from embedlab.transforms import normalization

        device = model.centres.device
        normalise = _Normalize(*normalization()).to(device)
        loader = _loader(_dataset(self.context.dataset, self.image_size, None), 256, torch.device("cpu"), 0)
        modes = {module: module.training for module in model.modules()}  # BatchNorm frozen or not: as it was
        model.eval()
        try:
            for batch in loader:
                yield normalise(batch[0].to(device))
        finally:
            for module, mode in modes.items():
                module.training = mode
