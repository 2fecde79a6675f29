"""The LightningModule of self-supervised training: a registered backbone plus a registered method.

It has no method branches: the method (embedlab.methods) owns its heads and loss; the module owns the backbone,
the optimizer and its schedule, and BatchNorm freezing for runs that continue from ImageNet weights.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from embedlab.methods import build_method
from embedlab.methods.base import MethodContext
from embedlab.settings import TrainSettings
from embedlab.training.errors import TrainingError
from embedlab.training.schedule import default_learning_rate, lr_factor

WEIGHT_DECAY = 5e-4
SGD_MOMENTUM = 0.9
SMALL_IMAGE_SIZE = 64  # small_images="auto" gives a CIFAR-style stem to images of this size and less


def resolve_small_images(small_images: bool | str, image_size: int) -> bool:
    """'auto' -> True for images of SMALL_IMAGE_SIZE px or less (a CIFAR-style stem keeps their resolution)."""
    return image_size <= SMALL_IMAGE_SIZE if small_images == "auto" else bool(small_images)


def _exported_weights(path: str, backbone: Any) -> dict[str, Any]:
    """The weights of an exported backbone for `backbone`; a TrainingError when it holds another architecture."""
    from embedlab.models import load_backbone

    found = load_backbone(path)
    if found.state_dict().keys() != backbone.state_dict().keys() or any(
        a.shape != b.shape for a, b in zip(found.state_dict().values(), backbone.state_dict().values())
    ):
        raise TrainingError(
            f"init {path} holds a {found.name} backbone (small_images={found.small_images}, layers={found.layers}); "
            f"set backbone, small_images and layers to match it"
        )
    return found.state_dict()


class SSLModule(pl.LightningModule):
    """`self.backbone` (an embedlab Backbone, what gets exported) and `self.method` (heads + loss)."""

    def __init__(
        self, settings: TrainSettings, context: MethodContext | None = None, learning_rate: float | None = None
    ) -> None:
        super().__init__()
        from embedlab.models import create_backbone

        context = context or MethodContext()
        small = resolve_small_images(settings.small_images, settings.image_size)
        self.settings = settings.replace(small_images=small)
        self.learning_rate = float(
            learning_rate or settings.learning_rate or default_learning_rate(settings.batch_size, context.world_size)
        )
        resolved = {"small_images": small, "learning_rate": self.learning_rate}
        self.save_hyperparameters({**settings.options(), **resolved, "world_size": context.world_size})
        weights = settings.init if settings.init in (None, "imagenet") else None
        self.backbone = create_backbone(settings.backbone, weights, small_images=small, layers=settings.layers)
        if settings.init != weights:  # an exported backbone.pt: continue training it
            self.backbone.load_state_dict(_exported_weights(settings.init, self.backbone))
        self.method = build_method(settings.method, self.backbone, self.settings, context)
        self.total_steps, self.warmup_steps = 1, 0  # set in configure_optimizers (a time budget may shorten them)

    def setup(self, stage: str) -> None:
        """Once Lightning has set this process's device (and the DDP group): the method prepares its targets on it,
        rank 0 computing what all ranks share."""
        trainer = self.trainer
        strategy = trainer.strategy

        def once(compute: Any) -> Any:
            return strategy.broadcast(compute() if trainer.is_global_zero else None, src=0)

        self.method.prepare(strategy.root_device, once)

    def train(self, mode: bool = True) -> SSLModule:
        """Switch train/eval mode; with freeze_bn the backbone's BatchNorm keeps its (ImageNet) statistics."""
        super().train(mode)
        if mode and self.settings.freeze_bn:
            self._freeze_bn()
        return self

    def _freeze_bn(self) -> None:
        """Put the backbone's BatchNorm layers in eval mode: running statistics stay as loaded."""
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def on_train_epoch_start(self) -> None:
        """Lightning does not call train() before fitting: apply freeze_bn here, every epoch."""
        if self.settings.freeze_bn:
            self._freeze_bn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed images with the backbone (what gets exported)."""
        return self.backbone(x)

    def exported_model(self, images: Any = None) -> nn.Module:
        """What the run exports and monitors: the backbone, or it with the method's heads (`Method.exported`)."""
        return self.method.exported(self.backbone, images)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """One step on a batch of (views, labels, filenames); labels are never used."""
        views = batch[0]
        self.method.before_step(self.backbone, self.global_step, self.total_steps)
        loss = self.method.batch_loss(self.backbone, views, batch[2])  # a non-finite loss: callbacks.StopTogether
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=views[0].shape[0])
        return loss

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Only the views go to the device: labels and filenames stay on the host, where the log reads them (reading
        them from the device would wait for the step's work, every step)."""
        return [super().transfer_batch_to_device(batch[0], device, dataloader_idx), *batch[1:]]

    def configure_optimizers(self) -> Any:
        """SGD (momentum 0.9) with linear warmup + cosine decay, stepped every optimizer step.

        The backbone's learning rate is learning_rate x backbone_lr_scale (below 1: gentler on pretrained weights).
        """
        lr = self.learning_rate
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        own = {id(p) for p in backbone}
        heads = [p for p in self.parameters() if p.requires_grad and id(p) not in own]
        groups = [{"params": backbone, "lr": lr * self.settings.backbone_lr_scale}, {"params": heads, "lr": lr}]
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=SGD_MOMENTUM, weight_decay=WEIGHT_DECAY)
        total = self.total_steps = int(self.trainer.estimated_stepping_batches)
        batches = self.trainer.num_training_batches  # set by estimated_stepping_batches
        per_epoch = batches if math.isfinite(batches) else total / max(int(self.trainer.max_epochs or 1), 1)
        # warmup_epochs, but never more than 10% of all steps: a short run must still reach its cosine decay
        self.warmup_steps = min(int(round(self.settings.warmup_epochs * per_epoch)), total // 10)
        # read at every step: a time budget (TimeBudget) may shorten the schedule once throughput is measured
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, self.total_steps, self.warmup_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
