"""The GPU path, measured: training images/s by size and precision, time waiting for data, embedding images/s.

On AID-sized inputs (600x600 JPEGs generated from the embedded Fashion-MNIST images; the cost is per image, so
ten classes stand in for AID's thirty), it measures:
  * training images/s of SimCLR (ResNet18, aerial augmentations, through a Lightning Trainer as train() runs it)
    at each --sizes px in 32-true and in bf16-mixed (16-mixed where the GPU lacks bf16), reading the thumbnail
    cache that notebook 01 builds;
  * the share of each step spent waiting for the next batch (DataLoader: decode + augment), per --workers value;
  * embedding images/s (embedlab.embed, random-init ResNet18 at 224 px) reading the 600x600 JPEGs.
Results are printed and written as JSON under benchmarks/results/ with the machine line. Without a GPU it runs
on the CPU (--device cpu); GPU figures exist only where it was run on a GPU.

    .venv/bin/python benchmarks/bench_gpu.py                 # on a GPU machine: 64/128/224 px, 32 vs mixed
    .venv/bin/python benchmarks/bench_gpu.py --smoke         # a tiny CPU run that checks the code (tests)
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --sizes 32 --precisions 32-true --workers 0 1 2 \
        --rounds 2 --images 100 --batch-size 16 --steps 2 --warmup 1   # num_workers on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import machine_info

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def make_aid_sized_jpegs(root: Path, n_images: int, size: int = 600, classes: int = 10) -> Path:
    """Write `n_images` RGB JPEGs of size x size px (AID's size) made from the embedded images, class subfolders."""
    from PIL import Image

    from embedlab.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist()
    raw = root / "raw"
    per_class = max(1, n_images // classes)
    rng = np.random.default_rng(0)
    for cls in range(classes):
        folder = raw / f"class{cls:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j, idx in enumerate(np.flatnonzero(labels == cls)[:per_class]):
            path = folder / f"{j:04d}.jpg"
            if path.is_file():
                continue
            gray = Image.fromarray(images[idx]).resize((size, size), Image.BICUBIC)
            tint = tuple(int(v) for v in rng.integers(120, 256, 3))  # some colour, as aerial images have
            rgb = Image.merge("RGB", [gray.point(lambda p, t=t: p * t // 255) for t in tint])
            rgb.save(path, quality=90)
    return raw


def thumbnails(raw: Path, size: int) -> Path:
    """The thumbnail cache at `size` px (embedlab.datasets.make_thumbnails), as notebook 01 builds it."""
    from embedlab.datasets import make_thumbnails, thumbnail_root

    make_thumbnails(raw, size, progress=False)
    return thumbnail_root(raw, size)


def mixed_precision(device: str) -> str:
    """bf16-mixed where supported (Ampere and newer, and CPUs), else 16-mixed."""
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        return "16-mixed"
    return "bf16-mixed"


def _timing_callback(warmup: int) -> Any:
    """A Lightning callback recording, per step after `warmup`, the wait for data and the compute time."""
    import pytorch_lightning as pl

    class StepTimes(pl.Callback):
        def __init__(self) -> None:
            self.last_end: float | None = None
            self.start = 0.0
            self.waits: list[float] = []
            self.computes: list[float] = []
            self.images = 0

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.start = time.perf_counter()
            if self.last_end is not None and trainer.global_step >= warmup:
                self.waits.append(self.start - self.last_end)  # fetching the batch + moving it to the device

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            end = time.perf_counter()
            if self.last_end is not None and trainer.global_step > warmup:
                self.computes.append(end - self.start)
                self.images += int(batch[0][0].shape[0])
            self.last_end = end

    return StepTimes()


def train_arm(
    root: Path,
    size: int,
    precision: str,
    workers: int,
    batch_size: int,
    steps: int,
    warmup: int,
    device: str,
    layers: int | None = None,
) -> dict[str, Any]:
    """Train SimCLR (ResNet18, aerial preset) for warmup + steps steps on `root`; images/s and the data-wait share."""
    import pytorch_lightning as pl

    from embedlab.runtime import quiet_lightning
    from embedlab.settings import TrainSettings
    from embedlab.training import build_module, open_dataset
    from embedlab.training.module import resolve_small_images

    torch.manual_seed(0)
    small = resolve_small_images("auto", size) and layers is None
    settings = TrainSettings(
        backbone="resnet18", small_images=small, layers=layers, augment="aerial", image_size=size, batch_size=batch_size
    )
    module = build_module(settings)
    dataset = open_dataset(root, settings)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device == "cuda",
    )
    timer = _timing_callback(warmup)
    with quiet_lightning():
        trainer = pl.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            precision=precision,
            max_steps=warmup + steps,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[timer],
        )
        start = time.perf_counter()
        trainer.fit(module, loader)
        wall = time.perf_counter() - start
    measured = sum(timer.waits) + sum(timer.computes)
    return {
        "size": size,
        "precision": precision,
        "num_workers": workers,
        "batch_size": batch_size,
        "layers": layers,
        "steps_timed": len(timer.computes),
        "images_per_second": timer.images / measured if measured else None,
        "data_wait_share": sum(timer.waits) / measured if measured else None,
        "seconds_per_step": measured / max(len(timer.computes), 1),
        "wall_seconds_incl_startup": wall,
    }


def embed_arm(raw: Path, batch_size: int, device: str, workers: int | str, size: int = 224) -> dict[str, Any]:
    """embedlab.embed of every 600x600 JPEG with a random-init ResNet18 at `size` px: images/s (after a warm-up)."""
    from embedlab.embedding import embed

    embed(
        raw,
        "resnet18",
        weights=None,
        image_size=size,
        batch_size=batch_size,
        device=device,
        num_workers=workers,
        limit=1,
        progress=False,
    )  # warm-up: start-up, first allocation
    start = time.perf_counter()
    emb = embed(
        raw,
        "resnet18",
        weights=None,
        image_size=size,
        batch_size=batch_size,
        device=device,
        num_workers=workers,
        progress=False,
    )
    seconds = time.perf_counter() - start
    return {
        "size": size,
        "images": len(emb.filenames),
        "batch_size": batch_size,
        "num_workers": workers,
        "images_per_second": len(emb.filenames) / seconds,
        "seconds": seconds,
    }


def headline(device: str, rows: list[dict[str, Any]], embed_row: dict[str, Any]) -> str:
    """One line: mean training images/s and data-wait share per size, precision and workers; embedding images/s."""
    groups: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["size"], row["precision"], row["num_workers"]), []).append(row)
    parts = [
        f"{size} px {precision} {workers}w: "
        f"{np.mean([r['images_per_second'] for r in g]):.1f} img/s, "
        f"{100 * np.mean([r['data_wait_share'] for r in g]):.0f}% waiting for data"
        for (size, precision, workers), g in groups.items()
    ]
    return (
        f"{device}: training "
        + "; ".join(parts)
        + f". Embedding {embed_row['size']} px from 600x600 JPEGs: {embed_row['images_per_second']:.1f} img/s"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings that run on a CPU in about 30 s")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument(
        "--precisions", nargs="+", default=None, help="default: 32-true and bf16-mixed (16-mixed where bf16 is missing)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="DataLoader workers per arm (default: what num_workers='auto' picks)",
    )
    parser.add_argument("--images", type=int, default=2000, help="600x600 JPEGs to generate")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per arm (cuDNN autotune, workers)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every arm, interleaved (A B A B)")
    parser.add_argument("--embed-batch-size", type=int, default=128)
    parser.add_argument("--embed-size", type=int, default=224)
    parser.add_argument("--layers", type=int, default=None, help="ResNet18 stages to keep (default: all 4)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the JPEGs go (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.images, args.batch_size, args.steps, args.warmup = [32], 40, 8, 2, 1
        args.embed_batch_size, args.embed_size, args.layers = 20, 32, 1
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate the inputs, run every arm (interleaved rounds), print a table and write the JSON."""
    args = parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    precisions = args.precisions or ["32-true", mixed_precision(device)]
    from embedlab.runtime import train_workers

    machine = machine_info()
    print(machine, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_gpu-") as scratch:
        work = args.work_dir or Path(scratch)
        start = time.perf_counter()
        raw = make_aid_sized_jpegs(work, args.images)
        print(f"{args.images} 600x600 JPEGs in {time.perf_counter() - start:.1f} s", flush=True)
        caches = {size: thumbnails(raw, size) for size in args.sizes}
        train_rows: list[dict[str, Any]] = []
        for round_ in range(args.rounds):
            for size in args.sizes:
                for precision in precisions:
                    workers = args.workers or [train_workers("auto", "gpu" if device == "cuda" else "cpu")]
                    for w in workers:
                        row = train_arm(
                            caches[size],
                            size,
                            precision,
                            w,
                            args.batch_size,
                            args.steps,
                            args.warmup,
                            device,
                            args.layers,
                        )
                        row["round"] = round_
                        train_rows.append(row)
                        print(
                            f"train {size:>3} px {precision:>10} workers={w}: {row['images_per_second']:8.1f} "
                            f"images/s, waiting for data {100 * row['data_wait_share']:5.1f}% of step time",
                            flush=True,
                        )
        embed_workers: int | str = args.workers[0] if args.workers else "auto"
        embed_row = embed_arm(raw, args.embed_batch_size, device, embed_workers, args.embed_size)
        print(
            f"embed {args.embed_size} px from 600x600 JPEGs: {embed_row['images_per_second']:.1f} images/s", flush=True
        )
    result = {
        "benchmark": "bench_gpu",
        "kind": "speed",
        "machine": machine,
        "device": device,
        "headline": headline(device, train_rows, embed_row),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "smoke": args.smoke,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train": train_rows,
        "embed": embed_row,
    }
    # a smoke run checks the code, it measures nothing worth keeping: not under benchmarks/results/
    default = (
        Path(tempfile.gettempdir()) / "bench_gpu-smoke.json" if args.smoke else RESULTS / f"bench_gpu-{device}.json"
    )
    out = args.out or default
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
