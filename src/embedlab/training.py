"""Self-supervised training (SimCLR, MoCo v2, BYOL) on `lightly` parts inside one Lightning module.

`train(data, run_dir)` trains a backbone from `embedlab.models` on the unlabeled images of a dataset folder and
leaves in `run_dir`: checkpoints/last.ckpt (Lightning, resumable), exported/backbone.pt (+ .json metadata),
loss.csv (one row per step), epochs.csv (one row per epoch, incl. the kNN monitor) and config.json.
Rerunning with the same run_dir resumes from last.ckpt up to the requested number of epochs.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from embedlab._io import atomic_open, atomic_path, remove_stale_temps, write_json
from embedlab._progress import live_bars

METHODS: tuple[str, ...] = ("simclr", "moco", "byol", "distillation")
AUGMENT_PRESETS: tuple[str, ...] = ("natural", "aerial", "grayscale")
KNN_MONITOR_IMAGES = 2000
KNN_K = 20
CHECKPOINT_NAME = "last.ckpt"
SKIPPED_IMAGES = "skipped_images.json"  # in run_dir: images left out of training (count, files, reasons)
LOSS_FIELDS = ("epoch", "step", "loss", "lr", "images_per_second")
EPOCH_FIELDS = ("epoch", "steps", "loss", "knn_accuracy", "seconds", "images_per_second")
# Hyper-parameters that change the network's shape or objective: resuming with other values is an error.
_STRUCTURAL = ("backbone", "method", "small_images", "layers", "teacher")
_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


class TrainingError(ValueError):
    """A training input is invalid (unknown option, missing folder, incompatible checkpoint...)."""


# --------------------------------------------------------------------------------------------- augmentations
def _normalize_dict() -> dict[str, list[float]]:
    """ImageNet mean/std as lightly's transforms expect them."""
    from embedlab.models import normalization

    mean, std = normalization()
    return {"mean": list(mean), "std": list(std)}


def _blur_prob(image_size: int, prob: float) -> float:
    """Gaussian blur only pays on images of 64 px and more (SimCLR drops it for CIFAR's 32 px)."""
    return prob if image_size >= 64 else 0.0


class RandomRightAngleRotation:
    """Rotate a PIL image by 0, 90, 180 or 270 degrees (overhead imagery has no 'up')."""

    def __call__(self, image: Any) -> Any:
        """Pick one of the four right angles uniformly."""
        k = int(torch.randint(0, 4, ()).item())
        return image if k == 0 else image.rotate(90 * k)


def _aerial_view(image_size: int, min_scale: float) -> Callable[[Any], torch.Tensor]:
    """One view for overhead imagery: crops, flips both ways, right-angle rotations, milder colour jitter."""
    import torchvision.transforms as T
    from lightly.transforms import GaussianBlur

    norm = _normalize_dict()
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(min_scale, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomVerticalFlip(),
            RandomRightAngleRotation(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.3, 0.05)], p=0.8),
            T.RandomGrayscale(p=0.1),
            GaussianBlur(sigmas=(0.1, 2.0), prob=_blur_prob(image_size, 0.3)),
            T.ToTensor(),
            T.Normalize(norm["mean"], norm["std"]),
        ]
    )


def _grayscale_view(image_size: int, min_scale: float) -> Callable[[Any], torch.Tensor]:
    """One view for small gray images: crops and flips, brightness/contrast only, no blur, no hue/saturation."""
    import torchvision.transforms as T

    norm = _normalize_dict()
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(min_scale, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4)], p=0.5),
            T.ToTensor(),
            T.Normalize(norm["mean"], norm["std"]),
        ]
    )


def _natural_views(image_size: int, method: str, min_scale: float) -> list[Callable[[Any], torch.Tensor]]:
    """SimCLR's views (BYOL's asymmetric pair for method='byol'); blur only at 64 px and above."""
    if method == "byol":
        from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform

        return [
            BYOLView1Transform(
                input_size=image_size,
                min_scale=min_scale,
                gaussian_blur=_blur_prob(image_size, 1.0),
                normalize=_normalize_dict(),
            ),
            BYOLView2Transform(
                input_size=image_size,
                min_scale=min_scale,
                gaussian_blur=_blur_prob(image_size, 0.1),
                normalize=_normalize_dict(),
            ),
        ]
    from lightly.transforms.simclr_transform import SimCLRViewTransform

    view = SimCLRViewTransform(
        input_size=image_size,
        min_scale=min_scale,
        gaussian_blur=_blur_prob(image_size, 0.5),
        normalize=_normalize_dict(),
    )
    return [view, view]


_DEFAULT_MIN_SCALE = {"natural": 0.08, "aerial": 0.2, "grayscale": 0.2}


def ssl_transform(
    preset: str = "natural", image_size: int = 64, *, method: str = "simclr", min_scale: float | None = None
) -> Callable[[Any], list[torch.Tensor]]:
    """PIL image -> two augmented, normalised views (a lightly MultiViewTransform) for self-supervised training.

    Presets: "natural" (SimCLR's: crops, flips, colour jitter, grayscale, blur), "aerial" (flips both ways and
    90-degree rotations, milder colour jitter) and "grayscale" (small gray images: crops, flips,
    brightness/contrast; no colour ops or blur that mean nothing there). `min_scale` is the smallest crop area.
    """
    from lightly.transforms.multi_view_transform import MultiViewTransform

    _check_choice("augment", preset, AUGMENT_PRESETS)
    _check_choice("method", method, METHODS)
    if not isinstance(image_size, int) or image_size < 8:
        raise TrainingError(f"image_size={image_size!r} is too small: use an integer of at least 8 pixels.")
    scale = _DEFAULT_MIN_SCALE[preset] if min_scale is None else float(min_scale)
    if not 0.0 < scale <= 1.0:
        raise TrainingError(f"min_scale={min_scale!r} must be in (0, 1]: the smallest crop's share of the image.")
    if preset == "natural":
        return MultiViewTransform(_natural_views(image_size, method, scale))
    view = _aerial_view(image_size, scale) if preset == "aerial" else _grayscale_view(image_size, scale)
    return MultiViewTransform([view, view])


