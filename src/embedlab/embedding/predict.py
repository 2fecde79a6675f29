"""The engine of `embed_to_shards`: Lightning's `Trainer.predict` over the unfinished shards, on one device or many.

Every process (one per device, on one or many machines, under DDP) owns whole shards: the unfinished ones are
dealt out round-robin, and only the owner writes a shard, when its last row is embedded (`ShardWriter`, a
Lightning prediction writer). So every file is embedded exactly once, also when the shards do not divide by the
number of processes: the processes with fewer images run padding batches that skip the network, so that all of
them take the same number of steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from embedlab.embedding.images import FolderImages
from embedlab.embedding.store import Embeddings
from embedlab.runtime import StopSignal, Terminated, loader_worker_init, quiet_lightning

PADDING = -1  # the row number of a padding item: a blank image that no shard receives
STOPPED = "embedding stopped by SIGTERM: the finished shards are kept; run the same command again to embed the rest"


def deal_shards(unfinished: list[int], world_size: int) -> list[list[int]]:
    """The shards each process embeds: unfinished shards dealt round-robin (process r gets the r-th, r+W-th...)."""
    return [unfinished[rank::world_size] for rank in range(world_size)]


def shard_rows(index: int, shard_size: int, images: int) -> range:
    """The row numbers (positions in the folder) of one shard."""
    return range(index * shard_size, min(images, (index + 1) * shard_size))


class ShardItems(torch.utils.data.Dataset):
    """One process's images, shard after shard, then padding items up to the longest process's count:
    (image, label, filename, error, row); a padding item is a blank image with row PADDING."""

    def __init__(self, images: FolderImages, rows: list[int], length: int) -> None:
        self.images, self.rows = images, rows + [PADDING] * (length - len(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str, str, int]:
        row = self.rows[index]
        if row == PADDING:
            blank = torch.zeros((self.images.size, self.images.size, 3), dtype=torch.uint8)
            return blank, -1, "", "padding", PADDING
        return (*self.images[row], row)


class ShardDataModule(pl.LightningDataModule):
    """Deals the unfinished shards once, on rank 0, and sends the plan to every process (so all agree, even if
    one process looked at the folder later than another)."""

    def __init__(
        self,
        images: FolderImages,
        shard_size: int,
        unfinished: Callable[[], list[int]],
        batch_size: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        self.images, self.shard_size, self.unfinished = images, shard_size, unfinished
        self.batch_size, self.num_workers = batch_size, num_workers
        self.plan: list[list[int]] = []

    def setup(self, stage: str) -> None:
        """Deal the shards that rank 0 finds unfinished among all processes."""
        strategy = self.trainer.strategy
        todo = self.unfinished() if strategy.global_rank == 0 else None
        self.plan = deal_shards(strategy.broadcast(todo, src=0), strategy.world_size)

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        """This process's images in order (Lightning's distributed sampler is off: the plan splits the work)."""
        n = len(self.images.filenames)
        per_process = [[r for i in shards for r in shard_rows(i, self.shard_size, n)] for shards in self.plan]
        longest = max(len(rows) for rows in per_process)
        mine = per_process[self.trainer.strategy.global_rank]
        return torch.utils.data.DataLoader(
            ShardItems(self.images, mine, longest), batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers, drop_last=False, worker_init_fn=loader_worker_init,
        )  # fmt: skip


class EmbedModule(pl.LightningModule):
    """The backbone with its input normalisation, for `Trainer.predict`: vectors of a batch's real images."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any] | None:
        """Vectors (float32, on the CPU) and row numbers of the batch; a batch of padding only skips the network."""
        images, labels, filenames, errors, rows = batch
        if bool((rows == PADDING).all()):
            return None
        vectors = self.net(images.contiguous()).float().cpu()
        return {"vectors": vectors, "labels": labels, "filenames": filenames, "errors": errors, "rows": rows}


