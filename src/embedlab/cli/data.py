"""Commands that make data and models: download, thumbnails, train, classify."""

from __future__ import annotations

import argparse
import sys

from embedlab.cli.common import _dataset_root, _say


def cmd_download(args: argparse.Namespace) -> int:
    """Download (or prepare) a dataset and print its root folder."""
    root = _dataset_root(args.dataset, args.data_dir, args.limit, not args.quiet)
    _say(str(root))
    return 0


def cmd_thumbnails(args: argparse.Namespace) -> int:
    """Build the thumbnail cache of a dataset."""
    from embedlab import datasets

    root = _dataset_root(args.dataset, args.data_dir, None, not args.quiet)
    report = datasets.make_thumbnails(
        root, args.size, out_root=args.output, workers=args.workers, progress=not args.quiet
    )
    _say(
        f"{report.out_root}: {report.written} written, {report.skipped} up to date, {len(report.failed)} failed "
        f"({report.images_per_second:.0f} images/s)"
    )
    for relpath, reason in report.failed[:10]:
        print(f"  could not read {relpath}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1


def cmd_train(args: argparse.Namespace) -> int:
    """Train a self-supervised model on a dataset."""
    from embedlab import training
    from embedlab.settings import TrainSettings

    settings = TrainSettings.from_mapping(
        {**vars(args), "limit": None, "knn_monitor": not args.no_knn, "progress": not args.quiet}
    )  # bad values fail before any work
    root = _dataset_root(args.data, args.data_dir, args.limit, not args.quiet)
    result = training.train(root, args.run_dir, **settings.options())
    _say(
        f"trained {result.epochs} epochs in {result.seconds:.0f} s ({result.images_per_second:.1f} images/s), "
        f"final loss {result.final_loss:.3f}"
    )
    _say(f"checkpoint: {result.checkpoint}")
    _say(f"exported backbone: {result.exported}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """Train a classifier (backbone + linear head) on a labeled dataset; print accuracy vs the linear probe."""
    from embedlab import finetune
    from embedlab.embedding import resolve_device

    resolve_device(args.device)  # --device banana / cuda:7 on a machine without it: one line, before any work
    root = _dataset_root(args.data, args.data_dir, args.limit, not args.quiet)
    result = finetune.train_classifier(
        args.backbone,
        root,
        mode=args.mode,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        image_size=args.image_size,
        seed=args.seed,
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
