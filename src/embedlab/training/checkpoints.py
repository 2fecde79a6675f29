"""Resume and export: what an existing checkpoint holds, whether this run may continue it, the exported backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from embedlab.rundir import RunDir
from embedlab.settings import TrainSettings
from embedlab.training.errors import TrainingError

# The recipe: settings that change the network or what it learns. Continuing or returning a run with other values
# would silently ignore them, so it is an error (epochs, batch size, budgets and runtime options may change).
RECIPE = (
    "backbone",
    "method",
    "small_images",
    "layers",
    "init",
    "augment",
    "image_size",
    "min_scale",
    "freeze_bn",
    "backbone_lr_scale",
    "method_args",
)


def recipe(settings: TrainSettings) -> dict[str, Any]:
    """The recipe of a run (small_images resolved), with the options its method reads (its registry line)."""
    from embedlab.registry import method_spec

    keys = (*RECIPE, *method_spec(settings.method).reads)
    return {key: getattr(settings, key) for key in keys}


def read_checkpoint_info(path: Path) -> tuple[dict[str, Any], int, int]:
    """Hyper-parameters, completed epochs and optimizer steps of an existing last.ckpt (clear error if unreadable)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from the file
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        what = "holds Python objects beyond weights (refused: loading it could run code)"
        what = what if "weights only" in str(exc).lower() else f"is not a readable checkpoint ({type(exc).__name__})"
        raise TrainingError(f"{path} {what}; delete it to start over.") from None
    hparams = dict(ckpt.get("hyper_parameters") or {})
    info = ckpt.get("embedlab") or {}
    done = int(info.get("epochs_completed", ckpt.get("epoch", 0)))
    return hparams, done, int(ckpt.get("global_step", 0))


def check_compatible(path: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """A checkpoint of another recipe cannot be resumed or returned as finished: name what differs."""
    diff = [k for k in wanted if k in saved and saved[k] != wanted[k]]
    if diff:
        have = ", ".join(f"{k}={saved[k]!r}" for k in diff)
        want = ", ".join(f"{k}={wanted[k]!r}" for k in diff)
        raise TrainingError(
            f"{path} was trained with {have}, but this run asks for {want}: use a new run_dir "
            f"(or delete {path.parent}) to train the new recipe."
        )


def export_meta(settings: TrainSettings, epochs: int) -> dict[str, Any]:
    """What the exported backbone's metadata records about its training (embed reads image_size from it)."""
    keys = ("image_size", "method", "augment", "init")
    meta = {**{k: getattr(settings, k) for k in keys}, "epochs": epochs}
    if settings.method == "distillation":  # the comparison names the teacher and adds it as a baseline row
        from embedlab.methods.distillation import default_teacher_image_size

        size = settings.teacher_image_size or default_teacher_image_size(settings.teacher, settings.image_size)
        meta.update(teacher=settings.teacher, teacher_image_size=size)
    if settings.method == "multi_teacher":  # what the student learned from (each teacher is a row of the comparison)
        meta.update(teachers=settings.teachers, teacher_image_size=settings.teacher_image_size or settings.image_size)
    return meta


def export(backbone: Any, run: RunDir, meta: dict[str, Any]) -> Path:
    """Write the run's exported backbone (+ .json metadata); a failed write (a full disk) is one OSError."""
    from embedlab._io import write_failed
    from embedlab.models import export_backbone

    try:
        return export_backbone(backbone, run.exported, extra_meta=meta)
    except (RuntimeError, OSError) as error:
        raise write_failed(run.exported, error) from None


def export_from_checkpoint(run: RunDir, meta: dict[str, Any]) -> Path:
    """Export the backbone of the run's checkpoint (a finished run whose export went missing)."""
    from embedlab.models import load_backbone

    return export(load_backbone(run.checkpoint), run, meta)
