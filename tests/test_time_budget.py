"""Time budgets: max_time plans the steps that fit (schedule sized to them) and stays a hard cap; num_workers='auto'."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import SCRATCH

from embedlab import runtime, training
from embedlab.training import TimeBudget, train


class _Clock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake_trainer() -> Any:
    strategy = SimpleNamespace(broadcast=lambda obj, src=0: obj)
    return SimpleNamespace(global_step=0, should_stop=False, is_global_zero=True, world_size=1, strategy=strategy)


def _run_steps(
    budget: TimeBudget, trainer: Any, module: Any, clock: _Clock, seconds_per_step: float, until: int
) -> None:
    while trainer.global_step < until and not trainer.should_stop:
        clock.now += seconds_per_step
        trainer.global_step += 1
        budget.on_train_batch_end(trainer, module, None, None, 0)


def test_plan_fits_the_schedule_to_the_measured_speed() -> None:
    clock, trainer = _Clock(), _fake_trainer()
    module = SimpleNamespace(total_steps=1000, warmup_steps=100)
    budget = TimeBudget(60.0, verbose=False, started=0.0, calibration_steps=3, safety=0.85, clock=clock)
    clock.now = 1.0  # set-up before the first step
    _run_steps(budget, trainer, module, clock, 0.5, until=1000)
    # timed steps 1..4 at 0.5 s -> 2 steps/s; at t=3 s, 57 s remain: 4 + int(0.85 * 57 * 2) = 100 steps
    assert budget.steps_per_second == pytest.approx(2.0)
    assert budget.planned_steps == 4 + int(0.85 * 57 * 2)
    assert module.total_steps == budget.planned_steps and module.warmup_steps == budget.planned_steps // 10
    assert trainer.should_stop and trainer.global_step == budget.planned_steps
    assert clock.now <= 60.0


def test_plan_leaves_a_run_that_fits_alone() -> None:
    clock, trainer = _Clock(), _fake_trainer()
    module = SimpleNamespace(total_steps=50, warmup_steps=5)
    budget = TimeBudget(600.0, verbose=False, started=0.0, clock=clock)
    _run_steps(budget, trainer, module, clock, 0.5, until=50)
    assert budget.planned_steps == 50 and module.total_steps == 50 and module.warmup_steps == 5


def test_slow_epoch_ends_shorten_the_plan() -> None:
    clock, trainer = _Clock(), _fake_trainer()
    module = SimpleNamespace(total_steps=1000, warmup_steps=10)
    budget = TimeBudget(100.0, verbose=False, started=0.0, calibration_steps=3, safety=0.85, clock=clock)
    _run_steps(budget, trainer, module, clock, 0.5, until=20)
    first_plan = budget.planned_steps
    clock.now += 30.0  # an epoch end (kNN monitor, checkpoint) far slower than the steps
    budget.on_train_epoch_end(trainer, module)
    assert budget.planned_steps < first_plan and module.total_steps == budget.planned_steps
    _run_steps(budget, trainer, module, clock, 0.5, until=1000)
    assert trainer.global_step == budget.planned_steps and clock.now <= 100.0
    clock.now += 200.0  # past the budget at an epoch end: stop there, before another step
    trainer.should_stop, trainer.global_step = False, budget.planned_steps - 1
    budget.on_train_epoch_end(trainer, module)
    assert trainer.should_stop and budget.planned_steps == trainer.global_step


class _StepClockBudget(TimeBudget):
    """The real planner on a clock where every training step takes 30 s: the plan is the same on any machine."""

    SECONDS_PER_STEP = 30.0

    def __init__(self, budget_s: float, verbose: bool, **options: Any) -> None:
        self.step = 0
        super().__init__(budget_s, verbose, clock=lambda: self.step * self.SECONDS_PER_STEP, **options)

    def on_train_start(self, trainer: Any, *args: Any) -> None:
        self.step = int(trainer.global_step)  # a resumed run's clock starts where it resumes
        super().on_train_start(trainer, *args)

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self.step = int(trainer.global_step)
        super().on_train_batch_end(trainer, *args)


@pytest.mark.slow
def test_capped_run_warms_up_and_anneals_within_its_budget(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 epochs (1,000 steps) do not fit in 10 minutes of 30-second steps: train() plans 17 steps, warms up
    first, then anneals to lr 0 at the planned step (the hard cap never fires)."""
    monkeypatch.setattr(training.run, "TimeBudget", _StepClockBudget)
    result = train(
        tiny_data,
        tmp_path / "run",
        **SCRATCH,
        small_images=False,
        layers=1,
        image_size=32,
        batch_size=8,
        epochs=200,
        progress=False,
        knn_monitor=False,
        max_time=600.0,
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    with open(result.loss_log, newline="") as handle:
        lrs = [float(r["lr"]) for r in csv.DictReader(handle)]
    # steps 1-2 took 30 s = 5% of the budget: plan at step 2 at 1/30 steps/s, 540 s left: 2 + int(0.85 * 18) = 17
    assert config["time_budget_seconds"] == 600.0
    assert config["calibrated_steps_per_second"] == pytest.approx(1 / 30)
    assert config["planned_steps"] == 17 and len(lrs) == 17, f"stopped by the plan: {lrs}"
    peak = 0.06 * 8 / 128
    assert lrs[0] < lrs[1] < lrs[2] < lrs[3] < peak  # warmup (1 epoch = 5 steps) before the plan
    assert max(lrs) == pytest.approx(peak, rel=0.05)  # the fitted schedule starts its cosine at the peak
    assert lrs[-1] <= 0.02 * peak and all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


def test_num_workers_auto_follows_the_measured_rule() -> None:
    """On a <= 2-core CPU no workers (measured: ~1% of the step waits for data, bench_gpu-cpu-workers.json); on a
    GPU every core but the main process's gets one (the step is fast there, so decoding is expected to limit it)."""
    assert runtime.train_workers("auto", "cpu", cpus=2, ranks=1) == 0
    assert runtime.train_workers("auto", "gpu", cpus=2, ranks=1) == 1
    assert runtime.train_workers("auto", "gpu", cpus=16, ranks=1) == 15
    assert runtime.train_workers(3, "gpu", cpus=2) == 3


@pytest.mark.slow
def test_a_rerun_of_a_capped_run_gets_a_fresh_budget_and_finishes_it(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run spent its whole 10-minute cap; the rerun (same cap, "rerun to continue") plans 17 more steps
    and runs them all: Lightning's clock does not come back from the checkpoint (it stopped the rerun at once)."""
    import torch

    monkeypatch.setattr(training.run, "TimeBudget", _StepClockBudget)
    tiny = {**SCRATCH, "small_images": False, "layers": 1, "image_size": 32, "batch_size": 8}
    options = {**tiny, "epochs": 200, "progress": True, "knn_monitor": False, "max_time": 600.0}
    train(tiny_data, tmp_path / "run", **options)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for state in saved["callbacks"].values():  # what a real capped run leaves: its clock at the cap
        if "time_elapsed" in state:
            state["time_elapsed"]["train"] = 600.0
    torch.save(saved, checkpoint)
    capsys.readouterr()
    result = train(tiny_data, tmp_path / "run", **options)
    out = capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    steps = [int(r["step"]) for r in csv.DictReader(open(result.loss_log, newline=""))]
    # the rerun plans at step 19 (2 timed steps = 5% of the budget): 19 + int(0.85 * 540 s / 30 s) = 34
    assert config["planned_steps"] == 34 and steps == list(range(1, 35)), (steps, out)
    assert "stopped as planned after 34 steps" in out and "time cap" not in out
