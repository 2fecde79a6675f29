#!/usr/bin/env python3
"""Build the thumbnail cache of a dataset: <root>/../thumbnails-<size>/<same relative path>.

Shorter side resized to --size pixels (aspect kept up to 8:1, beyond that the center is kept), same file names
and formats, written atomically by parallel worker processes. Rerun after an interruption: finished thumbnails
are skipped. Prints images/s. Exit status: 0 when every image was written, 1 when some could not be read (they
are listed) or on an error (one line), 130 when interrupted.

Example:
  python data_scripts/make_thumbnails.py data/aid/raw --size 64
"""

from __future__ import annotations

import argparse
import sys

from embedlab import datasets


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the thumbnails, print the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="dataset root (the folder whose subfolders are classes), or a registry name")
    parser.add_argument("--size", type=int, default=64, help="shorter side in pixels (default: %(default)s)")
    parser.add_argument("--out-root", default=None, help="output folder (default: <root>/../thumbnails-<size>)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPUs)")
    parser.add_argument("--data-dir", default="data", help="data folder, when root is a registry name")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        root = args.root
        if root in datasets.DATASETS:
            root = datasets.prepare(root, args.data_dir, progress=not args.quiet)
        report = datasets.make_thumbnails(
            root, args.size, out_root=args.out_root, workers=args.workers, progress=not args.quiet
        )
    except (datasets.DatasetError, OSError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume (finished thumbnails are kept)", file=sys.stderr)
        return 130
    print(report)
    for rel, why in report.failed:
        print(f"  unreadable: {rel}: {why}")
    print(
        f"images/s: {report.images_per_second:.1f} ({report.written} images in {report.seconds:.2f} s, "
        f"{report.skipped} already done)"
    )
    if report.failed:
        print(f"error: {len(report.failed)} image(s) could not be read (listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
