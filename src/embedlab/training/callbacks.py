"""Lightning callbacks of a training run: step/epoch logging with the kNN monitor, atomic checkpoints, and the stop
decisions that every DDP rank must share (a non-finite loss, SIGTERM)."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from embedlab._io import atomic_path, write_failed
from embedlab.runtime import StopSignal, Terminated
from embedlab.training.errors import TrainingError
from embedlab.training.logs import RunLog
from embedlab.training.monitor import KNN_K, knn_monitor


class LogAndMonitor(pl.Callback):
    """Record loss, lr and images/s per step; loss, kNN accuracy and time per epoch (rank 0 writes)."""

    def __init__(
        self,
        log: RunLog,
        knn_data: tuple[torch.Tensor, torch.Tensor] | None,
        verbose: bool,
        agree: StopTogether | None = None,
    ) -> None:
        self.run_log, self.knn_data, self.verbose, self.agree = log, knn_data, verbose, agree
        self.last_time = self.epoch_start = time.perf_counter()
        self.epoch_images = 0
        self.step_lr = 0.0
        # Lightning resumes an interrupted epoch without on_train_epoch_start: its logged steps count here
        self.epoch_losses = [float(r["loss"]) for r in log.steps if int(float(r["epoch"])) >= log.resume_epoch]

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """An epoch resumed midway already has steps in the log: they count in this epoch's row."""
        self.last_time = self.epoch_start = time.perf_counter()
        self.epoch_images = 0
        self.epoch_losses = [
            float(r["loss"]) for r in self.run_log.steps if int(float(r["epoch"])) == trainer.current_epoch
        ]

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """The heads' learning rate (= learning_rate x schedule) of this step."""
        self.step_lr = trainer.optimizers[0].param_groups[-1]["lr"]

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """One loss.csv row; images that failed to decode are recorded as skipped."""
        from embedlab.datasets import SUBSTITUTED

        now = time.perf_counter()
        images = int(batch[0][0].shape[0]) * trainer.world_size
        speed = images / max(now - self.last_time, 1e-9)
        self.last_time = now
        loss = self.step_loss(outputs)
        self.epoch_images += images
        self.epoch_losses.append(loss)
        pl_module.log("img/s", speed, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
        if trainer.is_global_zero:
            self.run_log.skip([f for f, label in zip(batch[2], batch[1].tolist()) if label == SUBSTITUTED])
            row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "loss": f"{loss:.6f}"}
            self.run_log.steps.append({**row, "lr": f"{self.step_lr:.6g}", "images_per_second": f"{speed:.2f}"})

    def step_loss(self, outputs: Any) -> float:
        """The step's loss on the host: as StopTogether already read it (no second host sync), else from `outputs`."""
        if self.agree is not None:
            return self.agree.loss
        return float(outputs["loss"].detach()) if isinstance(outputs, dict) else float(outputs)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """One epochs.csv row with the kNN monitor's accuracy; both logs flushed."""
        seconds = time.perf_counter() - self.epoch_start
        if not trainer.is_global_zero:
            return
        knn, spread = knn_monitor(pl_module, self.knn_data) if self.knn_data else (None, None)
        mean_loss = float(np.mean(self.epoch_losses)) if self.epoch_losses else float("nan")
        self.run_log.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "steps": len(self.epoch_losses),
                "loss": f"{mean_loss:.6f}",
                "knn_accuracy": "" if knn is None else f"{knn:.4f}",
                "output_std": "" if spread is None else f"{spread:.5f}",
                "seconds": f"{seconds:.2f}",
                "images_per_second": f"{self.epoch_images / max(seconds, 1e-9):.2f}",
            }
        )
        self.run_log.flush()
        if self.verbose:
            knn_text = "" if knn is None else f", kNN accuracy (k={KNN_K}) {knn:.4f}, output std {spread:.4f}"
            print(
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: loss {mean_loss:.4f}{knn_text}, "
                f"{seconds:.0f} s",
                flush=True,
            )


