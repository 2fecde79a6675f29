"""How the photo-library stages scale, stage by stage, measured side by side in one run on this machine.

- **embed**: `embed_to_shards` over N and 2N generated photo-like JPEGs (EfficientNet-Lite0 with its offline
  ImageNet weights, 64 px), each in a fresh process: wall seconds, images/s, peak RSS and bytes on disk. Memory
  should stay flat as N doubles (only one shard is held); `embed()` in one go is measured beside it.
- **neighbours**: the shipped Fashion-MNIST through the shipped ImageNet network (64 px): the FAISS graph's
  recall@10 against exact search on every image; then, for each `--vectors` size, vectors drawn from a Gaussian
  fitted to those embeddings: the graph build (recall@10 on 1,000 seeded queries against exact search) and every
  curation function read from it (benchmarks/_scale_neighbours.py).
- **umap**: UMAP of the real embeddings fitted on every point against fitted on a seeded sample and transforming
  the rest (`Projector(max_fit=...)`): seconds and 10-NN preservation (the share of each point's 10 nearest
  neighbours in the embedding that stay among its 10 nearest on the map); and the sample + transform route on
  `--umap-vectors` Gaussian vectors, timed.
- **map**: inline against linked pages by size: write seconds, HTML bytes per point, first paint and hover in
  headless Chromium (benchmarks/_scale_map.py).
- **npz**: bytes the filenames of `--names` images (one of them a 195-character path) take in an .npz, as a
  fixed-width string array (the old format) and as UTF-8 JSON bytes (today's).

    .venv/bin/python benchmarks/bench_scale.py --json benchmarks/results/scale.json
    .venv/bin/python benchmarks/bench_scale.py --json benchmarks/results/scale.json --add-umap-scale \
        --umap-vectors 1000000 --umap-max-fit 100000   # UMAP of a million, alone, added to the result
    .venv/bin/python benchmarks/bench_scale.py --images 500 --vectors 20000 --umap-vectors 20000 \
        --map-linked 20000 --names 20000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import machine_info, save_result
from _scale_map import map_rows
from _scale_neighbours import curation_rows, gaussian_like, real_rows, real_vectors
from bench_thumbnails import make_images

CHILD = """
import json, resource, sys, time
from embedlab import embed, embed_to_shards
folder, out, mode, shard = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
if mode == "shards":
    embed_to_shards(folder, "efficientnet_lite0", out, shard_size=shard, image_size=64, progress=False)
