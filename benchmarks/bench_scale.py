"""How the photo-library stages scale: sharded embedding's memory as the folder doubles, and UMAP by sample.

Two stages are built so far and measured here, side by side in one run:

- **embed**: `embed_to_shards` over N and 2N generated photo-like JPEGs (EfficientNet-Lite0 with its offline
  ImageNet weights, 64 px), each in a fresh process: wall seconds, images/s, peak RSS and bytes on disk. Memory
  should stay flat as N doubles (only one shard is held); `embed()` in one go is measured beside it.
- **umap**: UMAP of real embeddings (the shipped Fashion-MNIST through the shipped ImageNet network at 64 px),
  fitted on every point against fitted on a seeded sample and transforming the rest (`Projector(max_fit=...)`):
  seconds, and 10-NN preservation (the share of each point's 10 nearest neighbours in the embedding that stay
  among its 10 nearest on the map, 2,000 seeded queries).

Not measured yet (not built): FAISS neighbours and curation, the map at 100k points, several GPUs.

    .venv/bin/python benchmarks/bench_scale.py --json benchmarks/results/scale.json
    .venv/bin/python benchmarks/bench_scale.py --images 500 --umap-images 2000 --max-fit 500   # a quick look
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

from _machine import machine_info, save_result
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


def umap_rows(images_per_class: int, max_fit: int) -> list[dict[str, Any]]:
    """UMAP on every point against on a seeded sample of max_fit plus transform: seconds, 10-NN preservation."""
    from embedlab.datasets import prepare
    from embedlab.embedding import embed
    from embedlab.projection import Projector, neighbour_preservation

    root = prepare("fashion-mnist", Path(tempfile.mkdtemp()) / "data", limit=images_per_class, progress=False)
    vectors = embed(root, "efficientnet_lite0", image_size=64, progress=False).numpy()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="N: the embed stage runs N and 2N images")
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--umap-images", type=int, default=1000, help="Fashion-MNIST images per class for UMAP")
    parser.add_argument("--max-fit", type=int, default=2000, help="UMAP's fitting sample")
    parser.add_argument("--json", type=Path, help="write the result here (benchmarks/results/scale.json)")
    args = parser.parse_args()
    print("embedlab bench_scale:", machine_info(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = embed_rows(Path(tmp), args.images, args.shard_size)
    rows += umap_rows(args.umap_images, args.max_fit)
    shards = [r for r in rows if r["stage"] == "embed" and r["mode"].startswith("embed_to_shards")]
    one_call = next(r for r in rows if r["mode"] == "embed() in one go")
    full, sampled = (r for r in rows if r["stage"] == "umap")
    headline = (
        f"embed_to_shards peak RSS at {shards[1]['images']} vs {shards[0]['images']} images: "
        f"{shards[1]['peak_rss_mb'] / shards[0]['peak_rss_mb']:.2f}x (embed() in one go at {one_call['images']}: "
        f"{one_call['peak_rss_mb'] / shards[1]['peak_rss_mb']:.2f}x the sharded run); UMAP of {full['vectors']} "
        f"vectors by {sampled['mode']}: {full['seconds'] / sampled['seconds']:.1f}x the full fit's speed, 10-NN kept "
        f"{sampled['knn10_kept']:.3f} vs {full['knn10_kept']:.3f} for the full fit"
    )
    print("\n" + headline)
    save_result(args.json, {"headline": headline, "kind": "speed", "rows": rows})  # timings: machine-bound
    return 0


if __name__ == "__main__":
    sys.exit(main())
