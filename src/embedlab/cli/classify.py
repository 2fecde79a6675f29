"""The classify command: the exported backbone plus a linear head, trained on labeled images."""

from __future__ import annotations

import argparse
import sys

from embedlab.cli.common import _data_dir, _dataset_root, _say, check_apart, check_output, model_file, settings_from
from embedlab.settings import CurationSettings


def cmd_classify(args: argparse.Namespace) -> int:
    """Train a classifier (backbone + linear head) on a labeled dataset; print accuracy vs the linear probe."""
    import warnings

    from embedlab import classifier
    from embedlab.datasets import DatasetWarning
    from embedlab.embedding import resolve_device

    settings = settings_from(args, CurationSettings)
    resolve_device(args.device)  # --device banana / cuda:7 on a machine without it: one line, before any work
    if args.save:
        check_output(args.save, "--save")  # a path under a file, a read-only or full disk: before the training
        check_apart(("--save", args.save), ("BACKBONE", model_file(args.backbone)), ("DATA", args.data))
    root = _dataset_root(args.data, _data_dir(args), None, not args.quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # the skipped files are listed below, all of them
        result = classifier.train_classifier(
            args.backbone,
            root,
            mode=settings.classifier_mode,
            epochs=settings.classifier_epochs,
            batch_size=settings.classifier_batch_size,
            learning_rate=settings.classifier_learning_rate,
            image_size=settings.classifier_image_size,
            limit_per_class=settings.classifier_images_per_class,
            seed=settings.seed,
            device=args.device,
            progress=not args.quiet,
            verify=settings.classifier_verify,
        )
    _say(result.summary())
    if skipped := getattr(result, "skipped", None):
        names = "; ".join(f"{name} ({' '.join(why.split())})" for name, why in skipped)
        print(f"skipped {len(skipped)} file(s) that could not be used: {names}", file=sys.stderr)
    if args.save:
        from embedlab._io import torch_save

        torch_save(result.model.state_dict(), args.save)
        _say(f"wrote classifier weights to {args.save}")
    return 0