else:
    embed(folder, "efficientnet_lite0", image_size=64, progress=False).save(out + ".pt")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def folder_bytes(path: Path) -> int:
    """Bytes of every file under path (or of the file itself)."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def embed_rows(work: Path, images: int, shard_size: int) -> list[dict[str, Any]]:
    """embed_to_shards at N and 2N images, and embed() in one go at 2N: each in a fresh process."""
    rows = []
    for count, mode in ((images, "shards"), (2 * images, "shards"), (2 * images, "one call")):
        folder = work / f"photos-{count}"
        if not folder.is_dir():
            make_images(folder, count)
        out = work / f"emb-{count}-{mode.replace(' ', '-')}"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), str(out), mode.split()[0], str(shard_size)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        written = out if out.exists() else Path(f"{out}.pt")
        rows.append(
            {
                "stage": "embed",
                "mode": f"embed_to_shards (shards of {shard_size})" if mode == "shards" else "embed() in one go",
                "images": count,
                "seconds": round(result["seconds"], 1),
                "images_per_second": round(count / result["seconds"], 1),
                "peak_rss_mb": round(result["peak_rss_mb"], 1),
                "bytes_on_disk": folder_bytes(written),
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


def umap_rows(vectors: np.ndarray, max_fit: int) -> list[dict[str, Any]]:
    """UMAP on every point against on a seeded sample of max_fit plus transform: seconds, 10-NN preservation."""
    from embedlab.projection import Projector, neighbour_preservation

    Projector("umap", max_fit=100).fit(vectors[:300])  # numba compiles fit and transform once, outside the timings
    rows = []
    for label, limit in (("full fit", None), (f"fit on {max_fit} + transform", max_fit)):
        start = time.perf_counter()
        points = Projector("umap", seed=0, max_fit=limit).fit_transform(vectors)
        seconds = time.perf_counter() - start
        kept = neighbour_preservation(vectors, points, k=10)
        rows.append(
            {"stage": "umap", "mode": label, "vectors": len(vectors), "seconds": round(seconds, 1), "knn10_kept": kept}
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


def umap_scale_row(vectors: np.ndarray, max_fit: int) -> dict[str, Any]:
    """UMAP of many vectors by sample + transform (the route past 100,000 points): seconds and peak RSS."""
    import resource

    from embedlab.projection import Projector

    start = time.perf_counter()
    Projector("umap", seed=0, max_fit=max_fit).fit_transform(vectors)
    row = {
        "stage": "umap",
        "mode": f"gaussian fit, fit on {max_fit} + transform",
        "vectors": len(vectors),
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(f"  {row}", flush=True)
    return row


def npz_rows(names: int) -> list[dict[str, Any]]:
    """Bytes of `names` filenames (one a 195-character path) in an .npz: fixed-width strings against UTF-8 JSON."""
    import io

    from embedlab.embedding.store import _utf8_json

    filenames = [f"album{i % 100:02d}/IMG_{i:07d}.jpg" for i in range(names - 1)] + ["x" * 191 + ".jpg"]
    rows = []
    arrays = {"fixed-width strings": np.asarray(filenames, dtype=str), "UTF-8 JSON": _utf8_json(filenames)}
    for mode, array in arrays.items():
        buffer = io.BytesIO()
        np.savez(buffer, filenames=array)
        rows.append({"stage": "npz", "mode": mode, "images": names, "bytes_on_disk": buffer.tell()})
        print(f"  {rows[-1]}", flush=True)
    return rows


def neighbour_rows(real: np.ndarray, sizes: list[int]) -> list[dict[str, Any]]:
    """The FAISS graph on the real embeddings, then the graph and every curation function at each size."""
    rows = [{"stage": "neighbours", **row} for row in real_rows(real)]
    for n in sizes:
        rows += [{"stage": "neighbours", **row} for row in curation_rows(gaussian_like(real, n))]
    return rows


def readme_line(rows: list[dict[str, Any]]) -> str:
    """The figures at the largest vector count, for the README (computed from the rows)."""
    generated = [r for r in rows if r["stage"] == "neighbours" and r["data"] != "fashion-mnist real"]
    biggest = max(r["vectors"] for r in generated)
    curation = [r for r in generated if r["vectors"] == biggest]
    graph = curation[0]
    peak = max(r["peak_rss_mb"] for r in curation) / 1024
    return (
        f"{biggest:,} vectors (drawn from a Gaussian fitted to real 1280-d embeddings): the FAISS neighbour graph "
        f"(recall@10 {graph['recall_at_10']:.3f} against exact search) and every curation function in "
        f"{sum(r['seconds'] for r in curation) / 60:.1f} min on this machine, peak memory {peak:.1f} GB"
    )


def headline(rows: list[dict[str, Any]]) -> str:
    """One sentence per stage, computed from the rows."""
    shards = [r for r in rows if r["stage"] == "embed" and r["mode"].startswith("embed_to_shards")]
    one_call = next(r for r in rows if r["mode"] == "embed() in one go")
    full, sampled = [r for r in rows if r["stage"] == "umap"][:2]
    generated = [r for r in rows if r["stage"] == "neighbours" and r["data"] != "fashion-mnist real"]
    biggest = max(r["vectors"] for r in generated)
    curation = [r for r in generated if r["vectors"] == biggest]
    real = next(r for r in rows if r["stage"] == "neighbours" and "recall_at_10" in r)
    linked = max((r for r in rows if r["stage"] == "map" and r["mode"] == "linked"), key=lambda r: r["points"])
    old_npz, new_npz = (r for r in rows if r["stage"] == "npz")
    parts = [
        f"embed_to_shards peak RSS at {shards[1]['images']} vs {shards[0]['images']} images: "
        f"{shards[1]['peak_rss_mb'] / shards[0]['peak_rss_mb']:.2f}x (embed() in one go: "
        f"{one_call['peak_rss_mb'] / shards[1]['peak_rss_mb']:.2f}x the sharded run)",
        f"FAISS recall@10 {real['recall_at_10']:.3f} on the real embeddings; at {biggest:,} vectors the graph "
        f"(recall@10 {curation[0]['recall_at_10']:.3f}) and every curation function took "
        f"{sum(r['seconds'] for r in curation) / 60:.1f} min",
        f"UMAP of {full['vectors']} vectors by {sampled['mode']}: {full['seconds'] / sampled['seconds']:.1f}x the "
        f"full fit's speed, 10-NN kept {sampled['knn10_kept']:.3f} vs {full['knn10_kept']:.3f}",
        f"linked map of {linked['points']:,} points: {linked['html_bytes_per_point']:.0f} HTML bytes a point"
        + (f", first paint {linked['first_paint_ms'] / 1000:.1f} s" if "first_paint_ms" in linked else ""),
        f".npz filenames of {old_npz['images']:,} images: {new_npz['bytes_on_disk'] / old_npz['bytes_on_disk']:.2f}x "
        "the bytes of fixed-width strings",
    ]
    return "; ".join(parts)


def add_umap_scale(path: Path, vectors: int, max_fit: int) -> int:
    """Time UMAP by sample + transform alone (too long for every run) and add the row, with its own machine line,
    to an earlier result file."""
    row = umap_scale_row(gaussian_like(real_vectors(), vectors), max_fit)
    result = json.loads(path.read_text(encoding="utf-8"))
    result["rows"].append({**row, "machine": machine_info()})
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="N: the embed stage runs N and 2N images")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--vectors", type=int, nargs="+", default=[100_000, 1_000_000], help="neighbour stage sizes")
    parser.add_argument("--max-fit", type=int, default=2000, help="UMAP's fitting sample on the real embeddings")
    parser.add_argument("--umap-vectors", type=int, default=100_000, help="Gaussian vectors for UMAP by sample")
    parser.add_argument("--umap-max-fit", type=int, default=10_000, help="their fitting sample")
    parser.add_argument("--map-inline", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--map-linked", type=int, nargs="*", default=[20_000, 100_000, 300_000])
    parser.add_argument("--names", type=int, default=200_000, help="filenames in the .npz stage")
    parser.add_argument("--json", type=Path, help="write the result here (benchmarks/results/scale.json)")
    parser.add_argument(
        "--add-umap-scale", action="store_true", help="only UMAP by sample on --umap-vectors: add its row to --json"
    )
    args = parser.parse_args()
    print("embedlab bench_scale:", machine_info(), flush=True)
    if args.add_umap_scale:
        return add_umap_scale(args.json, args.umap_vectors, args.umap_max_fit)
    rows = npz_rows(args.names)
    with tempfile.TemporaryDirectory() as tmp:
        rows += embed_rows(Path(tmp), args.images, args.shard_size)
        rows += map_rows(Path(tmp) / "map", args.map_inline, args.map_linked, distinct=300)
    real = real_vectors()
    rows += neighbour_rows(real, args.vectors)
    rows += umap_rows(real, args.max_fit)
    rows.append(umap_scale_row(gaussian_like(real, args.umap_vectors), args.umap_max_fit))
    sentence = headline(rows)
    print("\n" + sentence)
    result = {"headline": sentence, "readme": readme_line(rows), "kind": "speed", "rows": rows}
    save_result(args.json, result)  # timings: machine-bound
    return 0


if __name__ == "__main__":
    sys.exit(main())
