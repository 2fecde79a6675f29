"""`train(data, run_dir, settings)`: one self-supervised training run, read as its phases.

The build steps (`open_dataset`, `resolve_settings`, `build_module`, `build_loader`, `build_trainer`,
`make_callbacks`) are public so benchmarks assemble the same run without private helpers.
"""

from __future__ import annotations

import datetime as _dt
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from embedlab._io import remove_stale_temps, write_json
from embedlab._progress import live_bars
from embedlab.methods.base import MethodContext
from embedlab.registry import method_spec
from embedlab.rundir import RunDir
from embedlab.runtime import (
    GPU_ACCELERATORS,
    StopSignal,
    Terminated,
    is_rank_zero,
    loader_worker_init,
    quiet_lightning,
    resolve_accelerator,
    resolve_precision,
    sigterm_as_interrupt,
    train_workers,
    tune_for_gpu,
)
from embedlab.settings import TrainSettings
from embedlab.training.callbacks import AtomicLastCheckpoint, LogAndMonitor, StopTogether
from embedlab.training.checkpoints import (
    check_compatible,
    export,
    export_from_checkpoint,
    export_meta,
    read_checkpoint_info,
    recipe,
)
from embedlab.training.errors import TrainingError
from embedlab.training.logs import RunLog, TrainResult, result_from_files
from embedlab.training.module import SSLModule, resolve_small_images
from embedlab.training.monitor import knn_subset
from embedlab.training.schedule import RunTimer, TimeBudget, default_learning_rate, stop_reason

BEFORE_TRAINING = "stopped by SIGTERM before training began; run the same training again to start it"


def train(data: str | Path, run_dir: str | Path, settings: TrainSettings | None = None, **options: Any) -> TrainResult:
    """Train a self-supervised backbone on the images under `data`; results go to `run_dir` (resumable).

    `settings` is a TrainSettings (every option, its check and its help); keyword options build one or change it,
    e.g. `train("data/aid", "runs/a", epochs=5)`. Rerunning with the same run_dir resumes from its checkpoint up to
    `epochs`. Damaged images never end a run: they are skipped and listed in the run's skipped_images.json. Ctrl+C
    or a crash saves the checkpoint; a rerun resumes where it stopped.
    """
    settings = TrainSettings.from_mapping({**(settings.options() if settings else {}), **options}, strict=True)
    try:
        with sigterm_as_interrupt(BEFORE_TRAINING) as stop:  # like Ctrl+C: checkpoint, export, a clean interrupt
            return _train(data, RunDir(Path(run_dir).expanduser().resolve()), settings, stop)
    except (TrainingError, KeyboardInterrupt) as error:
        if not is_rank_zero():  # every rank stops alike (StopTogether); rank 0 says why, once
            raise SystemExit(int(getattr(error, "exit_status", 1))) from None
        raise


def _train(data: str | Path, run: RunDir, settings: TrainSettings, stop: StopSignal | None = None) -> TrainResult:
    """train() once the settings are checked: its phases."""
    if is_rank_zero():  # temporary files of a write that was killed (SIGKILL) in an earlier run
        for folder in (run.root, run.checkpoints_dir, run.exported_dir):
            remove_stale_temps(folder, recursive=False)
    done, resume_step = resume_point(run, settings)
    if done >= settings.epochs:  # finished earlier: return the existing result quickly
        if not run.exported.is_file():
            export_from_checkpoint(run, export_meta(settings, done))
        return result_from_files(run, done)
    accelerator = resolve_accelerator(settings.accelerator)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    dataset = open_dataset(data, settings)
    trainer = build_trainer(settings, accelerator)
    settings = resolve_settings(settings, len(dataset), trainer.world_size, accelerator)
    module = build_module(settings, trainer.world_size, len(dataset), dataset=dataset, cache_dir=run.teacher_cache)
    if accelerator in GPU_ACCELERATORS:
        tune_for_gpu(module)
    log = RunLog(run, done, resume_step, dataset, verify=settings.verify)
    knn_data = monitor_data(data, settings)
    callbacks = make_callbacks(run, log, knn_data, settings, stop)
    trainer.callbacks.extend(callbacks)
    config = write_config(run, data, settings, trainer.world_size, len(dataset), len(dataset.classes), done)
    fit(
        trainer,
        module,
        build_loader(dataset, settings, accelerator),
        run,
        callbacks,
        resume=done > 0,
        settings=settings,
    )
    return finish(trainer, module, run, settings, log, callbacks, config)


def resume_point(run: RunDir, settings: TrainSettings) -> tuple[int, int | None]:
    """(epochs completed, optimizer steps) of the run's checkpoint, (0, None) without one; refuses another model."""
    if not run.checkpoint.is_file():
        return 0, None
    saved, done, step = read_checkpoint_info(run.checkpoint)
    small = resolve_small_images(settings.small_images, settings.image_size)
    check_compatible(run.checkpoint, saved, recipe(settings.replace(small_images=small)))
    return done, step


