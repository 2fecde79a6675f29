"""Self-supervised training: `train(data, run_dir, settings)` on Lightning, one registered method per run.

=================  ===========================================================================
errors.py          TrainingError (bad options are ParameterErrors from embedlab.settings)
schedule.py        learning rate, warmup + cosine schedule, the time budget, why a run stopped
module.py          SSLModule: the backbone + the method (embedlab.methods), optimizer, freeze_bn
logs.py            loss.csv, epochs.csv, skipped images; TrainResult
monitor.py         the per-epoch kNN monitor
callbacks.py       logging/monitor and atomic checkpoint callbacks
checkpoints.py     resume checks and export
run.py             train() as its phases, and the public build steps the benchmarks use
=================  ===========================================================================

A run leaves in its run directory (embedlab.rundir.RunDir): the checkpoint (resumable), the exported backbone
(+ .json metadata), loss.csv, epochs.csv and config.json.
"""

from __future__ import annotations

from embedlab.training.errors import TrainingError
from embedlab.training.logs import TrainResult
from embedlab.training.module import SSLModule
from embedlab.training.run import (
    build_loader,
    build_module,
    build_trainer,
    make_callbacks,
    open_dataset,
    resolve_settings,
    train,
)
from embedlab.training.schedule import TimeBudget, default_learning_rate, lr_factor, stop_reason
from embedlab.transforms import eval_transform, ssl_transform

__all__ = [
    "SSLModule",
    "TimeBudget",
    "TrainResult",
    "TrainingError",
    "build_loader",
    "build_module",
    "build_trainer",
    "default_learning_rate",
    "eval_transform",
    "lr_factor",
    "make_callbacks",
    "open_dataset",
    "resolve_settings",
    "ssl_transform",
    "stop_reason",
    "train",
]
