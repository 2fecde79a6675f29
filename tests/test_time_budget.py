"""Time budgets: max_time plans the steps that fit (schedule sized to them) and stays a hard cap; num_workers='auto'."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from embedlab import training
from embedlab.training import _TimeBudget, train


class _Clock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake_trainer() -> Any:
    strategy = SimpleNamespace(broadcast=lambda obj, src=0: obj)
    return SimpleNamespace(global_step=0, should_stop=False, is_global_zero=True, strategy=strategy)


def _run_steps(budget: _TimeBudget, trainer: Any, module: Any, clock: _Clock, seconds_per_step: float,
               until: int) -> None:
    while trainer.global_step < until and not trainer.should_stop:
        clock.now += seconds_per_step
        trainer.global_step += 1
        budget.on_train_batch_end(trainer, module, None, None, 0)


def test_plan_fits_the_schedule_to_the_measured_speed() -> None:
    clock, trainer = _Clock(), _fake_trainer()
    module = SimpleNamespace(_total_steps=1000, _warmup_steps=100)
    budget = _TimeBudget(60.0, started=0.0, verbose=False, calibration_steps=3, safety=0.85, clock=clock)
    clock.now = 1.0  # set-up before the first step
    _run_steps(budget, trainer, module, clock, 0.5, until=1000)
    # timed steps 1..4 at 0.5 s -> 2 steps/s; at t=3 s, 57 s remain: 4 + int(0.85 * 57 * 2) = 100 steps
    assert budget.steps_per_second == pytest.approx(2.0)
    assert budget.planned_steps == 4 + int(0.85 * 57 * 2)
    assert module._total_steps == budget.planned_steps and module._warmup_steps == budget.planned_steps // 10
    assert trainer.should_stop and trainer.global_step == budget.planned_steps
    assert clock.now <= 60.0


def test_plan_leaves_a_run_that_fits_alone() -> None:
    clock, trainer = _Clock(), _fake_trainer()
    module = SimpleNamespace(_total_steps=50, _warmup_steps=5)
    budget = _TimeBudget(600.0, started=0.0, verbose=False, clock=clock)
    _run_steps(budget, trainer, module, clock, 0.5, until=50)
    assert budget.planned_steps == 50 and module._total_steps == 50 and module._warmup_steps == 5


def test_slow_epoch_ends_shorten_the_plan() -> None:
    clock, trainer = _Clock(), _fake_trainer()
    module = SimpleNamespace(_total_steps=1000, _warmup_steps=10)
    budget = _TimeBudget(100.0, started=0.0, verbose=False, calibration_steps=3, safety=0.85, clock=clock)
    _run_steps(budget, trainer, module, clock, 0.5, until=20)
    first_plan = budget.planned_steps
    clock.now += 30.0  # an epoch end (kNN monitor, checkpoint) far slower than the steps
    budget.on_train_epoch_end(trainer, module)
    assert budget.planned_steps < first_plan and module._total_steps == budget.planned_steps
    _run_steps(budget, trainer, module, clock, 0.5, until=1000)
    assert trainer.global_step == budget.planned_steps and clock.now <= 100.0


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 Fashion-MNIST images (4 classes x 10) as 32 px PNGs."""
    from embedlab.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist()
    root = tmp_path_factory.mktemp("budget") / "raw"
    for cls in range(4):
        (root / f"c{cls}").mkdir(parents=True)
        for j, idx in enumerate(np.flatnonzero(labels == cls)[:10]):
            Image.fromarray(images[idx]).resize((32, 32)).save(root / f"c{cls}" / f"{j}.png")
    return root


@pytest.mark.slow
def test_capped_run_warms_up_and_anneals_within_its_budget(tiny_data: Path, tmp_path: Path) -> None:
    """200 epochs (1,000 steps) cannot fit in 8 s: train() plans fewer steps, warms up, ends at lr ~0, in time."""
    budget_s = 8.0
    result = train(tiny_data, tmp_path / "run", backbone="resnet18", small_images=False, layers=1, image_size=32,
                   batch_size=8, epochs=200, progress=False, knn_monitor=False, max_time=budget_s)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    with open(result.loss_log, newline="") as handle:
        lrs = [float(r["lr"]) for r in csv.DictReader(handle)]
    planned = config["planned_steps"]
    assert config["time_budget_seconds"] == budget_s and config["calibrated_steps_per_second"] > 0
    assert training.BUDGET_CALIBRATION_STEPS < planned < 1000
    assert len(lrs) == planned, "stopped by the plan, not by the hard cap"
    peak = max(lrs)
    assert lrs[-1] <= 0.05 * peak, f"the schedule did not anneal: last lr {lrs[-1]:.4g} vs peak {peak:.4g}"
    if planned >= 20:  # a warmup of at least two steps: the lr rises first
        assert lrs[0] < lrs[lrs.index(peak)]
    assert result.seconds <= budget_s + 2.0


def test_num_workers_auto_follows_the_measured_rule() -> None:
    """On CPU the step is compute-bound (benchmarks/bench_gpu.py --workers): 0 workers on <= 2 cores; on a GPU
    the data pipeline is the bottleneck, so every core gets a worker even on Colab's 2 vCPUs."""
    assert training.resolve_num_workers("auto", 64, "cpu", cpus=2) == 0
    assert training.resolve_num_workers("auto", 224, "cpu", cpus=2) == 0
    assert training.resolve_num_workers("auto", 64, "gpu", cpus=2) == 2
    assert training.resolve_num_workers("auto", 64, "gpu", cpus=16) == 8
    assert training.resolve_num_workers(3, 32, "gpu", cpus=2) == 3
