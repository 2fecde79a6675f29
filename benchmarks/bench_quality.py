"""Does self-supervised training on the target images beat an off-the-shelf ImageNet network? Measured, one run.

On the embedded Fashion-MNIST test split (10,000 images, written as PNGs by embedlab.datasets.prepare) and at one
image size for every row, it reports leave-one-out kNN accuracy (k=20, cosine, temperature-weighted) of:
raw pixels; a random-init ResNet18; ImageNet EfficientNet-Lite0; SimCLR from scratch (ResNet18); and SimCLR
continued from ImageNet weights (EfficientNet-Lite0, init="imagenet"). Each SSL row gets a planned number of steps
calibrated from throughput measured at the start (so it fits the budget, default 15 minutes; the learning-rate
schedule is sized to it) AND a hard wall-clock cap (max_time); the table reports the wall time and epochs done.
Extra rows show the ImageNet network at larger input sizes, for reference only (not the same-size comparison).

    .venv/bin/python benchmarks/bench_quality.py                # full run (~45 min on 2 CPU cores)
    .venv/bin/python benchmarks/bench_quality.py --quick        # smoke version (~5 min): 500 images, short budget
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import machine_info

REPO = Path(__file__).resolve().parents[1]

# The SSL rows. Each is a train() recipe; "budget" = the share of --budget-min it gets (1.0 = the whole budget).
SSL_ROWS: dict[str, dict[str, Any]] = {
    # From scratch: SimCLR's CIFAR recipe on a ResNet18. The standard stem (stride 4 before layer1) is ~16x cheaper
    # than the CIFAR stem at 32 px; on 2 busy cores the CIFAR stem gets < 0.3 epochs in 15 minutes.
    "SSL from scratch (SimCLR ResNet18)": {
        "method": "simclr", "backbone": "resnet18", "init": None, "small_images": False, "layers": None,
        "augment": "grayscale", "batch_size": 128, "learning_rate": None, "temperature": 0.5,
        "min_scale": 0.2, "freeze_bn": False, "backbone_lr_scale": 1.0},
    # Continued from ImageNet: frozen BatchNorm statistics (re-estimating them on Fashion-MNIST costs 12 points of
    # kNN at 32 px) and a 10x lower learning rate for the pretrained backbone than for the new projection head.
    "SSL from ImageNet (SimCLR EfficientNet-Lite0, init=imagenet)": {
        "method": "simclr", "backbone": "efficientnet_lite0", "init": "imagenet", "small_images": False,
        "layers": None, "augment": "grayscale", "batch_size": 64, "learning_rate": 0.05, "temperature": 0.2,
        "min_scale": 0.5, "freeze_bn": True, "backbone_lr_scale": 0.1},
}


def knn(vectors: Any, labels: Any) -> float:
    """Leave-one-out kNN accuracy, k=20, cosine, temperature-weighted (embedlab.evaluation)."""
    from embedlab.evaluation import knn_accuracy

    return float(knn_accuracy(vectors, labels, k=20))


def raw_pixels(root: Path, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flattened RGB pixels after the same resize/centre-crop the networks see."""
    from embedlab.datasets import ImageFolder
    from embedlab.embedding import FolderImages

    data = FolderImages(ImageFolder(root), image_size)
    rows = [data[i] for i in range(len(data))]
    vectors = np.stack([r[0].reshape(-1).float().numpy() / 255.0 for r in rows])
    return vectors, np.asarray([r[1] for r in rows])


def embed_knn(root: Path, model: Any, image_size: int, name: str) -> tuple[float, float]:
    """kNN accuracy of a model's embeddings of every image, and the seconds the embedding took."""
    from embedlab.embedding import embed

    start = time.perf_counter()
    emb = embed(root, model, image_size=image_size, name=name, progress=False, batch_size=256)
    return knn(emb.vectors, emb.labels), time.perf_counter() - start


