"""The GPU decisions, checked on the CPU: precision and autocast dtype by compute capability (mocked devices), the
time budget of a resumed capped run, stop decisions that every DDP rank shares (2 gloo processes), SIGTERM during
sharded embedding, DataLoader workers per rank, host syncs of a training step, multi-teacher targets made once for all
ranks, and thumbnails on Colab's Google Drive read from a local copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SCRATCH, SCRATCH_ARGS

from embedlab import runtime

T4, A100, H100 = (7, 5), (8, 0), (9, 0)


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A mocked GPU of a chosen compute capability; torch.cuda.is_bf16_supported() says True, as it does on a T4."""

    def mock(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(runtime, "_nvml_capability", lambda: None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    return mock


@pytest.mark.parametrize(("capability", "expected"), [(T4, "16-mixed"), (A100, "bf16-mixed"), (H100, "bf16-mixed")])
def test_auto_precision_follows_the_compute_capability(gpu: Any, capability: Any, expected: str) -> None:
    """A T4 (7.5) emulates bf16, slowly: 'auto' gives it 16-mixed; bf16 from 8.0. The CPU keeps float32."""
    gpu(capability)
    assert runtime.resolve_precision("auto", "gpu") == expected
    assert runtime.resolve_precision("auto", "cpu") == "32-true"
    assert runtime.resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"  # asked for explicitly: kept


@pytest.mark.parametrize(("capability", "dtype"), [(T4, torch.float16), (A100, torch.bfloat16), (H100, torch.bfloat16)])
def test_embedding_autocasts_to_the_dtype_of_the_same_rule(gpu: Any, capability: Any, dtype: torch.dtype) -> None:
    """embed() autocasts on CUDA to what 'auto' precision gives training (fp16 on a T4), never on the CPU."""
    from embedlab.embedding.inference import autocast_for

    gpu(capability)
    assert runtime.autocast_dtype(runtime.resolve_precision("auto", "gpu")) == dtype
    assert autocast_for(torch.device("cuda")).fast_dtype == dtype
    assert not isinstance(autocast_for(torch.device("cpu")), torch.autocast)


BUDGET_RANK = """
import json, os, sys
from types import SimpleNamespace
import torch.distributed as dist
from embedlab.training import TimeBudget

rank, world, address, out = int(sys.argv[1]), 2, sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)

def broadcast(obj, src=0):
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]

class Clock:  # each rank measures its own steps: 0.5 s on rank 0, 0.503 s on rank 1
    now = 0.0
    def __call__(self):
        return self.now

clock = Clock()
trainer = SimpleNamespace(global_step=0, should_stop=False, is_global_zero=rank == 0, world_size=world,
                          strategy=SimpleNamespace(broadcast=broadcast))
module = SimpleNamespace(total_steps=1000, warmup_steps=10)
budget = TimeBudget(100.0, verbose=False, started=0.0, clock=clock)
while not trainer.should_stop and trainer.global_step < 1000:
    clock.now += 0.5 + 0.003 * rank
    trainer.global_step += 1
    budget.on_train_batch_end(trainer, module, None, None, 0)
    if trainer.global_step % 20 == 0:  # an epoch end as slow as 3 steps: on the edge of overrunning the plan
        clock.now += 1.66
        budget.on_train_epoch_end(trainer, module)
dist.barrier()
json.dump({"stopped_at": trainer.global_step, "planned": budget.planned_steps}, open(out, "w"))
"""


def _two_ranks(script: str, tmp_path: Path, timeout: float = 60) -> list[dict[str, Any]]:
    """Run `script` as ranks 0 and 1 of a gloo group; each writes a JSON file; a rank still running after `timeout`
    seconds (waiting in a collective the other rank never entered) fails the test."""
    path = tmp_path / "rank.py"
    path.write_text(textwrap.dedent(script))
    address = f"file://{tmp_path / 'rendezvous'}"
    ranks = [
        subprocess.Popen([sys.executable, str(path), str(r), address, str(tmp_path / f"{r}.json")]) for r in (0, 1)
    ]
    deadline = time.monotonic() + timeout
    for process in ranks:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for p in ranks:
                p.kill()
            pytest.fail("a rank hung in a collective the other never entered")
    return [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_time_budget_ranks_whose_clocks_differ_stop_at_the_same_step(tmp_path: Path) -> None:
    """Rank 1's clock says an epoch end overruns the plan, rank 0's says it does not: rank 0 decides for both (rank 1
    alone entered the plan's broadcast and hung)."""
    ranks = _two_ranks(BUDGET_RANK, tmp_path)
    assert ranks[0] == ranks[1], ranks
    assert ranks[0]["stopped_at"] == ranks[0]["planned"]


DDP_TRAIN = """
import os, sys, time
import pytorch_lightning as pl
from embedlab import cli, training

fault, rank_env = sys.argv[1], int(os.environ.get("LOCAL_RANK", "0"))

class Fault(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2 and trainer.global_rank == int(fault[-1]):
            open(sys.argv[2], "w").write(str(time.time()))
            if fault.startswith("sigterm"):
                os.kill(os.getpid(), 15)  # to this rank alone, as `kill PID` does

real = training.module.SSLModule.training_step

def step(self, batch, batch_idx):
    loss = real(self, batch, batch_idx)
    return loss * float("nan") if fault == "nan1" and self.global_step == 3 and self.global_rank == 1 else loss

training.module.SSLModule.training_step = step
make = training.run.make_callbacks
training.run.make_callbacks = lambda *a, **k: [*make(*a, **k), Fault()]
sys.exit(cli.main(sys.argv[3:]))
"""


def _ddp_train(fault: str, data: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`embedlab train` on 2 gloo processes with a fault on one rank; the seconds from the fault to the end."""
    script = tmp_path / "ddp_fault.py"
    script.write_text(textwrap.dedent(DDP_TRAIN))
    stamp = tmp_path / "fault_time"
    argv = ["train", str(data), str(tmp_path / "run"), "--epochs", "3", "--batch-size", "4", "--image-size", "32"]
    argv += [*SCRATCH_ARGS, "--layers", "1", "--no-knn", "--num-workers", "0", "--accelerator", "cpu", "--devices", "2"]
    argv += ["--strategy", "ddp", "-q"]
    try:
        done = subprocess.run(
            [sys.executable, str(script), fault, str(stamp), *argv],
            capture_output=True, text=True, timeout=150, cwd=tmp_path,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"{fault}: a rank hung waiting for the other")
    return done, time.time() - float(stamp.read_text())


@pytest.mark.slow
def test_a_nan_on_one_of_two_ranks_ends_both_within_a_minute_with_one_line(tiny_data: Path, tmp_path: Path) -> None:
    """Rank 1's loss turns NaN: both ranks stop at that step and rank 0 alone says why (rank 1 raised alone while
    rank 0 waited in the gradient all-reduce for the 30-minute timeout)."""
    done, seconds = _ddp_train("nan1", tiny_data, tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.startswith("embedlab")]
    assert done.returncode == 1 and seconds < 60, done.stderr[-3000:]
    assert len(lines) == 1 and "non-finite on one of the ranks at step 3" in lines[0], done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["sigterm0", "sigterm1"])
def test_sigterm_to_one_ddp_rank_stops_both_at_the_same_step(fault: str, tiny_data: Path, tmp_path: Path) -> None:
    """SIGTERM reaches one rank: the ranks agree before the next backward pass and all stop after step 2; rank 0
    saves that step and exits 143 with one line (no collective runs inside the signal handler)."""
    done, seconds = _ddp_train(fault, tiny_data, tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.startswith("embedlab")]
    assert done.returncode == 143 and seconds < 60, done.stderr[-3000:]
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "step 2" in lines[0], done.stderr[-3000:]
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 2


MULTI_TEACHER_RANK = """
import json, sys
import torch.distributed as dist
from embedlab import embedding
from embedlab.embedding import inference
from embedlab.training import train

data, run, out, teacher = sys.argv[1:5]
passes = []

def counted(name, real):  # each pass over the whole dataset: whether the DDP group (and device) was set up by then
    def wrapper(*args, **kwargs):
        passes.append([name, dist.is_initialized(), str(kwargs.get("device", "-"))])
        return real(*args, **kwargs)
    return wrapper

inference._pixels = counted("pca fit", inference._pixels)
embedding.embed = counted("clean targets", embedding.embed)
train(data, run, method="multi_teacher", method_args={"targets": "clean"}, teachers=teacher + "+pca",
      backbone="resnet18", init=None, small_images=False, layers=1, image_size=32, batch_size=4, epochs=1,
      accelerator="cpu", devices=2, strategy="ddp", progress=False, knn_monitor=False, num_workers=0)
json.dump(passes, open(out, "w"))
"""


@pytest.mark.slow
def test_multi_teacher_prepares_its_targets_once_for_all_ranks_on_the_rank_device(
    tiny_data: Path, teacher_file: Path, tmp_path: Path
) -> None:
    """Two ranks started together (as torchrun or SLURM start them): the PCA fit and the clean targets are made once,
    by rank 0, after Lightning set up the group and the device (each rank made them all, on the default device)."""
    import socket

    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(MULTI_TEACHER_RANK))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2", "NODE_RANK": "0"}
    argv = [sys.executable, str(script), str(tiny_data), str(tmp_path / "run")]
    ranks = [
        subprocess.Popen([*argv, str(tmp_path / f"{r}.json"), str(teacher_file)], env={**env, "LOCAL_RANK": str(r)})
        for r in (0, 1)
    ]
    try:
        codes = [process.wait(timeout=240) for process in ranks]
    except subprocess.TimeoutExpired:
        for process in ranks:
            process.kill()
        pytest.fail("a rank hung")
    assert codes == [0, 0]
    passes = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    assert passes == [[["pca fit", True, "-"], ["clean targets", True, "cpu"]], []]  # the fit reads pixels (CPU)


@pytest.mark.parametrize(("ranks", "gpu_workers", "cpu_workers"), [("1", 15, 8), ("4", 3, 2)])
def test_workers_share_the_cores_among_the_ranks(
    monkeypatch: pytest.MonkeyPatch, ranks: str, gpu_workers: int, cpu_workers: int
) -> None:
    """16 cores: one rank gets 15 workers (8 starved an H100 at 224 px), each of 4 ranks 3 (they asked for 4 x 8)."""
    monkeypatch.setenv("LOCAL_WORLD_SIZE", ranks)
    assert runtime.train_workers("auto", "gpu", cpus=16) == gpu_workers
    assert runtime.embed_workers("auto", "cuda", cpus=16) == gpu_workers
    assert runtime.train_workers("auto", "cpu", cpus=16) == cpu_workers
    assert runtime.embed_workers("auto", "cpu", cpus=16) == 0


def test_out_of_memory_is_one_error_naming_batch_size_and_precision(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA's out-of-memory error (mocked: no GPU here) becomes a TrainingError that says what to lower."""
    from embedlab.training import SSLModule, TrainingError, train

    def out_of_memory(self: Any, batch: Any, batch_idx: int) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SSLModule, "training_step", out_of_memory)
    options = {**SCRATCH, "small_images": False, "layers": 1, "image_size": 32, "batch_size": 8}
    with pytest.raises(TrainingError, match=r"out of GPU memory.*batch_size=8 .*precision=32-true.*e\.g\. 4"):
        train(tiny_data, tmp_path / "run", **options, progress=False, knn_monitor=False)


def test_gpu_tuning_turns_on_cudnn_benchmark_tf32_and_channels_last() -> None:
    """What training and embedding switch on for CUDA (they had none of it)."""
    before = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    try:
        conv = runtime.tune_for_gpu(torch.nn.Conv2d(3, 8, 3))
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        torch.backends.cudnn.benchmark = before[0]
        torch.set_float32_matmul_precision(before[1])


def test_auto_picks_apples_gpu_on_a_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an Apple-silicon laptop 'auto' trains and embeds on MPS (full precision), not on the CPU."""
    from embedlab import runtime

    monkeypatch.setattr(runtime, "_cuda_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert runtime.resolve_accelerator("auto") == "mps" and runtime.resolve_precision("auto", "mps") == "32-true"
    assert runtime.resolve_device("auto").type == "mps"
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert runtime.resolve_accelerator("auto") == "cpu" and runtime.resolve_device("auto").type == "cpu"


def test_thumbnails_on_google_drive_are_read_from_a_local_copy_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training read the thumbnail cache from the Drive mount every epoch; now image_root copies it to local disk
    once (a copy cut short resumes with the missing files) and says so in one line."""
    import shutil

    from embedlab import paths
    from embedlab.rundir import RunDir

    drive, local = tmp_path / "drive", tmp_path / "local"
    monkeypatch.setattr(paths, "DRIVE_MOUNT", drive, raising=False)
    monkeypatch.setattr(paths, "LOCAL_COPIES", local, raising=False)
    thumbs = drive / "MyDrive" / "embedlab" / "thumbnails" / "ds-64"
    for name in ("a/1.png", "a/2.png", "b/1.png"):
        (thumbs / name).parent.mkdir(parents=True, exist_ok=True)
        (thumbs / name).write_bytes(name.encode())
    run = RunDir(tmp_path / "run")
    run.record_dataset(tmp_path / "gone" / "raw", dataset="ds", thumbnail_size=64, thumbnails=thumbs)
    copied: list[str] = []
    real = shutil.copyfile
    monkeypatch.setattr(shutil, "copyfile", lambda src, dst: copied.append(Path(src).name) or real(src, dst))
    copy = local / "MyDrive" / "embedlab" / "thumbnails" / "ds-64"
    (copy / "a").mkdir(parents=True)
    (copy / "a" / "1.png").write_bytes(b"a/1.png")  # a copy cut short: one file made it
    assert run.image_root(32) == copy and len(copied) == 2
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*.png")) == ["a/1.png", "a/2.png", "b/1.png"]
    assert (copy / "b" / "1.png").read_bytes() == b"b/1.png"
    assert capsys.readouterr().out.count("Google Drive") == 1
    assert run.image_root(32) == copy and len(copied) == 2 and capsys.readouterr().out == ""  # once
    monkeypatch.setattr(paths, "DRIVE_MOUNT", tmp_path / "elsewhere")
    assert run.image_root(32) == thumbs  # not on Drive: read where it is


@pytest.mark.parametrize("method", ["distillation", "multi_teacher"])
def test_a_distillation_step_reads_nothing_back_from_the_device(
    method: str, tiny_data: Path, teacher_file: Path
) -> None:
    """The queue's fill level (twice per teacher) and the mixup weight were read on the host every step, each a wait
    for the device on a GPU; the labels went to the device and were read back. Now the step reads nothing back."""
    from conftest import TINY_TRAINING
    from torch.utils._python_dispatch import TorchDispatchMode

    from embedlab.settings import TrainSettings
    from embedlab.training import build_module, open_dataset

    class HostReads(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            HostReads.count += func is torch.ops.aten._local_scalar_dense.default  # .item(), float(), int(), bool()
            return func(*args, **(kwargs or {}))

    teacher = {"teacher": str(teacher_file)} if method == "distillation" else {"teachers": f"{teacher_file}+pca"}
    settings = TrainSettings(**{**TINY_TRAINING, "method": method, **teacher})
    dataset = open_dataset(tiny_data, settings)
    module = build_module(settings, 1, len(dataset), dataset=dataset)
    module.method.prepare(torch.device("cpu"))  # once before training, not per step
    module.log = lambda *args, **kwargs: None  # no Trainer here
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    with HostReads():
        losses = [module.training_step(batch, step) for step in range(3)]
    assert HostReads.count == 0 and all(torch.isfinite(loss) for loss in losses)
    moved = module.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved[0][0].device.type == "meta" and moved[1].device.type == "cpu" and moved[2] == batch[2]