class ShardWriter(pl.callbacks.BasePredictionWriter):
    """Gathers each shard's rows as batches finish and writes the shard (`write`) once its last row is in; only
    one shard per process is held in memory."""

    def __init__(
        self,
        shard_size: int,
        images: FolderImages,
        write: Callable[[int, Embeddings], None],
        stop: StopSignal | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.shard_size, self.images, self.write, self.stop = shard_size, len(images.filenames), write, stop
        self.labeled = images.labeled  # a folder of loose photos has no classes: its shards get no labels
        self.pending: dict[int, dict[str, list[Any]]] = {}
        self.stopped_by: BaseException | None = None

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Remember why predict stopped (Lightning turns Ctrl+C into sys.exit(1))."""
        self.stopped_by = exception

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Lightning installed its SIGTERM handler (it only notes the signal, and predict never reads the note):
        ours goes back."""
        if self.stop is not None:
            self.stop.install()

    def on_predict_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Under DDP a SIGTERM is only noted: the processes agree on it before each batch and all stop there."""
        if self.stop is None or trainer.world_size == 1:
            return
        received = torch.tensor([float(self.stop.received)], device=trainer.strategy.root_device)
        if trainer.strategy.reduce(received, reduce_op="max").item():
            raise Terminated(STOPPED)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        """Wait for every process's last shard, so that rank 0's manifest sees them all."""
        trainer.strategy.barrier("shards written")

    def write_on_batch_end(
        self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        """Add the batch's rows to their shards; write every shard that is now complete."""
        if prediction is None:
            return
        for i, row in enumerate(prediction["rows"].tolist()):
            if row != PADDING:
                self._add(row, prediction, i)
        for index in [i for i, s in self.pending.items() if len(s["seen"]) == len(self._rows(i))]:
            self._flush(index)

    def _add(self, row: int, prediction: dict[str, Any], i: int) -> None:
        """File item i of a batch under its shard: its vector, or its file among the skipped ones."""
        shard = self.pending.setdefault(row // self.shard_size, {"seen": [], "keep": [], "skipped": []})
        shard["seen"].append(row)
        filename, error = prediction["filenames"][i], prediction["errors"][i]
        if error:
            shard["skipped"].append({"filename": filename, "reason": error})
        else:
            shard["keep"].append((prediction["vectors"][i], int(prediction["labels"][i]), filename))

    def _rows(self, index: int) -> range:
        return shard_rows(index, self.shard_size, self.images)

    def _flush(self, index: int) -> None:
        """Write a complete shard (its decodable images, in folder order, and the files it left out) and forget it."""
        shard = self.pending.pop(index)
        kept = shard["keep"]
        vectors = torch.stack([v for v, _, _ in kept]) if kept else torch.zeros(0, 0)
        labels = np.asarray([x for _, x, _ in kept]) if self.labeled else None
        emb = Embeddings(vectors, [f for _, _, f in kept], labels, meta={"skipped_images": shard["skipped"]})
        self.write(index, emb)


def _accelerator(device: str) -> tuple[str, int | str | list[int] | None]:
    """Lightning's accelerator for an embed `device` ("auto", "cpu", "cuda", "cuda:1"), and the device index
    when one was named."""
    from embedlab.runtime import resolve_device

    dev = resolve_device(device)
    kind = {"cuda": "gpu"}.get(dev.type, dev.type)
    return kind, [dev.index] if dev.index is not None else None


def leave_process_group() -> None:
    """End this process's part in torch.distributed once prediction is over: a process group left to the interpreter's
    exit can abort it ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def build_predictor(
    device: str, devices: int | str | list[int], num_nodes: int, strategy: str, progress: bool, writer: ShardWriter
) -> pl.Trainer:
    """A Lightning Trainer for prediction only (no logger, checkpoints or distributed sampler); options this
    machine cannot honour are a one-line EmbeddingsError."""
    from embedlab._progress import live_bars
    from embedlab.embedding.store import EmbeddingsError
    from embedlab.runtime import resolve_precision

    accelerator, named = _accelerator(device)
    chosen = named if named is not None and devices == 1 else devices
    try:
        with quiet_lightning():
            return pl.Trainer(
                accelerator=accelerator, devices=chosen, num_nodes=num_nodes, strategy=strategy,
                precision=resolve_precision("auto", accelerator), logger=False, enable_checkpointing=False,
                enable_progress_bar=progress and live_bars(), enable_model_summary=False,
                use_distributed_sampler=False, callbacks=[writer],
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - Lightning raises TypeError, ValueError or MisconfigurationException
        raise EmbeddingsError(
            f"Lightning cannot embed with accelerator {accelerator!r}, devices {chosen!r}, num_nodes {num_nodes!r} "
            f"and strategy {strategy!r}: {' '.join(str(exc).split())}"
        ) from None


def predict_shards(
    backbone: Any,
    images: FolderImages,
    shard_size: int,
    unfinished: Callable[[], list[int]],
    write: Callable[[int, Embeddings], None],
    *,
    batch_size: int,
    device: str,
    devices: int | str | list[int],
    num_nodes: int,
    strategy: str,
    num_workers: int | str,
    progress: bool,
) -> None:
    """Embed the unfinished shards with Trainer.predict and hand each complete shard to `write`; Ctrl+C or SIGTERM
    ends in a one-line KeyboardInterrupt (for SIGTERM Terminated, exit status 143) that says the finished shards are
    kept; under DDP every process stops at the same batch and rank 0 alone says so."""
    import signal

    from embedlab.embedding.inference import _inference_net
    from embedlab.runtime import embed_workers, is_rank_zero, resolve_device, sigterm_as_interrupt

    sigint = signal.getsignal(signal.SIGINT)
    with sigterm_as_interrupt(STOPPED) as stop:
        writer = ShardWriter(shard_size, images, write, stop)
        trainer = build_predictor(device, devices, num_nodes, strategy, progress, writer)
        workers = embed_workers(num_workers, resolve_device(device).type, ranks=trainer.num_devices)
        data = ShardDataModule(images, shard_size, unfinished, batch_size, workers)
        try:
            with quiet_lightning():
                trainer.predict(EmbedModule(_inference_net(backbone)), datamodule=data, return_predictions=False)
            leave_process_group()
        except SystemExit:
            leave_process_group()
            if not isinstance(writer.stopped_by, KeyboardInterrupt):
                raise
            signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl+C from then on: give it back
            terminated = isinstance(writer.stopped_by, Terminated)
            if not is_rank_zero():  # rank 0 says it, once
                raise SystemExit(Terminated.exit_status if terminated else 130) from None
            if terminated:
                raise Terminated(STOPPED) from None
            raise KeyboardInterrupt(
                "embedding interrupted: the finished shards are kept; run the same command again to embed the rest"
            ) from None
