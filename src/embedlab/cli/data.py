"""Commands that get images ready: download, thumbnails."""

from __future__ import annotations

import argparse
import sys

from embedlab.cli.common import _dataset_root, _say, settings_from
from embedlab.settings import DataSettings


def cmd_download(args: argparse.Namespace) -> int:
    """Download (or prepare) a dataset and print its root folder."""
    data = settings_from(args, DataSettings)
    root = _dataset_root(args.source, data.data_dir, data.limit_per_class, not args.quiet)
    _say(str(root))
    return 0


def cmd_thumbnails(args: argparse.Namespace) -> int:
    """Build the thumbnail cache of a dataset."""
    from embedlab import datasets

    data = settings_from(args, DataSettings)
    root = _dataset_root(args.source, data.data_dir, None, not args.quiet)
    report = datasets.make_thumbnails(
        root, data.thumbnail_size, out_root=args.output, workers=args.workers, progress=not args.quiet
    )
    _say(
        f"{report.out_root}: {report.written} written, {report.skipped} up to date, {len(report.failed)} failed "
        f"({report.images_per_second:.0f} images/s)"
    )
    for relpath, reason in report.failed[:10]:
        print(f"  could not read {relpath}: {reason}", file=sys.stderr)
    return 0 if not report.failed else 1
