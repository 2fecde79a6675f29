"""Training-step throughput: embedlab's Lightning path (the one train() uses) vs a bare torch + lightly loop.

Both sides train the same SimCLR model (embedlab backbone + lightly SimCLRProjectionHead + NTXentLoss, SGD with the
same warmup/cosine schedule) on the same pre-augmented batches with the same threads, so the ratio isolates what
embedlab + Lightning add per step. Rounds alternate A B A B in one process; the first steps of every round are
warm-up and not timed. Prints machine info, per-round numbers and the ratio (target >= 0.95).

    .venv/bin/python benchmarks/bench_train_step.py            # ResNet18 (standard stem), 32 px, batch 64
    .venv/bin/python benchmarks/bench_train_step.py --quick    # a smaller smoke version
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from _machine import machine_info, save_result

WARMUP_STEPS = 2


def make_batches(n: int, batch_size: int, image_size: int, seed: int = 0) -> list[tuple[Any, ...]]:
    """Pre-augmented batches shaped like the DataLoader's: ([view0, view1], labels, filenames)."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            [torch.randn(batch_size, 3, image_size, image_size, generator=gen) for _ in range(2)],
            torch.zeros(batch_size, dtype=torch.long),
            [f"c/{i}.png" for i in range(batch_size)],
        )
        for _ in range(n)
    ]


class _ListDataset(torch.utils.data.Dataset):
    """A dataset whose items are whole batches (DataLoader batch_size=None passes them through)."""

    def __init__(self, batches: list[tuple[Any, ...]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        return self.batches[i]


def run_embedlab(batches: list[tuple[Any, ...]], args: argparse.Namespace) -> float:
    """Steady-state seconds per step through SSLModule + the Trainer settings train() uses."""
    import pytorch_lightning as pl

    from embedlab.runtime import quiet_lightning
    from embedlab.settings import TrainSettings
    from embedlab.training import build_module, build_trainer

    times: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, trainer: Any, *_: Any) -> None:
            times.append(time.perf_counter())

    torch.manual_seed(0)
    settings = TrainSettings(
        method="simclr",
        backbone=args.backbone,
        init=None,
        small_images=args.small_images,
        image_size=args.image_size,
        learning_rate=0.06 * args.batch_size / 128,
        batch_size=args.batch_size,
        epochs=1,
        precision="32-true",
        progress=False,
    )
    module = build_module(settings)
    loader = torch.utils.data.DataLoader(_ListDataset(batches), batch_size=None, shuffle=False)
    with quiet_lightning():
        trainer = build_trainer(settings, "cpu")
        trainer.callbacks.append(Clock())
        trainer.fit(module, loader)
    return (times[-1] - times[WARMUP_STEPS - 1]) / (len(times) - WARMUP_STEPS)


def run_bare(batches: list[tuple[Any, ...]], args: argparse.Namespace) -> float:
    """Steady-state seconds per step of a plain PyTorch + lightly SimCLR loop with the same model and schedule."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    from embedlab.models import create_backbone
    from embedlab.training import lr_factor

    torch.manual_seed(0)
    backbone = create_backbone(args.backbone, small_images=args.small_images)
    head = SimCLRProjectionHead(backbone.embedding_dim, max(512, backbone.embedding_dim), 128)
    criterion = NTXentLoss(temperature=0.5)
    params = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.06 * args.batch_size / 128, momentum=0.9, weight_decay=5e-4)
    total, warm = len(batches), len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warm))
    backbone.train()
    head.train()
    times: list[float] = []
    for views, _, _ in batches:
        loss = criterion(head(backbone(views[0])), head(backbone(views[1])))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        float(loss.detach())  # the Lightning side reads the loss every step (progress bar / CSV log)
        times.append(time.perf_counter())
    return (times[-1] - times[WARMUP_STEPS - 1]) / (len(times) - WARMUP_STEPS)


def main() -> None:
    """Alternate embedlab / bare rounds and print images per second and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="steps per round (the first 2 are warm-up)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--small-images", action="store_true", help="CIFAR-style stem (~16x the compute at 32 px)")
    parser.add_argument("--quick", action="store_true", help="smoke version: batch 16, 4 steps, 2 rounds")
    parser.add_argument("--json", help="also write the results here, e.g. benchmarks/results/train_step.json")
    args = parser.parse_args()
    if args.quick:
        args.batch_size, args.steps, args.rounds = 16, 4, 2
    if args.steps <= WARMUP_STEPS:
        parser.error(f"--steps must be more than the {WARMUP_STEPS} warm-up steps")
    torch.set_num_threads(args.threads)
    print(machine_info())
    print(
        f"SimCLR {args.backbone} small_images={args.small_images} {args.image_size} px, batch {args.batch_size} "
        f"pairs, {args.steps} steps/round ({WARMUP_STEPS} warm-up), {args.rounds} rounds A B A B, float32 CPU"
    )
    batches = make_batches(args.steps, args.batch_size, args.image_size)
    ours: list[float] = []
    bare: list[float] = []
    for r in range(args.rounds):
        for name, fn, out in (("embedlab", run_embedlab, ours), ("bare torch+lightly", run_bare, bare)):
            seconds = fn(batches, args)
            out.append(seconds)
            print(
                f"  round {r + 1} {name:>19}: {seconds:6.3f} s/step  {args.batch_size / seconds:7.1f} pairs/s",
                flush=True,
            )
    summary = []
    for label, pick in (("median of rounds", statistics.median), ("best round (least disturbed)", min)):
        ours_rate, bare_rate = args.batch_size / pick(ours), args.batch_size / pick(bare)
        ratio = ours_rate / bare_rate
        summary.append(
            {"estimate": label, "embedlab_pairs_per_s": ours_rate, "bare_pairs_per_s": bare_rate, "ratio": ratio}
        )
        print(
            f"{label}: embedlab {ours_rate:.1f} pairs/s vs bare {bare_rate:.1f} pairs/s: ratio {ratio:.3f}x "
            f"(target >= 0.95) -> {'OK' if ratio >= 0.95 else 'BELOW TARGET'}"
        )
    headline = (
        f"embedlab's training step runs at {summary[0]['ratio']:.3f}x the speed of a bare torch + "
        "lightly loop (median of rounds; target >= 0.95)"
    )
    save_result(
        args.json,
        {
            "benchmark": "train_step",
            "kind": "speed",
            "headline": headline,
            "settings": {
                k: getattr(args, k)
                for k in ("backbone", "image_size", "batch_size", "steps", "rounds", "threads", "small_images")
            },
            "summary": summary,
            "rounds": [
                {"round": i + 1, "embedlab_s_per_step": a, "bare_s_per_step": b}
                for i, (a, b) in enumerate(zip(ours, bare))
            ],
        },
    )
    print("On a shared machine the best-round ratio is the better estimate of the overhead; on an idle one both agree.")
    print(f"end: {machine_info()}")


if __name__ == "__main__":
    main()
