"""One GPU check in one JSON: what "auto" picks, step speed and memory per precision, data wait, embedding, resume.

Run on one GPU (about 10 minutes at the classroom settings: SimCLR and distillation, ResNet18, aerial augmentations,
64 px, batch 256, on 2,000 600x600 JPEGs made from the embedded Fashion-MNIST), it writes
benchmarks/results/gpu_check-<gpu>.json with: the device and its compute capability; the precision 'auto' picks
(16-mixed below 8.0, bf16-mixed from 8.0); for SimCLR and distillation in 32-true, 16-mixed and bf16-mixed the
images/s, seconds per step, peak GPU memory, the share of a step spent waiting for data and the host syncs per step
(torch.cuda.set_sync_debug_mode); embedding images/s at 224 px and its agreement with the CPU (cosine of each image's
two vectors, expected >= 0.995); a capped run (max_time) and its rerun (the rerun must finish the steps it plans);
and the one-line message an out-of-memory batch gives. Without a GPU every GPU figure is "not measured"; --smoke
runs tiny settings on the CPU in seconds (the tests run it).

In a Colab cell (Runtime > Change runtime type > GPU), from a clone of the repository:

    !pip install -q -e ".[scale]" && python benchmarks/gpu_check.py

On a GPU machine without a package index, bring the wheels along, made where the index is reachable:

    pip download --no-deps -d .gpu-wheels lightly umap-learn pynndescent ...   # every dependency torch lacks there
    pip wheel --no-deps -w .gpu-wheels .                                       # embedlab itself
    # on the GPU machine:
    pip install --no-index --find-links .gpu-wheels embedlab && python benchmarks/gpu_check.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _machine import machine_info

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NOT_MEASURED = "not measured (no GPU)"
SYNC_WARNING = "synchronizing CUDA operation"


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


def _settings(args: argparse.Namespace, method: str, precision: str, **extra: Any) -> Any:
    """The classroom settings (or the smoke run's tiny ones) for `method` in `precision`."""
    from embedlab.settings import TrainSettings

    options = {"backbone": "resnet18", "init": None, "augment": "aerial", "image_size": args.size}
    options["batch_size"] = args.batch_size
    options.update(method=method, precision=precision, layers=args.layers, progress=False, knn_monitor=False)
    if method == "distillation":
        options.update(teacher="efficientnet_lite0", teacher_image_size=args.size)
    return TrainSettings(**{**options, **extra})


def train_arm(args: argparse.Namespace, root: Path, method: str, precision: str, device: str) -> dict[str, Any]:
    """warmup + steps training steps through a Lightning Trainer as train() builds it: speed, memory, data wait and
    host syncs per step."""
    import pytorch_lightning as pl

    from embedlab.runtime import quiet_lightning, train_workers, tune_for_gpu
    from embedlab.training import build_loader, build_module, open_dataset

    torch.manual_seed(0)
    accelerator = "gpu" if device == "cuda" else "cpu"
    settings = _settings(args, method, precision, num_workers=train_workers("auto", accelerator))
    dataset = open_dataset(root, settings)
    module = build_module(settings, 1, len(dataset), dataset=dataset)
    if device == "cuda":
        tune_for_gpu(module)
        torch.cuda.reset_peak_memory_stats()
    timer = _timing_callback(args.warmup)
    with quiet_lightning(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = pl.Trainer(
            accelerator=accelerator, devices=1, precision=precision, max_steps=args.warmup + args.steps,
            max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer],
        )  # fmt: skip
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.fit(module, build_loader(dataset, settings, accelerator))
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    measured = sum(timer.waits) + sum(timer.computes)
    syncs = sum(SYNC_WARNING in str(w.message) for w in caught)
    return {
        "method": method,
        "precision": precision,
        "image_size": args.size,
        "batch_size": args.batch_size,
        "num_workers": settings.num_workers,
        "steps_timed": len(timer.computes),
        "images_per_second": timer.images / measured if measured else None,
        "seconds_per_step": measured / max(len(timer.computes), 1),
        "data_wait_share": sum(timer.waits) / measured if measured else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else NOT_MEASURED,
        "host_syncs_per_step": syncs / (args.warmup + args.steps) if device == "cuda" else NOT_MEASURED,
    }


def embed_check(args: argparse.Namespace, raw: Path, work: Path, device: str) -> dict[str, Any]:
    """Embedding images/s on the device (a random-init ResNet18 exported once) and its agreement with the CPU."""
    from embedlab.embedding import embed
    from embedlab.models import create_backbone, export_backbone

    torch.manual_seed(0)
    model = export_backbone(create_backbone("resnet18", None, layers=args.layers), work / "random_resnet18.pt")
    options = {"image_size": args.embed_size, "batch_size": args.embed_batch_size, "progress": False}
    embed(raw, model, device=device, limit=1, **options)  # warm-up: start-up, cuDNN's first choice
    start = time.perf_counter()
    on_device = embed(raw, model, device=device, **options)
    seconds = time.perf_counter() - start
    few = max(1, args.agreement_images // 10)
    on_cpu = embed(raw, model, device="cpu", limit=few, **options)
    index = {name: i for i, name in enumerate(on_device.filenames)}
    same = on_device.vectors[[index[name] for name in on_cpu.filenames]].float()
    cosine = torch.nn.functional.cosine_similarity(same, on_cpu.vectors.float(), dim=1)
    return {
        "device": device,
        "image_size": args.embed_size,
        "images": len(on_device.filenames),
        "images_per_second": len(on_device.filenames) / seconds,
        "cpu_agreement_images": len(on_cpu.filenames),
        "cpu_cosine_min": float(cosine.min()),
        "cpu_cosine_mean": float(cosine.mean()),
        "agrees": bool(cosine.min() >= 0.995),
    }


def _capped(root: Path, run: Path, settings: Any) -> dict[str, Any]:
    """One capped train() call: its plan, the steps it ran and the line that says why it stopped."""
    from embedlab.rundir import RunDir
    from embedlab.training import train

    files = RunDir(run)
    step = lambda: torch.load(files.checkpoint, weights_only=False)["global_step"] if files.checkpoint.is_file() else 0  # noqa: E731
    before, out = step(), io.StringIO()
    with contextlib.redirect_stdout(out):
        train(root, run, settings.replace(progress=True))
    config = json.loads(files.config.read_text())
    stop = [line for line in out.getvalue().splitlines() if line.startswith(("stopped", "finished"))]
    return {"planned_steps": config.get("planned_steps"), "steps_run": step() - before, "stop": stop[-1:]}


def capped_resume(args: argparse.Namespace, root: Path, work: Path, device: str) -> dict[str, Any]:
    """A capped run and its rerun with the same cap: the rerun must finish the steps it plans ("as planned")."""
    accelerator = "gpu" if device == "cuda" else "cpu"
    settings = _settings(args, "simclr", "auto", epochs=10_000, max_time=args.cap, accelerator=accelerator)
    first = _capped(root, work / "capped", settings)
    rerun = _capped(root, work / "capped", settings)
    finished = bool(rerun["stop"]) and "as planned" in rerun["stop"][0]
    return {"max_time_seconds": args.cap, "first": first, "rerun": rerun, "rerun_finished_its_plan": finished}


def out_of_memory(args: argparse.Namespace, raw: Path, work: Path, device: str) -> str:
    """The message train() gives for a batch that does not fit: every image at 224 px in one batch."""
    from embedlab.training import TrainingError, train

    if device != "cuda":
        return NOT_MEASURED
    try:
        train(raw, work / "oom", _settings(args, "simclr", "auto", image_size=224, batch_size=args.images, layers=None))
    except TrainingError as error:
        return str(error)
    return f"no out-of-memory error at batch_size={args.images}, 224 px"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings that run on a CPU in seconds (tests)")
    parser.add_argument("--images", type=int, default=2000, help="600x600 JPEGs to generate")
    parser.add_argument("--size", type=int, default=64, help="training image size (classroom: 64)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch (classroom: 256)")
    parser.add_argument("--layers", type=int, default=None, help="ResNet18 stages to keep (default: all 4)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per arm (cuDNN autotune, workers)")
    parser.add_argument("--embed-size", type=int, default=224)
    parser.add_argument("--embed-batch-size", type=int, default=128)
    parser.add_argument("--agreement-images", type=int, default=2000, help="a tenth of these are embedded on the CPU")
    parser.add_argument("--cap", type=float, default=60.0, help="max_time of the capped run and of its rerun")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the JPEGs go (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.size, args.batch_size, args.layers, args.steps, args.warmup = 40, 32, 8, 1, 2, 1
        args.embed_size, args.embed_batch_size, args.agreement_images, args.cap = 32, 20, 40, 6.0
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate the inputs, run every part, write the JSON."""
    from embedlab.runtime import gpu_capability, resolve_precision

    args = parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda"
    precisions = ["32-true", "16-mixed", "bf16-mixed"] if gpu else ["32-true", "bf16-mixed"]
    machine = machine_info()
    print(machine, flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        work = args.work_dir or Path(scratch)
        raw = make_aid_sized_jpegs(work, args.images)
        cache = thumbnails(raw, args.size)
        train_rows = []
        for method in ("simclr", "distillation"):
            for precision in precisions:
                train_rows.append(train_arm(args, cache, method, precision, device))
                print(json.dumps(train_rows[-1]), flush=True)
        embedding = embed_check(args, raw, work, device)
        print(json.dumps(embedding), flush=True)
        resumed = capped_resume(args, cache, work, device)
        print(json.dumps(resumed), flush=True)
        oom = out_of_memory(args, raw, work, device)
    result = {
        "benchmark": "gpu_check",
        "kind": "speed",
        "machine": machine,
        "device": torch.cuda.get_device_name(0) if gpu else "cpu",
        "capability": ".".join(map(str, gpu_capability())) if gpu else NOT_MEASURED,
        "auto_precision": resolve_precision("auto", "gpu" if gpu else "cpu"),
        "smoke": args.smoke,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train": train_rows,
        "embed": embedding,
        "capped_resume": resumed,
        "out_of_memory_message": oom,
    }
    name = "gpu_check-" + ("".join(c if c.isalnum() else "_" for c in result["device"]) if gpu else "cpu")
    out = args.out or (Path(tempfile.gettempdir()) / "gpu_check-smoke.json" if args.smoke else RESULTS / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
