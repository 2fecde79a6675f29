"""Where and how the work runs: accelerator, precision, device, data-loading workers and process rank.

One resolver for every stage; the training and embedding policies for "auto" sit side by side so they can be
compared. A request this machine cannot honour is a one-line ParameterError naming the option.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from embedlab.settings import ParameterError

GPU_ACCELERATORS = ("gpu", "cuda")
MAX_WORKERS = 8
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


def resolve_accelerator(accelerator: str) -> str:
    """Lightning's accelerator for training: 'auto' -> 'gpu' when CUDA is usable, else 'cpu'."""
    if accelerator == "auto":
        return "gpu" if _cuda_available() else "cpu"
    if accelerator in GPU_ACCELERATORS and not _cuda_available():
        raise ParameterError(
            f"parameter 'accelerator': {accelerator!r} but no CUDA GPU is visible; use accelerator='cpu' or 'auto'."
        )
    return accelerator


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """'auto' -> bf16-mixed on GPUs that support bf16, 16-mixed on older GPUs, 32-true on CPU (bf16 is slow there)."""
    if precision != "auto":
        return str(precision)
    if accelerator in GPU_ACCELERATORS:
        import torch

        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def resolve_device(device: Any = "auto") -> Any:
    """A torch.device for embedding and inference: 'auto' -> CUDA when available, else CPU; checked to exist."""
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ParameterError(f"parameter 'device': {device!r} is not available here: use cpu or auto")
    return dev


def train_workers(num_workers: int | str, accelerator: str = "cpu", *, cpus: int | None = None) -> int:
    """DataLoader workers for training; 'auto' from measurements (benchmarks/bench_gpu.py --workers).

    On CPU the step itself uses every core and waiting for data is small (measured on 2 cores at 32 px: about 3% of
    the step with 0 workers, benchmarks/results/bench_gpu-cpu-workers.json), so with 2 cores or fewer there are no
    workers to compete with it; with more cores half of them decode (not measured). On a GPU the step is fast and
    decoding + augmenting becomes the bottleneck: every core gets a worker, up to 8 (not measured: no GPU run yet).
    """
    if num_workers != "auto":
        return int(num_workers)
    cpus = cpu_count() if cpus is None else cpus
    if accelerator in GPU_ACCELERATORS:
        return min(MAX_WORKERS, cpus)
    return 0 if cpus <= 2 else min(MAX_WORKERS, cpus // 2)


def embed_workers(num_workers: int | str, device_type: str, *, cpus: int | None = None) -> int:
    """DataLoader workers for embedding: several on GPU (decoding must keep up), none on CPU (decoding is cheap
    next to the forward pass and a worker would take a core from it)."""
    if num_workers != "auto":
        return int(num_workers)
    cpus = cpu_count() if cpus is None else cpus
    return min(MAX_WORKERS, max(cpus - 1, 1)) if device_type == "cuda" else 0


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