class AtomicLastCheckpoint(pl.Callback):
    """Save the run's last.ckpt atomically after every epoch, and on KeyboardInterrupt or a crash."""

    def __init__(self, path: Path, log: RunLog) -> None:
        self.path, self.run_log = path, log
        self.epoch_done = False
        self.interrupted = False  # Ctrl+C or SIGTERM
        self.stopped_by: BaseException | None = None
        self.saved = False  # whether the progress at the stop was saved (finite weights, a successful write)

    def save(self, trainer: Any) -> None:
        """Every rank calls it (it keeps them in step); global rank 0 writes; a full disk is one OSError."""
        if trainer.is_global_zero:
            with atomic_path(self.path) as tmp:
                try:
                    trainer.save_checkpoint(tmp)
                except (RuntimeError, OSError) as error:
                    raise write_failed(self.path, error) from None
        else:
            trainer.save_checkpoint(self.path)  # non-zero ranks write nothing

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.epoch_done = True
        self.save(trainer)
        self.epoch_done = False

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint["embedlab"] = {"epochs_completed": trainer.current_epoch + int(self.epoch_done)}

    def save_rank_zero(self, trainer: Any) -> None:
        """Save from global rank 0 alone (no barrier: the other ranks may not be here)."""
        with atomic_path(self.path) as tmp:
            try:
                trainer.strategy.save_checkpoint(trainer._checkpoint_connector.dump_checkpoint(), tmp)
            except (RuntimeError, OSError) as error:
                raise write_failed(self.path, error) from None

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Ctrl+C, SIGTERM or a crash: save the progress (unless the weights went non-finite) so a rerun resumes."""
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        self.interrupted = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        self.stopped_by = exception
        if not trainer.is_global_zero or isinstance(exception, TrainingError):
            return
        if not all(bool(torch.isfinite(p).all()) for p in pl_module.parameters()):
            return
        try:
            self.save_rank_zero(trainer)
            self.run_log.flush()
        except Exception as error:  # noqa: BLE001 - the original exception matters more than this one
            warnings.warn(f"could not save a checkpoint after {type(exception).__name__}: {error}", stacklevel=2)
            return
        self.saved = True
        if not self.interrupted:
            print(
                f"\ntraining stopped by {type(exception).__name__}: progress saved to {self.path}; fix the "
                f"cause and run the same training again (same run_dir) to resume.",
                file=sys.stderr,
                flush=True,
            )


class StopTogether(pl.Callback):
    """Before each backward pass the ranks agree, in one all-reduce read with the step's loss (one host sync), whether
    any rank's loss is not finite or any rank got SIGTERM; then every rank raises the same error at the same step.
    One rank raising alone leaves the others waiting in the gradient all-reduce until the 30-minute timeout."""

    def __init__(self, stop: StopSignal | None = None) -> None:
        self.stop = stop
        self.loss = float("nan")  # this rank's loss of the current step, on the host (LogAndMonitor logs it)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Lightning installed its SIGTERM handler (it broadcasts inside the handler under DDP): ours goes back."""
        if self.stop is not None:
            self.stop.install()

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        """Agree on stopping; raise TrainingError (a non-finite loss) or Terminated (SIGTERM) on every rank alike."""
        received = float(self.stop is not None and self.stop.received)
        loss = loss.detach().float().reshape(1)
        flags = torch.stack([(~torch.isfinite(loss[0])).float(), loss.new_tensor(received)])
        if trainer.world_size > 1:
            flags = trainer.strategy.reduce(flags, reduce_op="max")
        self.loss, nonfinite, terminated = torch.cat([loss, flags]).tolist()
        if nonfinite:
            where = "" if trainer.world_size == 1 else " on one of the ranks"
            raise TrainingError(
                f"loss became non-finite{where} at step {trainer.global_step}: lower learning_rate "
                f"(now {pl_module.learning_rate}) or use precision=32."
            )
        if terminated:
            raise Terminated(f"stopped by SIGTERM at step {trainer.global_step}")
