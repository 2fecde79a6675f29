#!/usr/bin/env python3
"""Download (or write, for the embedded fashion-mnist) a dataset into <data-dir>/<name>/raw/<class>/<file>.

Names: aid, eurosat, ucmerced, fashion-mnist (embedded, works offline), or the path of your own image folder.
Interrupted downloads resume when you run the same command again; a finished dataset is not fetched twice.
Exit status: 0 done, 1 an error (one line: what failed and what to do), 2 no name given, 130 interrupted.

Examples:
  python data_scripts/download_dataset.py fashion-mnist --limit 100
  python data_scripts/download_dataset.py aid --data-dir /content/data
  python data_scripts/download_dataset.py --list
"""

from __future__ import annotations

import argparse
import sys

from embedlab import datasets


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, prepare the dataset, print where it is."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="registry name or a folder of images")
    parser.add_argument("--data-dir", default="data", help="where datasets live (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="keep this many images per class (balanced)")
    parser.add_argument("--url", default=None, help="download from this URL instead of the registry's (a mirror)")
    parser.add_argument("--list", action="store_true", help="list the registry with sources and licences")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for spec in datasets.DATASETS.values():
            print(
                f"{spec.name:14s} {spec.title}\n{'':14s} source:  {spec.url or 'embedded in the package'}"
                f"\n{'':14s} licence: {spec.license}\n{'':14s} cite:    {spec.citation}\n"
            )
        return 0 if args.list else 2
    try:
        root = datasets.prepare(args.name, args.data_dir, limit=args.limit, progress=not args.quiet, url=args.url)
        folder = datasets.ImageFolder(root, verify="none")
    except (datasets.DatasetError, OSError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume the download", file=sys.stderr)
        return 130
    print(f"{root}: {len(folder)} images in {len(folder.classes)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
