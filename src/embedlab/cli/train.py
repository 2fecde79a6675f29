"""The train command: a self-supervised model from unlabeled images, its options those of TrainSettings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from embedlab.cli.common import _data_dir, _dataset_root, _say, check_apart, check_output, settings_from
from embedlab.settings import TrainSettings


def cmd_train(args: argparse.Namespace) -> int:
    """Train a self-supervised model on a dataset."""
    from embedlab import training

    settings = settings_from(
        args, TrainSettings, knn_monitor=not args.no_knn, progress=not args.quiet
    )  # bad values fail before any work
    check_output(args.run_dir, "RUN_DIR", folder=True)  # a read-only or full disk: before any training
    check_apart(("RUN_DIR", args.run_dir), ("DATA", args.data))  # a run inside the images would be trained on
    root = _dataset_root(args.data, _data_dir(args), settings.limit, not args.quiet)
    result = training.train(root, args.run_dir, settings=settings)
    _say(
        f"trained {result.epochs} epochs in {result.seconds:.0f} s ({result.images_per_second:.1f} images/s), "
        f"final loss {result.final_loss:.3f}"
    )
    _say(f"checkpoint: {result.checkpoint}")
    _say(f"exported backbone: {result.exported}")
    if settings.verify == "none":
        from embedlab.rundir import RunDir

        print(
            f"note: --verify none: damaged files are listed only when training drew them; files not "
            f"drawn were not checked (--verify full checks them all){_listed(RunDir(args.run_dir))}",
            file=sys.stderr,
        )
    return 0


def _listed(run: Any) -> str:
    """Where the skipped files are listed, when a list was written."""
    return f"; see {run.skipped_images}" if run.skipped_images.is_file() else ""
