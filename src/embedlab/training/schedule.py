"""The learning-rate schedule, the time budget that sizes it, and the one line that says why a run stopped."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer

BASE_LEARNING_RATE = 0.06  # lightly's CIFAR-10 benchmark recipe: SGD lr 0.06 per 128 images of global batch
BASE_BATCH = 128


def default_learning_rate(batch_size: int, world_size: int = 1) -> float:
    """lightly's CIFAR-10 benchmark recipe: SGD lr 0.06 x (global batch / 128)."""
    return BASE_LEARNING_RATE * batch_size * world_size / BASE_BATCH


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warmup then cosine decay to zero, as a factor of the base learning rate (per optimizer step)."""
    from lightly.utils.scheduler import cosine_warmup_schedule

    total = max(total_steps, 1)
    warm = min(max(warmup_steps, 0), total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps past the end (max_time cut, rounding) stay at 0
        return cosine_warmup_schedule(min(step, total), total, 1.0, 0.0, warm, 0.0, 1.0)


BUDGET_CALIBRATION_STEPS = 3  # timed steps (after the first, which pays for start-up) before planning, or fewer
# when they already took 5% of the budget
BUDGET_SAFETY = 0.85  # share of the remaining time the plan fills: epoch ends (kNN monitor, checkpoint) take the rest


class TimeBudget(pl.Callback):
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
        total = int(getattr(pl_module, "total_steps", planned))
        if planned < total:
            pl_module.total_steps = max(planned, 1)
            pl_module.warmup_steps = min(int(getattr(pl_module, "warmup_steps", 0)), max(planned, 1) // 10)
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
        overrun = self.clock() + left / max(pace, 1e-9) > self.started + self.budget_s
        if trainer.strategy.broadcast(overrun, src=0):  # rank 0's clock decides for every rank: all enter _fit
            self.planned_steps = min(self.planned_steps, self._fit(trainer, pl_module, pace))
            trainer.should_stop = trainer.global_step >= self.planned_steps

    def summary(self) -> dict[str, Any]:
        """The plan, for config.json."""
        return {
            "time_budget_seconds": self.budget_s,
            "planned_steps": self.planned_steps,
            "calibrated_steps_per_second": self.steps_per_second,
        }


class RunTimer(Timer):
    """Lightning's max_time cap (the hard safety net under TimeBudget), counted from this run's start: a rerun of a
    capped run gets the whole max_time again. Lightning's own Timer restores the elapsed time from the checkpoint, so
    the rerun planned a fresh budget and was then cut after the first run's leftover seconds."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Ignore the elapsed time of the run that wrote the checkpoint."""


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