def open_dataset(data: str | Path, settings: TrainSettings) -> Any:
    """The training ImageFolder with the method's augmented views; clear errors for a missing or empty folder.

    A file that fails to decode mid-epoch does not end the run: a readable image stands in for it and the
    callbacks record it (``verify="full"`` finds every such file before training).
    """
    from embedlab.datasets import DatasetError, ImageFolder
    from embedlab.transforms import ssl_transform

    root = Path(data)
    if not root.is_dir():
        raise TrainingError(
            f"Dataset folder not found: {root}. Prepare it first, e.g. "
            f"embedlab.prepare('fashion-mnist', 'data') (notebook 01)."
        )
    s = settings
    transform = ssl_transform(s.augment, s.image_size, method=s.method, min_scale=s.min_scale)
    try:
        dataset = ImageFolder(root, transform, limit_per_class=s.limit, verify=s.verify, on_error="substitute")
    except (DatasetError, OSError) as exc:
        raise TrainingError(f"Cannot train on {root}: {exc}") from None
    if len(dataset) < 2:
        raise TrainingError(
            f"{root} holds {len(dataset)} usable image(s); self-supervised training needs at "
            f"least 2 (expected class subfolders with images)."
        )
    return dataset


def fit_batch_size(batch_size: int, n_images: int, world_size: int) -> int:
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