def measure_throughput(root: Path, recipe: dict[str, Any], image_size: int, steps: int) -> float:
    """Training pairs per second of a recipe: a few real steps (augmentation + forward + backward + SGD)."""
    from embedlab.datasets import ImageFolder
    from embedlab.training import SSLModule, ssl_transform

    torch.manual_seed(0)
    module = SSLModule(backbone=recipe["backbone"], init=recipe["init"], small_images=recipe["small_images"],
                       layers=recipe["layers"], method=recipe["method"], image_size=image_size,
                       batch_size=recipe["batch_size"], temperature=recipe["temperature"],
                       freeze_bn=recipe["freeze_bn"])
    module.log = lambda *a, **k: None  # no Trainer here
    module.train()
    folder = ImageFolder(root, ssl_transform(recipe["augment"], image_size, method=recipe["method"],
                                             min_scale=recipe["min_scale"]))
    loader = torch.utils.data.DataLoader(folder, batch_size=recipe["batch_size"], shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    times = []
    for i, batch in enumerate(loader):
        loss = module.training_step(batch, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter())
        if len(times) > steps:
            break
    return recipe["batch_size"] * (len(times) - 1) / (times[-1] - times[0])


def run_ssl(name: str, recipe: dict[str, Any], root: Path, out: Path, args: argparse.Namespace,
            n_images: int) -> dict[str, Any]:
    """Calibrate epochs from measured throughput, train with a wall-clock cap, embed all images, kNN."""
    from embedlab.training import train

    budget = args.budget_min * 60.0
    rate = measure_throughput(root, recipe, args.image_size, args.calibration_steps)
    # the plan: 85% of the budget at the measured rate (the rest: kNN monitor, checkpoints, set-up), in steps, so
    # the warmup + cosine schedule is sized to what fits; max_time stays the hard cap
    steps_per_epoch = n_images // recipe["batch_size"]
    planned_steps = max(1, int(0.85 * budget * rate / recipe["batch_size"]))
    if args.steps:
        planned_steps = args.steps
    if args.epochs:
        planned_steps = args.epochs * steps_per_epoch
    epochs = max(1, -(-planned_steps // steps_per_epoch))
    max_steps = None if args.epochs else planned_steps
    print(f"\n[{name}] measured {rate:.1f} pairs/s -> planned {planned_steps} steps "
          f"({planned_steps / steps_per_epoch:.2f} epochs) in a {args.budget_min:g}-minute budget "
          f"(hard cap max_time={budget:.0f} s)", flush=True)
    run_dir = out / name.split(" (")[0].lower().replace(" ", "_")
    if run_dir.exists() and not args.keep_runs:
        import shutil

        shutil.rmtree(run_dir)
    options = {k: v for k, v in recipe.items()}
    start = time.perf_counter()
    watcher = _EpochPrinter(run_dir / "epochs.csv", name)
    watcher.start()
    try:
        result = train(root, run_dir, epochs=epochs, image_size=args.image_size, max_time=budget, seed=0,
                       max_steps=max_steps, progress=args.progress, knn_images=2000, **options)
    finally:
        watcher.stop()
    wall = time.perf_counter() - start
    steps = sum(int(r["steps"]) for r in _epoch_rows(run_dir))
    accuracy, embed_seconds = embed_knn(root, result.exported, args.image_size, name)
    curve = ", ".join(f"{k:.3f}" for k in result.knn_history)
    print(f"[{name}] trained {wall / 60:.1f} min, {steps} steps = {steps / steps_per_epoch:.2f} epochs "
          f"({planned_steps} steps planned); kNN monitor (2,000-image subset) per epoch: [{curve}]; "
          f"final kNN on all {n_images} images: {accuracy:.4f}", flush=True)
    return {"row": name, "knn": accuracy, "train_minutes": wall / 60, "epochs_done": steps / steps_per_epoch,
            "epochs_planned": round(planned_steps / steps_per_epoch, 2), "steps_done": steps,
            "steps_planned": planned_steps, "pairs_per_second_calibration": rate,
            "knn_curve_subset": result.knn_history,
            "embed_seconds": embed_seconds, "recipe": recipe}


class _EpochPrinter(threading.Thread):
    """Print each new row of a run's epochs.csv (loss, kNN monitor) while train() runs: the learning curve, live."""

    def __init__(self, path: Path, name: str) -> None:
        super().__init__(daemon=True)
        self.path, self.name, self.seen = path, name, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(5.0):
            self.poll()

    def poll(self) -> None:
        rows = _epoch_rows(self.path.parent) if self.path.is_file() else []
        for row in rows[self.seen:]:
            print(f"  [{self.name.split(' (')[0]}] epoch {int(row['epoch']) + 1}: {row['steps']} steps, loss "
                  f"{float(row['loss']):.3f}, kNN monitor {row['knn_accuracy']}, {float(row['seconds']):.0f} s, "
                  f"{float(row['images_per_second']):.1f} pairs/s", flush=True)
        self.seen = max(self.seen, len(rows))

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.poll()


def _epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    """epochs.csv rows of a run."""
    import csv

    with open(run_dir / "epochs.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> int:
    """Run every row in one process, print the table and the verdict, save JSON next to the runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the PNGs go (default: <out>/data, private to the benchmark)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_quality")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--budget-min", type=float, default=15.0, help="wall-clock budget per SSL row (minutes)")
    parser.add_argument("--epochs", type=int, default=0, help="override the calibrated epochs")
    parser.add_argument("--steps", type=int, default=0, help="override the calibrated steps (max_steps)")
    parser.add_argument("--calibration-steps", type=int, default=3)
    parser.add_argument("--reference-sizes", type=int, nargs="*", default=[64],
                        help="extra ImageNet rows at these sizes (reference only)")
    parser.add_argument("--limit", type=int, default=None, help="images per class (default: all 1,000)")
    parser.add_argument("--only", nargs="*", default=None, help="run only SSL rows whose name contains these")
    parser.add_argument("--keep-runs", action="store_true", help="resume existing SSL runs instead of restarting")
    parser.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    parser.add_argument("--quick", action="store_true", help="smoke version: 50 images/class, 1-minute budgets")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.budget_min, args.reference_sizes = 50, 1.0, []
        args.out = args.out.with_name(args.out.name + "_quick")
    data_dir = args.data_dir or args.out / "data"
    from embedlab.datasets import ImageFolder, prepare
    from embedlab.models import create_backbone

    print("embedlab bench_quality:", machine_info(), flush=True)
    print("NOTE: this machine was shared with other jobs during the run (see load avg); wall-clock budgets are "
          "therefore worth fewer epochs than on an idle machine.", flush=True)
    root = prepare("fashion-mnist", data_dir, limit=args.limit, progress=False)
    n_images = len(ImageFolder(root))
    size = args.image_size
    print(f"data: {root} ({n_images} images); every row at {size} px; kNN leave-one-out, k=20, cosine, weighted",
          flush=True)
    rows: list[dict[str, Any]] = []

    start = time.perf_counter()
    pixels, labels = raw_pixels(root, size)
    rows.append({"row": f"raw pixels ({size}x{size}x3)", "knn": knn(pixels, labels),
                 "seconds": time.perf_counter() - start})
    print(f"raw pixels: {rows[-1]['knn']:.4f}", flush=True)
    torch.manual_seed(0)
    scratch = next(iter(SSL_ROWS.values()))  # the untrained twin of the from-scratch SSL row
    random_net = create_backbone("resnet18", None, small_images=scratch["small_images"])
    accuracy, seconds = embed_knn(root, random_net, size, "random")
    stem = "small-image stem" if scratch["small_images"] else "standard stem"
    rows.append({"row": f"random-init ResNet18 ({stem})", "knn": accuracy, "seconds": seconds})
    print(f"random-init ResNet18: {accuracy:.4f}", flush=True)
    accuracy, seconds = embed_knn(root, "efficientnet_lite0", size, "imagenet")
    rows.append({"row": "ImageNet EfficientNet-Lite0", "knn": accuracy, "seconds": seconds})
    imagenet_same_size = accuracy
    print(f"ImageNet EfficientNet-Lite0 @{size}: {accuracy:.4f}", flush=True)

    for name, recipe in SSL_ROWS.items():
        if args.only and not any(word.lower() in name.lower() for word in args.only):
            continue
        rows.append(run_ssl(name, recipe, root, args.out, args, n_images))

    for ref in args.reference_sizes:
        accuracy, seconds = embed_knn(root, "efficientnet_lite0", ref, f"imagenet{ref}")
        rows.append({"row": f"(reference) ImageNet EfficientNet-Lite0 @{ref} px", "knn": accuracy,
                     "seconds": seconds, "image_size": ref})
        print(f"(reference) ImageNet EfficientNet-Lite0 @{ref}: {accuracy:.4f}", flush=True)

    print(f"\n## Fashion-MNIST, {n_images} images, {size} px, kNN (k=20, cosine, weighted, leave-one-out)")
    print("| embedding | kNN accuracy | SSL training (wall, epochs done / planned) |")
    print("|---|---|---|")
    for row in rows:
        train_text = (f"{row['train_minutes']:.1f} min, {row['epochs_done']:.2f} / {row['epochs_planned']}"
                      if "train_minutes" in row else "-")
        print(f"| {row['row']} | {row['knn']:.4f} | {train_text} |")
    ssl = [r for r in rows if "train_minutes" in r]
    if ssl:
        best = max(ssl, key=lambda r: r["knn"])
        gain = 100 * (best["knn"] - imagenet_same_size)
        verdict = "TARGET MET" if gain >= 2.0 else "TARGET NOT MET"
        print(f"\nbest SSL row: {best['row']} {best['knn']:.4f} vs ImageNet EfficientNet-Lite0 at the same "
              f"{size} px {imagenet_same_size:.4f}: {gain:+.1f} points (target +2.0) -> {verdict}")
    print("end:", machine_info())
    args.out.mkdir(parents=True, exist_ok=True)
    from embedlab._io import write_json

    write_json(args.out / "results.json", {"machine": machine_info(), "image_size": size, "images": n_images,
                                           "budget_min": args.budget_min, "rows": rows})
    print(f"results: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
