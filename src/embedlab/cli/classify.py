"""The classify command: the exported backbone plus a linear head, trained on labeled images."""

from __future__ import annotations

import argparse

from embedlab.cli.common import _data_dir, _dataset_root, _say, settings_from
from embedlab.settings import CurationSettings


def cmd_classify(args: argparse.Namespace) -> int:
    """Train a classifier (backbone + linear head) on a labeled dataset; print accuracy vs the linear probe."""
    from embedlab import classifier
    from embedlab.embedding import resolve_device

    settings = settings_from(args, CurationSettings)
    resolve_device(args.device)  # --device banana / cuda:7 on a machine without it: one line, before any work
    root = _dataset_root(args.data, _data_dir(args), None, not args.quiet)
    result = classifier.train_classifier(
        args.backbone,
        root,
        mode=settings.classifier_mode,
        epochs=settings.classifier_epochs,
        batch_size=settings.classifier_batch_size,
        learning_rate=args.learning_rate,
        image_size=args.image_size,
        limit_per_class=settings.classifier_images_per_class,
        seed=settings.seed,
        device=args.device,
        progress=not args.quiet,
    )
    _say(result.summary())
    if args.save:
        import torch

        from embedlab._io import atomic_path

        with atomic_path(args.save) as tmp:
            torch.save(result.model.state_dict(), tmp)
        _say(f"wrote classifier weights to {args.save}")
    return 0