def resolve_settings(settings: TrainSettings, n_images: int, world_size: int, accelerator: str) -> TrainSettings:
    """The settings with every 'auto' or None made concrete for this machine and dataset (what config.json shows):
    per-device batch, learning rate, stem, accelerator, precision and workers."""
    batch = fit_batch_size(settings.batch_size, n_images, world_size)
    return settings.replace(
        batch_size=batch,
        learning_rate=settings.learning_rate or default_learning_rate(batch, world_size),
        small_images=resolve_small_images(settings.small_images, settings.image_size),
        accelerator=accelerator,
        precision=resolve_precision(settings.precision, accelerator),
        num_workers=train_workers(settings.num_workers, accelerator, ranks=max(world_size // settings.num_nodes, 1)),
    )


def build_module(
    settings: TrainSettings,
    world_size: int = 1,
    num_images: int = 0,
    *,
    dataset: Any = None,
    cache_dir: Path | None = None,
) -> SSLModule:
    """The LightningModule: the registered backbone and method of `settings` (`dataset` and `cache_dir` for a
    method that prepares targets from the training images once, such as multi_teacher)."""
    context = MethodContext(world_size=world_size, num_images=num_images, dataset=dataset, cache_dir=cache_dir)
    return SSLModule(settings, context)


def build_loader(dataset: Any, settings: TrainSettings, accelerator: str) -> torch.utils.data.DataLoader:
    """Shuffled batches of views, the last incomplete batch dropped (a contrastive batch needs its negatives)."""
    workers = train_workers(settings.num_workers, accelerator)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=accelerator in ("gpu", "cuda"),
        worker_init_fn=loader_worker_init,
    )


def build_trainer(settings: TrainSettings, accelerator: str, progress: bool | None = None) -> pl.Trainer:
    """A Lightning Trainer without its own logger/checkpointing (embedlab writes the CSV logs and last.ckpt).

    Options this machine cannot honour (devices, accelerator, strategy, precision) are a one-line TrainingError.
    """
    s = settings
    precision = resolve_precision(s.precision, accelerator)
    show = s.progress if progress is None else progress
    try:
        with quiet_lightning():
            return pl.Trainer(
                max_epochs=s.epochs,
                accelerator=accelerator,
                devices=s.devices,
                num_nodes=s.num_nodes,
                strategy=s.strategy,
                precision=precision,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=show and live_bars(),
                enable_model_summary=False,
                log_every_n_steps=1,
                max_steps=-1 if s.max_steps is None else int(s.max_steps),
                num_sanity_val_steps=0,
                use_distributed_sampler=True,
            )
    except Exception as exc:  # noqa: BLE001 - Lightning raises TypeError, ValueError or MisconfigurationException
        raise TrainingError(
            f"Lightning cannot train with accelerator {accelerator!r}, devices {s.devices!r}, "
            f"strategy {s.strategy!r} and precision {precision!r}: {exc}"
        ) from None


def monitor_data(data: str | Path, settings: TrainSettings) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The kNN monitor's images (rank 0 only; None when switched off or the folder has no labels)."""
    if not (settings.knn_monitor and is_rank_zero()):
        return None
    return knn_subset(Path(data), settings.image_size, settings.limit, settings.seed, settings.knn_images)


def make_callbacks(
    run: RunDir, log: RunLog, knn_data: Any, settings: TrainSettings, stop: StopSignal | None = None
) -> list[pl.Callback]:
    """Logging + kNN monitor, the atomic checkpoint (always second), the stop decisions all ranks share, and with
    max_time the time budget and its hard cap (both counted from this run's start)."""
    agree = StopTogether(stop)
    callbacks: list[pl.Callback] = [
        LogAndMonitor(log, knn_data, verbose=settings.progress, agree=agree),
        AtomicLastCheckpoint(run.checkpoint, log),
        agree,
    ]
    if settings.max_time is not None:
        cap = RunTimer(_dt.timedelta(seconds=settings.max_time))
        callbacks += [TimeBudget(settings.max_time, verbose=settings.progress), cap]
    return callbacks


def write_config(
    run: RunDir, data: str | Path, settings: TrainSettings, world: int, images: int, classes: int, done: int
) -> dict[str, Any]:
    """config.json: the (resolved) settings plus what this run found (rank 0 writes)."""
    config = {
        "data": str(Path(data).resolve()),
        "run_dir": str(run.root),
        **settings.options(),
        "global_batch_size": settings.batch_size * world,
        "world_size": world,
        "num_images": images,
        "classes": classes,
        "method_display_name": method_spec(settings.method).display_name,
        "resumed_from_epoch": done,
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
    }
    if is_rank_zero():
        write_json(run.config, config)
    return config


def fit(
    trainer: pl.Trainer,
    module: SSLModule,
    loader: Any,
    run: RunDir,
    callbacks: list[Any],
    resume: bool,
    settings: TrainSettings | None = None,
) -> None:
    """trainer.fit, resuming from the checkpoint when there is one; Ctrl+C or SIGTERM becomes a clean
    KeyboardInterrupt (Terminated for SIGTERM) after the backbone is re-exported, or its stale export removed."""
    sigint = signal.getsignal(signal.SIGINT)
    ckpt = str(run.checkpoint) if resume or run.checkpoint.is_file() else None
    try:
        with quiet_lightning():
            trainer.fit(module, loader, ckpt_path=ckpt, weights_only=True)  # a checkpoint never runs code
    except torch.cuda.OutOfMemoryError:
        raise TrainingError(out_of_memory(settings or module.settings)) from None
    except SystemExit:
        guard = callbacks[1]
        if guard.interrupted:  # Lightning turns Ctrl+C into sys.exit(1) and SIGTERM into a SystemExit
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl+C from then on: give it back
            exported = export_after_stop(trainer, module, run, guard.saved, settings)
            stop = guard.stopped_by
            terminated = isinstance(stop, Terminated) or not isinstance(stop, KeyboardInterrupt)
            how, kind = ("stopped by SIGTERM", Terminated) if terminated else ("interrupted", KeyboardInterrupt)
            raise kind(
                f"training {how} at step {trainer.global_step}: progress saved to {run.checkpoint}; {exported}; "
                "run the same training again (same run_dir) to resume"
            ) from None
        raise


def out_of_memory(settings: TrainSettings) -> str:
    """The one line for a GPU that ran out of memory: what uses the memory and what to lower."""
    s = settings
    return (
        f"out of GPU memory training {s.method} at batch_size={s.batch_size} per device, image_size={s.image_size}, "
        f"precision={s.precision}: lower batch_size (e.g. {max(s.batch_size // 2, 2)}) or image_size, or use "
        "precision='16-mixed' (or 'bf16-mixed' from compute capability 8.0); progress so far is in the checkpoint"
    )


def export_after_stop(trainer: pl.Trainer, module: SSLModule, run: RunDir, saved: bool, settings: Any) -> str:
    """After Ctrl+C or SIGTERM: export the backbone as of the saved checkpoint, so no older export stays in its
    place; when nothing was saved (or the export fails), remove the stale export. Says which, for the one line."""
    if not trainer.is_global_zero:
        return "rank 0 exports the backbone"
    if saved and settings is not None:
        meta = {**export_meta(settings, int(trainer.current_epoch)), "stopped_at_step": int(trainer.global_step)}
        try:
            export(module.exported_model(), run, meta)
            return f"the backbone as of that step is exported to {run.exported}"
        except OSError as error:
            warnings.warn(f"could not export the backbone: {error}", stacklevel=2)
    for stale in (run.exported, run.exported.with_suffix(".json")):
        stale.unlink(missing_ok=True)
    return f"no backbone exported (an older {run.exported.name} was removed)"


def finish(
    trainer: pl.Trainer,
    module: SSLModule,
    run: RunDir,
    settings: TrainSettings,
    log: RunLog,
    callbacks: list[Any],
    config: dict[str, Any],
) -> TrainResult:
    """Say why training stopped, record the time plan, save what is unsaved and export the backbone (rank 0)."""
    completed = min(int(trainer.current_epoch), settings.epochs)
    budget = next((c for c in callbacks if isinstance(c, TimeBudget)), None)
    planned = budget.planned_steps if budget is not None else None
    if trainer.is_global_zero:
        if settings.progress:
            print(stop_reason(trainer, settings.epochs, settings.max_steps, settings.max_time, planned), flush=True)
        if budget is not None:
            write_json(run.config, {**config, **budget.summary()})
        log.flush()
        if not run.checkpoint.is_file():  # stopped before any epoch end: still save the progress
            callbacks[1].save_rank_zero(trainer)
        export(module.exported_model(), run, export_meta(settings, completed))
    return result_from_files(run, completed)