def eval_transform(image_size: int) -> Callable[[Any], torch.Tensor]:
    """Deterministic resize + centre crop + normalise, as the kNN monitor (and embedding) sees images."""
    import torchvision.transforms as T

    norm = _normalize_dict()
    return T.Compose(
        [T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor(), T.Normalize(norm["mean"], norm["std"])]
    )


def _check_choice(what: str, value: Any, choices: Sequence[str]) -> None:
    """Raise TrainingError naming the bad value and the valid ones."""
    if value not in choices:
        raise TrainingError(f"Unknown {what} {value!r}; choose one of: {', '.join(choices)}.")


# --------------------------------------------------------------------------------------------- the module
def default_learning_rate(method: str, batch_size: int, world_size: int = 1) -> float:
    """lightly's CIFAR-10 benchmark recipe: SGD lr 0.06 x (global batch / 128)."""
    _check_choice("method", method, METHODS)
    return 0.06 * batch_size * world_size / 128


def _lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warmup then cosine decay to zero, as a factor of the base learning rate (per optimizer step)."""
    from lightly.utils.scheduler import cosine_warmup_schedule

    total = max(total_steps, 1)
    warm = min(max(warmup_steps, 0), total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps past the end (max_time cut, rounding) stay at 0
        return cosine_warmup_schedule(min(step, total), total, 1.0, 0.0, warm, 0.0, 1.0)


class SSLModule(pl.LightningModule):
    """A backbone (`self.backbone`, an embedlab Backbone) plus a lightly head and loss for one SSL method."""

    def __init__(
        self,
        backbone: str = "resnet18",
        init: str | None = None,
        small_images: bool = False,
        layers: int | None = None,
        method: str = "simclr",
        augment: str = "natural",
        image_size: int = 64,
        learning_rate: float = 0.06,
        batch_size: int = 128,
        warmup_epochs: float = 1.0,
        temperature: float = 0.5,
        weight_decay: float = 5e-4,
        memory_bank_size: int = 4096,
        distributed: bool = False,
        freeze_bn: bool = False,
        backbone_lr_scale: float = 1.0,
        teacher: str | None = None,
        teacher_image_size: int | None = None,
        queue_size: int = 1024,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        from embedlab.models import create_backbone

        self.backbone = create_backbone(backbone, init, small_images=small_images, layers=layers)
        if method == "distillation":  # embedlab.distillation: a frozen teacher, a linear head and a queue
            from embedlab.distillation import DEFAULT_TEACHER, Distiller, default_teacher_image_size

            name = teacher or DEFAULT_TEACHER
            self.distiller = Distiller(
                self.backbone.embedding_dim,
                name,
                teacher_image_size or default_teacher_image_size(name, image_size),
                queue_size,
            )
        else:
            self._build_method(method, self.backbone.embedding_dim, temperature, memory_bank_size, distributed)

    def _build_method(self, method: str, dim: int, temperature: float, bank: int, distributed: bool) -> None:
        """Projection head(s), momentum copies and loss for the chosen method (lightly's building blocks)."""
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss
        from lightly.models.modules import (
            BYOLPredictionHead,
            BYOLProjectionHead,
            MoCoProjectionHead,
            SimCLRProjectionHead,
        )
        from lightly.models.utils import deactivate_requires_grad

        hidden = max(512, dim)
        if method == "simclr":
            self.projection_head = SimCLRProjectionHead(dim, hidden, 128)
            self.criterion = NTXentLoss(temperature=temperature, gather_distributed=distributed)
        elif method == "moco":
            self.projection_head = MoCoProjectionHead(dim, hidden, 128)
            self.criterion = NTXentLoss(
                temperature=temperature, memory_bank_size=(bank, 128), gather_distributed=distributed
            )
        else:  # byol
            self.projection_head = BYOLProjectionHead(dim, 2 * hidden, 256)
            self.prediction_head = BYOLPredictionHead(256, 2 * hidden, 256)
            self.criterion = NegativeCosineSimilarity()
        if method in ("moco", "byol"):
            self.momentum_backbone = copy.deepcopy(self.backbone)
            self.momentum_projection_head = copy.deepcopy(self.projection_head)
            deactivate_requires_grad(self.momentum_backbone)
            deactivate_requires_grad(self.momentum_projection_head)

    def train(self, mode: bool = True) -> SSLModule:
        """Switch train/eval mode; with freeze_bn the backbone's BatchNorm keeps its (ImageNet) statistics."""
        super().train(mode)
        if mode and self.hparams.freeze_bn:
            self._freeze_bn()
        return self

    def _freeze_bn(self) -> None:
        """Put the backbone's BatchNorm layers in eval mode: running statistics stay as loaded."""
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def on_train_epoch_start(self) -> None:
        """Lightning does not call train() before fitting: apply freeze_bn here, every epoch."""
        if self.hparams.freeze_bn:
            self._freeze_bn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed images with the backbone (what gets exported)."""
        return self.backbone(x)

    def _momentum(self) -> float:
        """EMA factor: BYOL ramps 0.99 -> 1 over training (cosine); MoCo v2 keeps 0.99."""
        from lightly.utils.scheduler import cosine_schedule

        if self.hparams.method == "moco":
            return 0.99
        total = max(getattr(self, "_total_steps", 1), 1)
        return cosine_schedule(min(self.global_step, total), total, 0.99, 1.0)

    @torch.no_grad()
    def _key(self, x: torch.Tensor) -> torch.Tensor:
        """Momentum-encoder projection of a view (no gradient)."""
        return self.momentum_projection_head(self.momentum_backbone(x)).detach()

    def _loss(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """The method's loss on two batches of views."""
        method = self.hparams.method
        if method == "distillation":  # one view, as LightlyTrain: the teacher's embedding of it is the target
            return self.distiller(self.backbone, x0)
        if method == "simclr":
            return self.criterion(self.projection_head(self.backbone(x0)), self.projection_head(self.backbone(x1)))
        from lightly.models.utils import update_momentum

        m = self._momentum()
        update_momentum(self.backbone, self.momentum_backbone, m)
        update_momentum(self.projection_head, self.momentum_projection_head, m)
        if method == "moco":
            query = self.projection_head(self.backbone(x0))
            return self.criterion(query, self._key(x1))
        p0 = self.prediction_head(self.projection_head(self.backbone(x0)))
        p1 = self.prediction_head(self.projection_head(self.backbone(x1)))
        return 0.5 * (self.criterion(p0, self._key(x1)) + self.criterion(p1, self._key(x0)))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """One SSL step on a batch of (views, labels, filenames); labels are never used."""
        views = batch[0]
        loss = self._loss(views[0], views[1])
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {loss.item()} at step {self.global_step}: lower learning_rate "
                f"(now {self.hparams.learning_rate}) or use precision=32."
            )
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=views[0].shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        """SGD (momentum 0.9) with linear warmup + cosine decay, stepped every optimizer step.

        The backbone's learning rate is learning_rate x backbone_lr_scale (below 1: gentler on pretrained weights).
        """
        lr = self.hparams.learning_rate
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        own = {id(p) for p in backbone}
        heads = [p for p in self.parameters() if p.requires_grad and id(p) not in own]
        groups = [{"params": backbone, "lr": lr * self.hparams.backbone_lr_scale}, {"params": heads, "lr": lr}]
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=self.hparams.weight_decay)
        total = self._total_steps = int(self.trainer.estimated_stepping_batches)
        batches = self.trainer.num_training_batches  # set by estimated_stepping_batches
        per_epoch = batches if math.isfinite(batches) else total / max(int(self.trainer.max_epochs or 1), 1)
        # warmup_epochs, but never more than 10% of all steps: a short run must still reach its cosine decay
        self._warmup_steps = min(int(round(self.hparams.warmup_epochs * per_epoch)), total // 10)
        # read at every step: a time budget (_TimeBudget) may shorten the schedule once throughput is measured
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: _lr_factor(s, self._total_steps, self._warmup_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# --------------------------------------------------------------------------------------------- callbacks
class _Recorder:
    """Keeps loss.csv / epochs.csv rows and the skipped images in memory and rewrites them atomically (rank 0).

    On resume it keeps the steps the checkpoint holds (``step <= resume_step``, also those of an epoch that was
    interrupted midway, so the log continues without a gap) and the epochs it completed.
    """

    def __init__(self, run_dir: Path, resume_epoch: int, resume_step: int | None = None, dataset: Any = None) -> None:
        self.loss_path = run_dir / "loss.csv"
        self.epoch_path = run_dir / "epochs.csv"
        self.skipped_path = run_dir / SKIPPED_IMAGES
        steps = _read_csv(self.loss_path)
        self.steps = (
            [r for r in steps if int(float(r["epoch"])) < resume_epoch]
            if resume_step is None
            else [r for r in steps if int(float(r["step"])) <= resume_step]
        )
        self.epochs = [r for r in _read_csv(self.epoch_path) if int(float(r["epoch"])) < resume_epoch]
        self.resume_epoch = resume_epoch
        self.root = Path(dataset.root) if dataset is not None else None
        self.skipped: dict[str, str] = dict(getattr(dataset, "skipped", []))

    def skip(self, filenames: Sequence[str]) -> None:
        """Record images that failed to decode mid-training (a readable image stood in for each); warn once each."""
        from embedlab.datasets import DatasetError, DatasetWarning, open_rgb

        for name in filenames:
            if name in self.skipped:
                continue
            reason = "failed to decode during training"
            try:
                open_rgb(self.root / name) if self.root is not None else None
            except DatasetError as exc:
                reason = " ".join(str(exc).split())
            self.skipped[name] = reason
            warnings.warn(
                f"skipped {name} ({reason}); training goes on without it. All skipped files are "
                f"listed in {self.skipped_path}.",
                DatasetWarning,
                stacklevel=2,
            )

    def flush(self) -> None:
        """Write both CSV files (and the skipped-images list, when there is one) atomically."""
        _write_csv(self.loss_path, LOSS_FIELDS, self.steps)
        _write_csv(self.epoch_path, EPOCH_FIELDS, self.epochs)
        if self.skipped:
            write_json(
                self.skipped_path,
                {
                    "count": len(self.skipped),
                    "skipped": [{"filename": f, "reason": r} for f, r in self.skipped.items()],
                },
            )


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts ([] when it does not exist)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write rows to a CSV file atomically."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def _make_callbacks(
    run_dir: Path, recorder: _Recorder, knn_data: tuple[torch.Tensor, torch.Tensor] | None, verbose: bool
) -> list[Any]:
    """Step/epoch logging + kNN monitor, and atomic last.ckpt saving (every epoch and on interrupt)."""

    class LogAndMonitor(pl.Callback):
        """Record loss, lr and images/s per step; loss, kNN accuracy and time per epoch."""

        def __init__(self) -> None:
            self.last_time = time.perf_counter()
            self.epoch_start = self.last_time
            self.epoch_images = 0
            # Lightning resumes an interrupted epoch without on_train_epoch_start: its logged steps count here
            self.epoch_losses: list[float] = [
                float(r["loss"]) for r in recorder.steps if int(float(r["epoch"])) >= recorder.resume_epoch
            ]
            self.knn_history: list[float] = [
                float(r["knn_accuracy"]) for r in recorder.epochs if r.get("knn_accuracy") not in (None, "")
            ]

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.last_time = self.epoch_start = time.perf_counter()
            # an epoch resumed midway already has steps in the log: count them in this epoch's row
            self.epoch_images = 0
            self.epoch_losses = [
                float(r["loss"]) for r in recorder.steps if int(float(r["epoch"])) == trainer.current_epoch
            ]

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.step_lr = trainer.optimizers[0].param_groups[-1]["lr"]  # the heads' lr (= learning_rate x schedule)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            now = time.perf_counter()
            images = int(batch[0][0].shape[0]) * trainer.world_size
            speed = images / max(now - self.last_time, 1e-9)
            self.last_time = now
            loss = float(outputs["loss"].detach()) if isinstance(outputs, dict) else float(outputs)
            self.epoch_images += images
            self.epoch_losses.append(loss)
            pl_module.log("img/s", speed, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
            if trainer.is_global_zero:
                from embedlab.datasets import SUBSTITUTED

                recorder.skip([f for f, label in zip(batch[2], batch[1].tolist()) if label == SUBSTITUTED])
                recorder.steps.append(
                    {
                        "epoch": trainer.current_epoch,
                        "step": trainer.global_step,
                        "loss": f"{loss:.6f}",
                        "lr": f"{self.step_lr:.6g}",
                        "images_per_second": f"{speed:.2f}",
                    }
                )

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            seconds = time.perf_counter() - self.epoch_start
            knn = _knn_monitor(pl_module, knn_data) if (knn_data and trainer.is_global_zero) else None
            if knn is not None:
                self.knn_history.append(knn)
            if not trainer.is_global_zero:
                return
            mean_loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else float("nan")
            recorder.epochs.append(
                {
                    "epoch": trainer.current_epoch,
                    "steps": len(self.epoch_losses),
                    "loss": f"{mean_loss:.6f}",
                    "knn_accuracy": "" if knn is None else f"{knn:.4f}",
                    "seconds": f"{seconds:.2f}",
                    "images_per_second": f"{self.epoch_images / max(seconds, 1e-9):.2f}",
                }
            )
            recorder.flush()
            if verbose:
                knn_text = "" if knn is None else f", kNN accuracy (k={KNN_K}) {knn:.4f}"
                print(
                    f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: loss {mean_loss:.4f}{knn_text}, "
                    f"{seconds:.0f} s",
                    flush=True,
                )

    class AtomicLastCheckpoint(pl.Callback):
        """Save checkpoints/last.ckpt atomically after every epoch, and on KeyboardInterrupt or a crash."""

        def __init__(self) -> None:
            self.path = run_dir / "checkpoints" / CHECKPOINT_NAME
            self.epoch_done = False
            self.interrupted = False

        def save(self, trainer: Any) -> None:
            if trainer.is_global_zero:
                with atomic_path(self.path) as tmp:
                    trainer.save_checkpoint(tmp)
            else:
                trainer.save_checkpoint(self.path)  # non-zero ranks write nothing; the call keeps ranks in step

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.epoch_done = True
            self.save(trainer)
            self.epoch_done = False

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            checkpoint["embedlab"] = {"epochs_completed": trainer.current_epoch + int(self.epoch_done)}

        def save_rank_zero(self, trainer: Any) -> None:
            """Save from global rank 0 alone (no barrier: the other ranks may not be here)."""
            with atomic_path(self.path) as tmp:
                trainer.strategy.save_checkpoint(trainer._checkpoint_connector.dump_checkpoint(), tmp)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            """Ctrl+C or a crash: save the progress (unless the weights went non-finite) so a rerun resumes."""
            self.interrupted = isinstance(exception, KeyboardInterrupt)
            if not trainer.is_global_zero or isinstance(exception, TrainingError):
                return
            if not all(bool(torch.isfinite(p).all()) for p in pl_module.parameters()):
                return
            try:
                self.save_rank_zero(trainer)
                recorder.flush()
            except Exception as error:  # noqa: BLE001 - the original exception matters more than this one
                warnings.warn(f"could not save a checkpoint after {type(exception).__name__}: {error}", stacklevel=2)
                return
            if not self.interrupted:
                print(
                    f"\ntraining stopped by {type(exception).__name__}: progress saved to {self.path}; fix the "
                    f"cause and run the same training again (same run_dir) to resume.",
                    file=sys.stderr,
                    flush=True,
                )

    return [LogAndMonitor(), AtomicLastCheckpoint()]


BUDGET_CALIBRATION_STEPS = 3  # timed steps (after the first, which pays for start-up) before planning, or fewer
# when they already took 5% of the budget
BUDGET_SAFETY = 0.85  # share of the remaining time the plan fills: epoch ends (kNN monitor, checkpoint) take the rest


class _TimeBudget(pl.Callback):
    """Fit a run into max_time: plan the steps that fit from throughput measured in the first steps and size the
    warmup + cosine schedule to them, so a capped run still warms up and anneals (Lightning's max_time stays the
    hard safety net). At each epoch end the plan is shortened if the measured pace would overrun the budget."""

    def __init__(
        self,
        budget_s: float,
        verbose: bool,
        started: float | None = None,
        calibration_steps: int = BUDGET_CALIBRATION_STEPS,
        safety: float = BUDGET_SAFETY,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget_s, self.verbose = float(budget_s), verbose
        self.started = 0.0 if started is None else started
        self._start_on_train = started is None
        self.calibration_steps, self.safety, self.clock = calibration_steps, safety, clock
        self.stamps: list[tuple[float, int]] = []  # (time, global step) at the ends of the timed steps
        self.planned_steps: int | None = None
        self.steps_per_second: float | None = None

    def _fit(self, trainer: Any, pl_module: Any, rate: float) -> int:
        """Steps that fit in the rest of the budget at `rate` steps/s; the schedule's total becomes that number."""
        step = int(trainer.global_step)
        remaining = self.budget_s - (self.clock() - self.started)
        planned = step + max(int(self.safety * remaining * rate), 0)
        planned = int(trainer.strategy.broadcast(planned, src=0))  # every rank stops at the same step
        total = int(getattr(pl_module, "_total_steps", planned))
        if planned < total:
            pl_module._total_steps = max(planned, 1)
            pl_module._warmup_steps = min(int(getattr(pl_module, "_warmup_steps", 0)), max(planned, 1) // 10)
        return min(planned, total)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """The budget counts from here, as Lightning's max_time (the hard cap) does."""
        if self._start_on_train:
            self.started = self.clock()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Time the first steps, then plan; stop once the planned step is reached."""
        if self.planned_steps is None:
            self.stamps.append((self.clock(), int(trainer.global_step)))
            (t0, s0), (t1, s1) = self.stamps[0], self.stamps[-1]
            # enough timed steps, or (one process: no rank may decide alone) slow steps that took 5% of the budget
            slow = trainer.world_size == 1 and s1 > s0 and t1 - t0 >= 0.05 * self.budget_s
            if len(self.stamps) > self.calibration_steps or slow:
                self.steps_per_second = (s1 - s0) / max(t1 - t0, 1e-9)
                self.planned_steps = self._fit(trainer, pl_module, self.steps_per_second)
                if self.verbose and trainer.is_global_zero:
                    print(
                        f"time budget {self.budget_s / 60:.1f} min: measured {self.steps_per_second:.2f} steps/s "
                        f"-> planned {self.planned_steps} steps (warmup + cosine schedule fitted to them)",
                        flush=True,
                    )
        if self.planned_steps is not None and trainer.global_step >= self.planned_steps:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Epoch ends (kNN monitor, checkpoint) cost time too: shorten the plan when the real pace would overrun."""
        if self.planned_steps is None or not self.stamps or trainer.global_step >= self.planned_steps:
            return
        t0, s0 = self.stamps[0]
        pace = (int(trainer.global_step) - s0) / max(self.clock() - t0, 1e-9)  # steps/s including epoch ends
        left = self.planned_steps - int(trainer.global_step)
        if self.clock() + left / max(pace, 1e-9) > self.started + self.budget_s:
            self.planned_steps = min(self.planned_steps, self._fit(trainer, pl_module, pace))
            trainer.should_stop = trainer.global_step >= self.planned_steps

    def summary(self) -> dict[str, Any]:
        """The plan, for config.json."""
        return {
            "time_budget_seconds": self.budget_s,
            "planned_steps": self.planned_steps,
            "calibrated_steps_per_second": self.steps_per_second,
        }


# --------------------------------------------------------------------------------------------- kNN monitor
def _knn_subset(
    root: Path,
    image_size: int,
    limit: int | None,
    seed: int,
    max_images: int,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Decode (once) up to `max_images` images for the per-epoch kNN monitor; None when there are no labels."""
    from embedlab.datasets import ImageFolder

    folder = ImageFolder(root, eval_transform(image_size), limit_per_class=limit, on_error="substitute")
    if len(folder.classes) < 2 or len(folder) < KNN_K + 2:
        return None
    rng = np.random.default_rng(seed)
    index = np.sort(rng.permutation(len(folder))[:max_images])
    images, labels = [], []
    for i in index:
        image, label, _ = folder[int(i)]
        if label >= 0:  # a damaged file (SUBSTITUTED) is left out of the monitor
            images.append(image)
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


@torch.no_grad()
def _knn_monitor(module: nn.Module, data: tuple[torch.Tensor, torch.Tensor], batch_size: int = 256) -> float:
    """Leave-one-out kNN accuracy (k=20, cosine, weighted) of the module's current backbone on the monitor subset."""
    from embedlab.evaluation import knn_accuracy

    images, labels = data
    was_training = module.training
    module.eval()
    device = next(module.backbone.parameters()).device
    try:
        vectors = torch.cat(
            [
                module.backbone(images[i : i + batch_size].to(device)).float().cpu()
                for i in range(0, len(images), batch_size)
            ]
        )
    finally:
        module.train(was_training)  # SSLModule.train re-applies freeze_bn
    return float(knn_accuracy(vectors, labels.numpy(), k=KNN_K))


# --------------------------------------------------------------------------------------------- train()
@dataclass
class TrainResult:
    """What train() produced: paths, epochs done, final loss, wall time, throughput and kNN per epoch."""

    run_dir: Path
    checkpoint: Path
    exported: Path
    loss_log: Path
    epochs: int
    final_loss: float
    seconds: float
    images_per_second: float
    knn_history: list[float] = field(default_factory=list)
    epoch_log: Path | None = None


def _is_rank_zero() -> bool:
    """True in the main process (Lightning's DDP launcher sets RANK/LOCAL_RANK/NODE_RANK in the others)."""
    return all(int(os.environ.get(var, "0") or 0) == 0 for var in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def resolve_accelerator(accelerator: str) -> str:
    """'auto' -> 'gpu' when CUDA is usable, else 'cpu'."""
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise TrainingError(f"accelerator={accelerator!r} but no CUDA GPU is visible; use accelerator='cpu' or 'auto'.")
    return accelerator


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """'auto' -> bf16-mixed on GPUs that support bf16, 16-mixed on older GPUs, 32-true on CPU (bf16 is slow there)."""
    if precision != "auto":
        return str(precision)
    if accelerator in ("gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def resolve_num_workers(
    num_workers: int | str, image_size: int, accelerator: str = "cpu", *, cpus: int | None = None
) -> int:
    """'auto' -> DataLoader worker processes for training, from measurements (benchmarks/bench_gpu.py --workers).

    On CPU the step itself uses every core and waiting for data is small (measured on 2 cores at 32 px: about 3% of
    the step with 0 workers, benchmarks/results/bench_gpu-cpu-workers.json), so with 2 cores or fewer there are no
    workers to compete with it; with more cores half of them decode (min(8, cpus // 2); not measured). On a GPU the
    step is fast and decoding + augmenting becomes the bottleneck: every core gets a worker, up to 8, also on
    Colab's 2 vCPUs (not measured: no GPU run yet).
    """
    if num_workers != "auto":
        if not isinstance(num_workers, int) or num_workers < 0:
            raise TrainingError(f"num_workers={num_workers!r}: use 'auto' or an integer >= 0.")
        return num_workers
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if accelerator in ("gpu", "cuda"):
        return min(8, cpus)
    return 0 if cpus <= 2 else min(8, cpus // 2)


def _resolve_small_images(small_images: bool | str, image_size: int) -> bool:
    """'auto' -> True for images of 64 px or less (CIFAR-style stem keeps resolution)."""
    if small_images == "auto":
        return image_size <= 64
    if not isinstance(small_images, bool):
        raise TrainingError(f"small_images={small_images!r}: use True, False or 'auto'.")
    return small_images


def _validate(
    method: str,
    backbone: str,
    augment: str,
    epochs: int,
    batch_size: int,
    image_size: int,
    init: str | None,
    learning_rate: float | None,
    backbone_lr_scale: float = 1.0,
    max_steps: int | None = None,
) -> None:
    """Clear errors for bad options before anything heavy happens."""
    from embedlab.models import BACKBONE_NAMES

    _check_choice("method", method, METHODS)
    _check_choice("backbone", backbone, BACKBONE_NAMES)
    _check_choice("augment", augment, AUGMENT_PRESETS)
    if init not in (None, "imagenet"):
        raise TrainingError(f"Unknown init {init!r}: use None (random weights) or 'imagenet'.")
    if not isinstance(epochs, int) or epochs < 1:
        raise TrainingError(f"epochs={epochs!r}: train for at least 1 epoch.")
    if not isinstance(batch_size, int) or batch_size < 2:
        raise TrainingError(f"batch_size={batch_size!r}: contrastive training needs at least 2 images per batch.")
    if not isinstance(image_size, int) or image_size < 8:
        raise TrainingError(f"image_size={image_size!r}: use an integer of at least 8 pixels.")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise TrainingError(f"max_steps={max_steps!r}: use None (no cap) or an integer >= 1.")
    if not (backbone_lr_scale >= 0 and math.isfinite(backbone_lr_scale)):
        raise TrainingError(f"backbone_lr_scale={backbone_lr_scale!r} must be a number >= 0 (1 = same as the heads).")
    if learning_rate is not None and not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise TrainingError(f"learning_rate={learning_rate!r} must be a positive number (or None for the default).")


def _check_teacher(method: str, teacher: str, teacher_image_size: int | None) -> str | None:
    """The teacher of a distillation run (None for the other methods); a clear error for an unknown one."""
    if method != "distillation":
        return None
    from embedlab.distillation import teacher_names

    if str(teacher) not in teacher_names() and not Path(str(teacher)).expanduser().is_file():
        raise TrainingError(
            f"Unknown teacher {teacher!r}: use one of {', '.join(teacher_names())}, or the path of "
            f"an exported backbone (.pt)."
        )
    if teacher_image_size is not None and (not isinstance(teacher_image_size, int) or teacher_image_size < 8):
        raise TrainingError(f"teacher_image_size={teacher_image_size!r}: use None or an integer of at least 8.")
    return str(teacher)


def _queue_size(n_images: int) -> int:
    """Distillation's queue of teacher embeddings, sized to the dataset as LightlyTrain does."""
    from embedlab.distillation import queue_size_for

    return queue_size_for(n_images)


def _open_dataset(data: str | Path, transform: Any, limit: int | None, verify: str = "header") -> Any:
    """The training ImageFolder, with clear errors for a missing or empty folder.

    A file that fails to decode mid-epoch does not end the run: a readable image stands in for it and the
    callbacks record it in skipped_images.json (``verify="full"`` finds every such file before training).
    """
    from embedlab.datasets import DatasetError, ImageFolder

    root = Path(data)
    if not root.is_dir():
        raise TrainingError(
            f"Dataset folder not found: {root}. Prepare it first, e.g. "
            f"embedlab.prepare('fashion-mnist', 'data') (notebook 01)."
        )
    try:
        dataset = ImageFolder(root, transform, limit_per_class=limit, verify=verify, on_error="substitute")
    except (DatasetError, OSError) as exc:
        raise TrainingError(f"Cannot train on {root}: {exc}") from None
    if len(dataset) < 2:
        raise TrainingError(
            f"{root} holds {len(dataset)} usable image(s); self-supervised training needs at "
            f"least 2 (expected class subfolders with images)."
        )
    return dataset


def _fit_batch_size(batch_size: int, n_images: int, world_size: int) -> int:
    """Shrink the per-device batch when the dataset is smaller than one global batch (batches drop_last)."""
    per_device = n_images // world_size
    if batch_size <= per_device:
        return batch_size
    if per_device < 2:
        raise TrainingError(
            f"{n_images} images are too few for {world_size} device(s): each needs a batch of "
            f"at least 2. Use fewer devices or more images."
        )
    warnings.warn(
        f"batch_size={batch_size} is larger than the dataset ({n_images} images over {world_size} "
        f"device(s)); using batch_size={per_device}.",
        stacklevel=3,
    )
    return per_device


def _read_checkpoint_info(path: Path) -> tuple[dict[str, Any], int, int]:
    """Hyper-parameters, completed epochs and optimizer steps of an existing last.ckpt (clear error if unreadable)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise TrainingError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}); delete it to start over."
        ) from None
    hparams = dict(ckpt.get("hyper_parameters") or {})
    info = ckpt.get("embedlab") or {}
    done = int(info.get("epochs_completed", ckpt.get("epoch", 0)))
    return hparams, done, int(ckpt.get("global_step", 0))


def _check_compatible(path: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """A checkpoint of another backbone/method (or stem/depth) cannot be resumed: say which and what to do."""
    diff = [k for k in _STRUCTURAL if k in saved and saved[k] != wanted[k]]
    if diff:
        have = ", ".join(f"{k}={saved[k]!r}" for k in _STRUCTURAL if k in saved)
        want = ", ".join(f"{k}={wanted[k]!r}" for k in _STRUCTURAL)
        raise TrainingError(
            f"{path} was trained with {have}, but this run asks for {want}. Use another run_dir "
            f"(or delete {path.parent}) to train the new model."
        )


@contextmanager
def _quiet_lightning(quiet: bool) -> Iterator[None]:
    """Hide Lightning's info banners (GPU available..., model summary) while training."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            warnings.filterwarnings("ignore", message=".*that ended before the epoch ended.*")
            warnings.filterwarnings("ignore", message=".*treespec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _result_from_files(run_dir: Path, epochs: int, exported: Path) -> TrainResult:
    """Build a TrainResult from the run directory's logs (used after training and for a finished run)."""
    steps = _read_csv(run_dir / "loss.csv")
    rows = _read_csv(run_dir / "epochs.csv")
    seconds = sum(float(r["seconds"]) for r in rows)
    images = sum(float(r["images_per_second"]) * float(r["seconds"]) for r in rows)
    knn = [float(r["knn_accuracy"]) for r in rows if r.get("knn_accuracy")]
    return TrainResult(
        run_dir=run_dir,
        checkpoint=run_dir / "checkpoints" / CHECKPOINT_NAME,
        exported=exported,
        loss_log=run_dir / "loss.csv",
        epochs=epochs,
        final_loss=float(steps[-1]["loss"]) if steps else float("nan"),
        seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else 0.0,
        knn_history=knn,
        epoch_log=run_dir / "epochs.csv",
    )


def _export(module: Any, run_dir: Path, meta: dict[str, Any]) -> Path:
    """Write exported/backbone.pt (+ .json) with the training metadata (image size, method, ...)."""
    from embedlab.models import export_backbone

    return export_backbone(module.backbone, run_dir / "exported" / "backbone.pt", extra_meta=meta)


def _export_from_checkpoint(ckpt: Path, run_dir: Path, meta: dict[str, Any]) -> Path:
    """Export the backbone of an existing checkpoint (a finished run whose export went missing)."""
    from embedlab.models import export_backbone, load_backbone

    return export_backbone(load_backbone(ckpt), run_dir / "exported" / "backbone.pt", extra_meta=meta)


def stop_reason(
    trainer: Any, epochs: int, max_steps: int | None, max_time: float | None, planned_steps: int | None = None
) -> str:
    """One line saying why training ended: all epochs, the max_steps budget, the time plan or the max_time cap."""
    step = int(trainer.global_step)
    epoch = int(trainer.current_epoch)
    if (
        planned_steps is not None
        and step >= planned_steps
        and epoch < epochs
        and (max_steps is None or planned_steps < max_steps)
    ):
        return (
            f"stopped as planned after {step} steps (in epoch {min(epoch + 1, epochs)} of {epochs}): what fits "
            f"in the {max_time / 60:.1f}-minute budget at the measured speed, schedule annealed; rerun to "
            f"continue from the checkpoint"
        )
    if max_steps is not None and step >= max_steps:
        return (
            f"stopped by max_steps={max_steps} after {step} steps (in epoch {min(epoch + 1, epochs)} of "
            f"{epochs}): the planned budget, not an interruption"
        )
    if epoch < epochs and max_time is not None:
        return (
            f"stopped by the time cap ({max_time / 60:.1f} minutes) after {step} steps, {epoch} of {epochs} "
            f"epochs: rerun to continue from the checkpoint"
        )
    return f"finished {epochs} epochs ({step} steps)"


def _make_trainer(
    epochs: int,
    accelerator: str,
    devices: int | str,
    num_nodes: int,
    strategy: str,
    precision: str,
    progress: bool,
    max_time: float | None,
    max_steps: int | None = None,
) -> pl.Trainer:
    """A Lightning Trainer without its own logger/checkpointing (embedlab writes the CSV logs and last.ckpt).

    Options this machine cannot honour (devices, accelerator, strategy, precision) are a one-line TrainingError.
    """
    try:
        return pl.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            precision=precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress and live_bars(),
            enable_model_summary=False,
            log_every_n_steps=1,
            max_time=None if max_time is None else _dt.timedelta(seconds=float(max_time)),
            max_steps=-1 if max_steps is None else int(max_steps),
            num_sanity_val_steps=0,
            use_distributed_sampler=True,
        )
    except Exception as exc:  # noqa: BLE001 - Lightning raises TypeError, ValueError or MisconfigurationException
        raise TrainingError(
            f"cannot train with accelerator={accelerator!r}, devices={devices!r}, "
            f"strategy={strategy!r}, precision={precision!r}: {exc}"
        ) from None


def train(
    data: str | Path,
    run_dir: str | Path,
    *,
    method: str = "simclr",
    backbone: str = "resnet18",
    init: str | None = None,
    small_images: bool | str = "auto",
    layers: int | None = None,
    augment: str = "natural",
    epochs: int = 10,
    batch_size: int = 128,
    image_size: int = 64,
    learning_rate: float | None = None,
    warmup_epochs: float = 1,
    precision: str | int = "auto",
    accelerator: str = "auto",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    num_workers: int | str = "auto",
    seed: int = 0,
    limit: int | None = None,
    knn_monitor: bool = True,
    progress: bool = True,
    temperature: float = 0.5,
    min_scale: float | None = None,
    max_time: float | None = None,
    knn_images: int = KNN_MONITOR_IMAGES,
    freeze_bn: bool = False,
    backbone_lr_scale: float = 1.0,
    max_steps: int | None = None,
    teacher: str = "dinov2_vitb14",
    teacher_image_size: int | None = None,
    verify: str = "header",
) -> TrainResult:
    """Train a self-supervised backbone on the images under `data`; results go to `run_dir` (resumable).

    batch_size is per device; learning_rate None = 0.06 x global batch / 128 (SGD, warmup + cosine per step).
    max_time (seconds) is a time budget: the steps that fit are planned from the throughput of the first steps and
    the warmup + cosine schedule is sized to them (config.json records the plan); the same seconds also stay a hard
    wall-clock cap (the checkpoint stays resumable). max_steps caps the optimizer steps (a budget in steps).
    freeze_bn keeps the backbone's BatchNorm statistics fixed and backbone_lr_scale < 1 trains the backbone more
    gently than the new heads: both for continuing from ImageNet weights (init="imagenet").
    method="distillation" (embedlab.distillation) trains the backbone to reproduce a frozen `teacher`'s embeddings
    ("dinov2_vitb14" through torch.hub, an embedlab backbone name with ImageNet weights, or an exported backbone
    file) of the augmented images at teacher_image_size (None: 224 for DINOv2, else image_size).
    Damaged images never end a run: they are skipped and listed in run_dir/skipped_images.json (verify="full"
    decodes every file before training). Ctrl+C or a crash saves last.ckpt; a rerun resumes where it stopped.
    """
    _validate(
        method, backbone, augment, epochs, batch_size, image_size, init, learning_rate, backbone_lr_scale, max_steps
    )
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoints" / CHECKPOINT_NAME
    small = _resolve_small_images(small_images, image_size)
    teacher_name = _check_teacher(method, teacher, teacher_image_size)
    wanted = {"backbone": backbone, "method": method, "small_images": small, "layers": layers, "teacher": teacher_name}
    if _is_rank_zero():  # temporary files of a write that was killed (SIGKILL) in an earlier run
        for folder in (run_dir, ckpt_path.parent, run_dir / "exported"):
            remove_stale_temps(folder, recursive=False)
    done, resume_step = 0, None
    if ckpt_path.is_file():
        saved, done, resume_step = _read_checkpoint_info(ckpt_path)
        _check_compatible(ckpt_path, saved, wanted)
    meta = {"image_size": image_size, "method": method, "augment": augment, "init": init, "epochs": max(done, epochs)}
    if done >= epochs:  # finished earlier: return the existing result quickly
        exported = run_dir / "exported" / "backbone.pt"
        if not exported.is_file():
            exported = _export_from_checkpoint(ckpt_path, run_dir, meta)
        return _result_from_files(run_dir, done, exported)

    accel = resolve_accelerator(accelerator)
    prec = resolve_precision(precision, accel)
    workers = resolve_num_workers(num_workers, image_size, accel)
    pl.seed_everything(seed, workers=True, verbose=False)
    dataset = _open_dataset(data, ssl_transform(augment, image_size, method=method, min_scale=min_scale), limit, verify)
    with _quiet_lightning(True):
        trainer = _make_trainer(epochs, accel, devices, num_nodes, strategy, prec, progress, max_time, max_steps)
    world = trainer.world_size
    per_device = _fit_batch_size(batch_size, len(dataset), world)
    lr = learning_rate if learning_rate is not None else default_learning_rate(method, per_device, world)
    module = SSLModule(
        backbone=backbone,
        init=init,
        small_images=small,
        layers=layers,
        method=method,
        augment=augment,
        image_size=image_size,
        learning_rate=lr,
        batch_size=per_device,
        warmup_epochs=float(warmup_epochs),
        temperature=float(temperature),
        distributed=world > 1,
        freeze_bn=bool(freeze_bn),
        backbone_lr_scale=float(backbone_lr_scale),
        teacher=teacher_name,
        teacher_image_size=teacher_image_size,
        queue_size=_queue_size(len(dataset)),
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=per_device,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=accel in ("gpu", "cuda"),
    )
    knn_data = _knn_subset(Path(data), image_size, limit, seed, knn_images) if knn_monitor and _is_rank_zero() else None
    recorder = _Recorder(run_dir, done, resume_step, dataset)
    callbacks = _make_callbacks(run_dir, recorder, knn_data, verbose=progress)
    trainer.callbacks.extend(callbacks)
    budget = _TimeBudget(max_time, verbose=progress) if max_time is not None else None
    if budget is not None:
        trainer.callbacks.append(budget)
    config = {
        "data": str(Path(data).resolve()),
        "run_dir": str(run_dir.resolve()),
        "method": method,
        "backbone": backbone,
        "init": init,
        "small_images": small,
        "layers": layers,
        "augment": augment,
        "epochs": epochs,
        "batch_size": per_device,
        "global_batch_size": per_device * world,
        "image_size": image_size,
        "learning_rate": lr,
        "warmup_epochs": warmup_epochs,
        "precision": prec,
        "accelerator": accel,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
        "world_size": world,
        "num_workers": workers,
        "seed": seed,
        "limit": limit,
        "temperature": temperature,
        "min_scale": min_scale,
        "max_time": max_time,
        "max_steps": max_steps,
        "freeze_bn": freeze_bn,
        "backbone_lr_scale": backbone_lr_scale,
        "teacher": teacher_name,
        "teacher_image_size": teacher_image_size,
        "num_images": len(dataset),
        "classes": len(dataset.classes),
        "resumed_from_epoch": done,
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
    }
    if _is_rank_zero():
        write_json(run_dir / "config.json", config)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with _quiet_lightning(True):
            trainer.fit(module, loader, ckpt_path=str(ckpt_path) if done > 0 or ckpt_path.is_file() else None)
    except SystemExit:
        if callbacks[1].interrupted:  # Lightning turns Ctrl+C into sys.exit(1): give the notebook a clean interrupt
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl+C from then on: give it back
            raise KeyboardInterrupt(
                f"training interrupted at step {trainer.global_step}: progress saved to "
                f"{ckpt_path}; run the same training again (same run_dir) to resume"
            ) from None
        raise
    completed = min(int(trainer.current_epoch), epochs)
    planned = budget.planned_steps if budget is not None else None
    if progress and trainer.is_global_zero:
        print(stop_reason(trainer, epochs, max_steps, max_time, planned), flush=True)
    if trainer.is_global_zero:
        if budget is not None:
            write_json(run_dir / "config.json", {**config, **budget.summary()})
        recorder.flush()
        if not ckpt_path.is_file():  # stopped before any epoch end: still save the progress
            callbacks[1].save_rank_zero(trainer)
        meta["epochs"] = completed
        exported = _export(module, run_dir, meta)
    else:
        exported = run_dir / "exported" / "backbone.pt"
    return _result_from_files(run_dir, completed, exported)
