#!/usr/bin/env python3
"""Measure the thumbnail cache on realistic data: N generated 600x600 JPEGs (AID-sized), shorter side -> --size.

Reports images/s of make_thumbnails for 1 and for all worker processes, the effect of JPEG draft decoding
(A/B/A/B in one run, as machine load varies), and the ImageFolder scan time. Writes into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from embedlab import datasets


def make_images(root: Path, count: int, classes: int = 10) -> None:
    """Write ``count`` 600x600 JPEGs with smooth structure plus texture (compresses like photos, not noise)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((600, 600), Image.Resampling.BICUBIC), dtype=np.int16)
        texture = rng.normal(0, 12, (600, 600, 1)).astype(np.int16)
        image = Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8))
        folder = root / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=90)


def decode_rate(files: list[Path], size: int, draft: bool) -> float:
    """Images/s of open + (draft) + resize in this process, without writing."""
    start = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            if draft:
                image.draft(None, (size, size))
            image.load()
            datasets._resize_short_side(datasets.to_rgb(image), size)
    return len(files) / (time.perf_counter() - start)


def headline(result: dict, size: int) -> str:
    """One sentence for the docs: thumbnails per second by worker count and the gain from draft decoding."""
    rates = ", ".join(
        f"{r['images_per_s']:.0f} images/s with {r['workers']} process{'es' * (r['workers'] > 1)}"
        for r in result["runs"]
    )
    draft, full = (d["images_per_s"] for d in result["decode"])
    return f"make_thumbnails at {size} px: {rates}; JPEG draft decoding {draft / full:.1f}x faster than a full decode"


def main() -> None:
    """Generate the images, run the measurements, print a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300, help="number of 600x600 JPEGs (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="thumbnail size (default: %(default)s)")
    parser.add_argument("--json", help="also write the results here, e.g. benchmarks/results/thumbnails.json")
    args = parser.parse_args()
    result: dict = {
        "benchmark": "thumbnails",
        "kind": "speed",
        "settings": {"count": args.count, "size": args.size},
        "runs": [],
    }
    work = Path(tempfile.mkdtemp(prefix="embedlab-bench-"))
    try:
        raw = work / "raw"
        make_images(raw, args.count)
        files = sorted(raw.rglob("*.jpg"))
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, Pillow {Image.__version__}, load avg {os.getloadavg()[0]:.1f}"
        )
        start = time.perf_counter()
        folder = datasets.ImageFolder(raw)
        result["scan_seconds"] = time.perf_counter() - start
        print(f"ImageFolder scan (header check) of {len(folder)} JPEGs: {result['scan_seconds']:.2f} s")
        sample = files[: min(100, len(files))]
        rates = {True: [], False: []}
        for draft in (True, False, True, False):
            rates[draft].append(decode_rate(sample, args.size, draft))
        with_draft, without = np.mean(rates[True]), np.mean(rates[False])
        print(
            f"decode+resize, 1 process: draft {with_draft:.0f} img/s, full decode {without:.0f} img/s "
            f"({with_draft / without:.1f}x)"
        )
        result["decode"] = [
            {"decode": "draft (reduced-scale JPEG)", "images_per_s": with_draft},
            {"decode": "full", "images_per_s": without},
        ]
        for workers in (1, os.cpu_count() or 1):
            out = work / f"thumbnails-w{workers}"
            report = datasets.make_thumbnails(raw, args.size, out_root=out, workers=workers, progress=False)
            print(
                f"make_thumbnails size={args.size} workers={workers}: {report.written} images in "
                f"{report.seconds:.2f} s = {report.images_per_second:.0f} images/s"
            )
            again = datasets.make_thumbnails(raw, args.size, out_root=out, workers=workers, progress=False)
            print(f"  rerun: {again.written} written, {again.skipped} skipped")
            result["runs"].append(
                {
                    "workers": workers,
                    "images": report.written,
                    "seconds": report.seconds,
                    "images_per_s": report.images_per_second,
                    "rerun_written": again.written,
                    "rerun_skipped": again.skipped,
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        from _machine import save_result  # imports torch: only now, after the worker processes are done

        result["headline"] = headline(result, args.size)
        save_result(args.json, result)


if __name__ == "__main__":
    main()
