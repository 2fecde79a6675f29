"""Where and how the work runs: accelerator, precision and autocast dtype, device, data-loading workers, process
rank, SIGTERM, and Lightning's logging.

One resolver for every stage (train, embed, predict and the benchmarks); the training and embedding policies for
"auto" sit side by side so they can be compared. A request this machine cannot honour is a one-line ParameterError
naming the option.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from embedlab.settings import ParameterError

GPU_ACCELERATORS = ("gpu", "cuda")
MAX_WORKERS = 8
BF16_FROM_CAPABILITY = (8, 0)  # bf16 tensor cores from Ampere; a T4 (7.5) runs bf16 by slow emulation
_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def is_rank_zero() -> bool:
    """True in the main process (Lightning's DDP launcher sets RANK/LOCAL_RANK/NODE_RANK in the others)."""
    return all(int(os.environ.get(var, "0") or 0) == 0 for var in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    """True on an Apple-silicon Mac whose torch can use its GPU (Metal)."""
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_accelerator(accelerator: str) -> str:
    """Lightning's accelerator for training: 'auto' -> 'gpu' when CUDA is usable, 'mps' on an Apple GPU, else 'cpu'."""
    if accelerator == "auto":
        return "gpu" if _cuda_available() else "mps" if _mps_available() else "cpu"
    if accelerator in GPU_ACCELERATORS and not _cuda_available():
        raise ParameterError(
            f"parameter 'accelerator': {accelerator!r} but no CUDA GPU is visible; use accelerator='cpu' or 'auto'."
        )
    return accelerator


def _nvml_capability() -> tuple[int, int] | None:
    """The lowest compute capability among the GPUs, read through NVML: it does not initialise CUDA, so DDP may still
    fork afterwards (Kaggle's 2 x T4 notebooks); None where NVML is missing."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        count, major, minor, handle = ctypes.c_uint(), ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p()
        if nvml.nvmlInit_v2() or nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) or not count.value:
            return None
        found = []
        for index in range(count.value):
            failed = nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle))
            if failed or nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)):
                return None
            found.append((major.value, minor.value))
        return min(found)
    except (OSError, AttributeError):
        return None


def gpu_capability() -> tuple[int, int]:
    """The lowest compute capability among the visible GPUs (every rank must choose the same precision)."""
    import torch

    if not torch.cuda.is_initialized():
        found = _nvml_capability()
        if found is not None:
            return found
    return min(tuple(torch.cuda.get_device_capability(i)) for i in range(max(torch.cuda.device_count(), 1)))


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """'auto' -> bf16-mixed from compute capability 8.0, 16-mixed below (torch.cuda.is_bf16_supported() is True on a
    T4 by emulation, slowly), 32-true on CPU (bf16 is ~20x slower there). Train, embed and predict all use it."""
    if precision != "auto":
        return str(precision)
    if accelerator in GPU_ACCELERATORS:
        return "bf16-mixed" if gpu_capability() >= BF16_FROM_CAPABILITY else "16-mixed"
    return "32-true"


def autocast_dtype(precision: str) -> Any:
    """The autocast dtype of a Lightning precision (torch.bfloat16, torch.float16), None for full precision."""
    import torch

    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))


def device_precision(device: Any) -> str:
    """The precision 'auto' gives work on a torch.device (what `embed` autocasts to)."""
    return resolve_precision("auto", "gpu" if getattr(device, "type", device) == "cuda" else "cpu")


def tune_for_gpu(module: Any = None) -> Any:
    """On CUDA: cuDNN benchmarks convolutions once per input size (fixed in training and embedding), float32 matmuls
    may use TF32, and the module's weights go channels_last (the layout tensor cores read); returns the module."""
    import torch

    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    return module.to(memory_format=torch.channels_last) if module is not None else None


def resolve_device(device: Any = "auto") -> Any:
    """A torch.device for embedding and inference: 'auto' -> CUDA, else Apple's MPS, else CPU; checked to exist."""
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ParameterError(
            f"parameter 'device': {device!r} is not a device name: use auto, cpu, cuda, cuda:1, mps"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            have = f"cuda:0 to cuda:{count - 1}" if count else "no CUDA GPU: use cpu or auto"
            raise ParameterError(f"parameter 'device': {device!r} is not on this machine ({have})")
    if dev.type == "mps" and not _mps_available():
        raise ParameterError(f"parameter 'device': {device!r} is not available here: use cpu or auto")
    return dev


def local_ranks() -> int:
    """Processes sharing this machine's cores (torchrun and Lightning's launcher set LOCAL_WORLD_SIZE), else 1."""
    return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)


def _cores_per_rank(cpus: int | None, ranks: int | None) -> int:
    """This process's share of the machine's cores."""
    cpus = cpu_count() if cpus is None else cpus
    return max(cpus // (local_ranks() if ranks is None else max(ranks, 1)), 1)


def train_workers(
    num_workers: int | str, accelerator: str = "cpu", *, cpus: int | None = None, ranks: int | None = None
) -> int:
    """DataLoader workers per rank for training; 'auto' shares the cores among the `ranks` on this machine.

    On CPU the step itself uses every core and waiting for data is small (measured on 2 cores at 32 px: about 3% of
    the step with 0 workers, benchmarks/results/bench_gpu-cpu-workers.json), so with 2 cores or fewer per rank there
    are no workers; with more, half of them decode (not measured). On a GPU decoding + augmenting limits the step (a
    core does ~160-280 images/s at 224 px; an H100 steps far faster), so every core but the rank's own gets a worker,
    without a fixed cap (not measured on a GPU yet: benchmarks/gpu_check.py measures the data-wait share).
    """
    if num_workers != "auto":
        return int(num_workers)
    cores = _cores_per_rank(cpus, ranks)
    if accelerator in GPU_ACCELERATORS:
        return max(cores - 1, 1)
    return 0 if cores <= 2 else min(MAX_WORKERS, cores // 2)


def embed_workers(
    num_workers: int | str, device_type: str, *, cpus: int | None = None, ranks: int | None = None
) -> int:
    """DataLoader workers per rank for embedding: on GPU every core of the rank's share but its own (decoding must
    keep up), none on CPU (decoding is cheap next to the forward pass and a worker would take a core from it)."""
    if num_workers != "auto":
        return int(num_workers)
    return max(_cores_per_rank(cpus, ranks) - 1, 1) if device_type == "cuda" else 0


def loader_worker_init(worker_id: int) -> None:
    """Every DataLoader worker's start: a process group of its own, so that a signal to the whole group (Ctrl+C in a
    terminal, `timeout`, a scheduler) reaches the parent alone, which stops its loaders in order (a worker killed by
    it ended training in torch's "DataLoader worker is killed by signal" traceback); then Lightning's per-worker
    seeding, which it adds only to loaders without a worker_init_fn. A killed parent takes its workers with it."""
    from embedlab.datasets.thumbnails import die_with_parent

    os.setpgid(0, 0)
    die_with_parent(os.getppid())
    if os.environ.get("PL_SEED_WORKERS") == "1":  # seed_everything(..., workers=True) in this process
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `timeout`, a recycled Colab runtime) handled like Ctrl+C: finished work is saved; the
    command exits with 143 (128 + SIGTERM), never 0."""

    exit_status = 143


class StopSignal:
    """The SIGTERM handler: one process raises Terminated at once; under torch.distributed it only records the signal
    (`received`), so that the ranks agree at a step boundary and all stop at the same step (a collective inside a
    signal handler, or one rank leaving alone, hangs the others)."""

    def __init__(self, message: str) -> None:
        self.message, self.received = message, False

    def __call__(self, signum: int, frame: Any) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            self.received = True
            return
        raise Terminated(self.message)

    def install(self) -> None:
        """Make this the SIGTERM handler again (Lightning puts its own first, which broadcasts inside the handler)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self)


@contextmanager
def sigterm_as_interrupt(message: str) -> Iterator[StopSignal]:
    """While the body runs (main thread only), SIGTERM becomes Terminated, a KeyboardInterrupt: the work saves and
    stops as for Ctrl+C instead of dying with a stale output or leaving with exit status 0."""
    stop = StopSignal(message)
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def quiet_lightning(quiet: bool = True) -> Iterator[None]:
    """Hide Lightning's info banners (GPU available..., model summary) and its known harmless warnings."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        with warnings.catch_warnings():
            for message in ("does not have many workers", "sync_dist=True", "that ended before the epoch", "treespec"):
                warnings.filterwarnings("ignore", message=f".*{message}.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
