"""Commands that get images ready: download, thumbnails."""

from __future__ import annotations

import argparse
import sys

from embedlab.cli.common import _dataset_root, _say, check_apart, check_output, settings_from
from embedlab.settings import DataSettings


def cmd_download(args: argparse.Namespace) -> int:
    """Download (or prepare) a dataset and print its root folder."""
    data = settings_from(args, DataSettings)
    check_output(data.data_dir, "--data-dir", folder=True)
    root = _dataset_root(args.source, data.data_dir, data.limit_per_class, not args.quiet)
    _say(str(root))
    return 0


def cmd_thumbnails(args: argparse.Namespace) -> int:
    """Build the thumbnail cache of a dataset."""
    from embedlab import datasets

    data = settings_from(args, DataSettings)
    if args.output:
        check_output(args.output, "--output", folder=True)
        check_apart(("--output", args.output), ("SOURCE", args.source))  # else thumbnails of thumbnails on reruns
    root = _dataset_root(args.source, data.data_dir, None, not args.quiet)
    out = args.output or datasets.thumbnail_root(root, data.thumbnail_size)
    check_output(out, "--output", folder=True)  # a read-only or full disk: one line now, not one per image
    report = datasets.make_thumbnails(
        root, data.thumbnail_size, out_root=out, workers=data.thumbnail_workers, progress=not args.quiet
    )
    _say(
        f"{report.out_root}: {report.written} written, {report.skipped} up to date, {len(report.failed)} failed "
        f"({report.images_per_second:.0f} images/s)"
    )
    for relpath, reason in report.failed[:10]:
        print(f"  could not read {relpath}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1
