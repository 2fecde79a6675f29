"""The run's logs: loss.csv (one row per step), epochs.csv (one row per epoch), skipped_images.json, and the
TrainResult read back from them. Rows are kept in memory and the files rewritten atomically (rank 0 only)."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedlab._io import atomic_open, write_json
from embedlab.rundir import RunDir

LOSS_FIELDS = ("epoch", "step", "loss", "lr", "images_per_second")
EPOCH_FIELDS = ("epoch", "steps", "loss", "knn_accuracy", "output_std", "seconds", "images_per_second")


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


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts ([] when it does not exist)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write rows to a CSV file atomically."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


class RunLog:
    """Step and epoch rows plus the skipped images of one run, rewritten atomically on flush.

    On resume it keeps the steps the checkpoint holds (``step <= resume_step``, also those of an epoch that was
    interrupted midway, so the log continues without a gap) and the epochs it completed.
    """

    def __init__(
        self, run: RunDir, resume_epoch: int, resume_step: int | None = None, dataset: Any = None, verify: str = ""
    ) -> None:
        self.run, self.verify = run, verify
        steps = read_csv(run.loss_log)
        self.steps = (
            [r for r in steps if int(float(r["epoch"])) < resume_epoch]
            if resume_step is None
            else [r for r in steps if int(float(r["step"])) <= resume_step]
        )
        self.epochs = [r for r in read_csv(run.epoch_log) if int(float(r["epoch"])) < resume_epoch]
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
                f"listed in {self.run.skipped_images}.",
                DatasetWarning,
                stacklevel=2,
            )

    def flush(self) -> None:
        """Write both CSV files (and the skipped-images list, when there is one) atomically."""
        write_csv(self.run.loss_log, LOSS_FIELDS, self.steps)
        write_csv(self.run.epoch_log, EPOCH_FIELDS, self.epochs)
        if self.skipped or self.verify == "none":  # with verify="none" an empty list must not read as "all good"
            rows = [{"filename": f, "reason": r} for f, r in self.skipped.items()]
            report = {"count": len(self.skipped), "skipped": rows}
            if self.verify in VERIFY_NOTES:
                report.update(verify=self.verify, note=VERIFY_NOTES[self.verify])
            write_json(self.run.skipped_images, report)


# What skipped_images.json can promise under each verify mode: only "full" decodes every file before training.
VERIFY_NOTES = {
    "full": "every file was decoded before training: this list is complete",
    "header": "headers were checked before training; files damaged after their header are listed only when "
    "training drew them: files not drawn were not checked (verify='full' checks them all)",
    "none": "files were not checked before training: only the damaged files training drew are listed; files not "
    "drawn were not checked (verify='full' checks them all)",
}


def result_from_files(run: RunDir, epochs: int) -> TrainResult:
    """A TrainResult from the run directory's logs (after training, and for a run that finished earlier)."""
    steps = read_csv(run.loss_log)
    rows = read_csv(run.epoch_log)
    seconds = sum(float(r["seconds"]) for r in rows)
    images = sum(float(r["images_per_second"]) * float(r["seconds"]) for r in rows)
    return TrainResult(
        run_dir=run.root,
        checkpoint=run.checkpoint,
        exported=run.exported,
        loss_log=run.loss_log,
        epochs=epochs,
        final_loss=float(steps[-1]["loss"]) if steps else float("nan"),
        seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else 0.0,
        knn_history=[float(r["knn_accuracy"]) for r in rows if r.get("knn_accuracy")],
        epoch_log=run.epoch_log,
    )
