"""Embedding that streams to shards and resumes, for folders too big to hold at once (a photo library).

`embed_to_shards(folder, model, out_dir)` writes, shard by shard, the layout that embedding readers and FAISS
index builders already read (clip-retrieval's):

    out_dir/img_emb/img_emb_0000.npy           float32 [rows, D], the vectors of one shard
    out_dir/metadata/metadata_0000.parquet      filename, label, class: one row per vector, in the same order
    out_dir/manifest.json                       model, image size, class names, and every finished shard
    out_dir/skipped.json                        every file left out (unreadable), with the reason

Only one shard's vectors are in memory at a time. A shard is recorded in the manifest after both of its files are
written (each atomically), so a killed run restarted with the same command skips the finished shards and
recomputes at most the one it was in. `load_embeddings(out_dir)` reads the whole set back; `iter_shards` one
shard at a time. Parquet needs pyarrow (`pip install "embedlab[scale]"`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.embedding.store import Embeddings, EmbeddingsError
from embedlab.settings import EmbedSettings

SHARD_SIZE: int = EmbedSettings.__dataclass_fields__["embed_shard_size"].default  # declared once in settings
MANIFEST = "manifest.json"
SKIPPED = "skipped.json"
LAYOUT = "img_emb/*.npy + metadata/*.parquet"


def _parquet() -> Any:
    """pyarrow.parquet, or a one-line error saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EmbeddingsError(
            'sharded embeddings write their metadata as Parquet: pip install "embedlab[scale]" (pyarrow)'
        ) from None
    return pq


def shard_files(out_dir: Path, index: int) -> tuple[Path, Path]:
    """(vectors .npy, metadata .parquet) of shard `index`."""
    return out_dir / "img_emb" / f"img_emb_{index:04d}.npy", out_dir / "metadata" / f"metadata_{index:04d}.parquet"


def _read_manifest(out_dir: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """The manifest of an earlier run of the same job (finished shards kept), or a fresh one; another job's
    manifest in the same folder is refused rather than mixed in."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return {**expected, "shards": []}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # cut short by a full disk or a kill: the shards on disk say what is done
        return {**expected, "shards": []}
    differs = [k for k, v in expected.items() if found.get(k) != v]
    if differs:
        raise EmbeddingsError(
            f"{out_dir} holds shards of another job (different {', '.join(differs)}): use a new out_dir or delete it"
        )
    return found


def _write_shard(emb: Embeddings, out_dir: Path, index: int, classes: list[str]) -> None:
    """Write one shard's vectors, then its metadata (each atomically): the metadata file marks the shard done."""
    import pyarrow as pa

    from embedlab._io import atomic_open, write_failed, write_json

    vectors_path, metadata_path = shard_files(out_dir, index)
    for folder in (vectors_path.parent, metadata_path.parent):
        folder.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_open(vectors_path, "wb") as handle:
            np.save(handle, emb.numpy().astype(np.float32))
    except OSError as error:  # a full disk: numpy says only "51200 requested and 31712 written"
        raise OSError(
            f"{write_failed(vectors_path, error)}; the finished shards are kept and the same command continues"
        ) from None
    listed, skipped = _shard_skipped(out_dir, index), emb.meta.get("skipped_images")
    if skipped:  # written before the file that marks the shard done
        write_json(listed, skipped)
    else:
        listed.unlink(missing_ok=True)
    labels = [int(x) for x in emb.labels] if emb.labels is not None else [-1] * len(emb)
    table = pa.table(
        {
            "filename": pa.array(emb.filenames, pa.string()),
            "label": pa.array(labels, pa.int64()),
            "class": pa.array([classes[x] if x >= 0 else "" for x in labels], pa.string()),
        }
    )
    with atomic_open(metadata_path, "wb") as handle:
        _parquet().write_table(table, handle)


def _shard_skipped(out_dir: Path, index: int) -> Path:
    """The files shard `index` left out (a JSON list of filename + reason), written with the shard when any."""
    return out_dir / "metadata" / f"skipped_{index:04d}.json"


def _write_skipped(out_dir: Path, count: int, at_scan: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every file the job left out (found unusable when the folder was read, or by a shard, also in an earlier run)
    into out_dir/skipped.json; returned for the warning."""
    from embedlab._io import write_json

    skipped = list(at_scan)
    for index in range(count):
        path = _shard_skipped(out_dir, index)
        if path.is_file():
            skipped.extend((e["filename"], e["reason"]) for e in json.loads(path.read_text(encoding="utf-8")))
    write_json(
        out_dir / SKIPPED, {"count": len(skipped), "skipped": [{"filename": f, "reason": r} for f, r in skipped]}
    )
    return skipped


def finished_shards(out_dir: Path, count: int, shard_size: int, images: int) -> list[dict[str, Any]]:
    """The manifest entries of the shards whose two files are written (index, rows, skipped = undecodable files),
    read from the folder itself, so that any process can tell what is done."""
    from embedlab.embedding.predict import shard_rows

    entries = []
    for index in range(count):
        rows = _whole_shard_rows(*shard_files(out_dir, index))
        if rows is not None:
            entries.append({"index": index, "rows": rows, "skipped": len(shard_rows(index, shard_size, images)) - rows})
    return entries


def _whole_shard_rows(vectors_path: Path, metadata_path: Path) -> int | None:
    """The rows of a shard whose two files are both readable and agree, else None (missing, cut short or mixed up:
    the shard counts as unfinished, so a rerun writes it again)."""
    if not (vectors_path.is_file() and metadata_path.is_file()):
        return None
    try:
        rows = _parquet().read_metadata(metadata_path).num_rows
        vectors = np.load(vectors_path, mmap_mode="r")
    except (OSError, ValueError, EOFError):  # pyarrow's ArrowInvalid is a ValueError
        return None
    return rows if vectors.ndim == 2 and len(vectors) == rows else None


def _write_manifest(out_dir: Path, manifest: dict[str, Any], count: int) -> None:
    """Rewrite the manifest from the shards on disk (rank 0 only: one writer)."""
    from embedlab._io import write_json

    manifest["shards"] = finished_shards(out_dir, count, manifest["shard_size"], manifest["images"])
    written = [entry["index"] for entry in manifest["shards"] if entry["rows"]]
    if written:
        manifest["embedding_dim"] = int(np.load(shard_files(out_dir, written[0])[0], mmap_mode="r").shape[1])
    manifest["complete"] = len(manifest["shards"]) == count
    write_json(out_dir / MANIFEST, manifest)


def embed_to_shards(
    data: Any,
    model: Any = "resnet18",
    out_dir: str | os.PathLike[str] = "embeddings",
    *,
    shard_size: int = SHARD_SIZE,
    weights: str | None = "imagenet",
    image_size: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    devices: int | str | list[int] = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    num_workers: int | str = "auto",
    progress: bool = True,
    verify: str = "header",
) -> Path:
    """Embed every image of a folder into fixed-size shards under out_dir; resumes where a killed run stopped.

    Same model, size and loader options as `embed`. `devices`, `num_nodes` and `strategy` are Lightning's, as in
    training: with several, each process embeds whole shards (DDP), every image exactly once. Returns out_dir.
    Rerunning a finished job does nothing.
    """
    from embedlab._io import remove_stale_temps
    from embedlab.datasets import ImageFolder
    from embedlab.embedding.images import FolderImages, _report_skipped
    from embedlab.embedding.inference import _resolve_model, resolve_image_size
    from embedlab.embedding.predict import predict_shards

    _parquet()
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise EmbeddingsError(f"shard_size must be a positive integer, got {shard_size!r}")
    out = Path(out_dir)
    folder = data if hasattr(data, "filenames") else ImageFolder(data, verify=verify)
    backbone, name = _resolve_model(model, weights)
    size = resolve_image_size(backbone, image_size)
    expected = {
        "layout": LAYOUT,
        "images": len(folder.filenames),
        "shard_size": shard_size,
        "model": name,
        "image_size": size,
        "class_names": list(folder.classes),
    }
    job = _ShardJob(out, _read_manifest(out, expected))
    if _is_rank_zero():
        remove_stale_temps(out)  # a write killed between writing and renaming
        job.record()
    predict_shards(
        backbone, FolderImages(folder, size), shard_size, job.unfinished, job.write, batch_size=batch_size,
        device=device, devices=devices, num_nodes=num_nodes, strategy=strategy, num_workers=num_workers,
        progress=progress,
    )  # fmt: skip
    if _is_rank_zero():
        job.record()
        skipped = _write_skipped(out, job.count, list(getattr(folder, "skipped", [])))
        _report_skipped(skipped, folder.root, listed_in=str(out / SKIPPED))
    return out


class _ShardJob:
    """One embed_to_shards job's folder: which shards are unfinished, writing one, and the manifest (rank 0)."""

    def __init__(self, out: Path, manifest: dict[str, Any]) -> None:
        self.out, self.manifest = out, manifest
        self.count = -(-manifest["images"] // manifest["shard_size"])

    def unfinished(self) -> list[int]:
        """Shards whose files are not both written yet (read from the folder, not from the manifest)."""
        done = {
            e["index"]
            for e in finished_shards(self.out, self.count, self.manifest["shard_size"], self.manifest["images"])
        }
        return [i for i in range(self.count) if i not in done]

    def write(self, index: int, emb: Embeddings) -> None:
        """Write a finished shard; rank 0 also updates the manifest."""
        _write_shard(emb, self.out, index, self.manifest["class_names"])
        if _is_rank_zero():
            self.record()

    def record(self) -> None:
        """Rewrite the manifest from the shards on disk."""
        _write_manifest(self.out, self.manifest, self.count)


def _is_rank_zero() -> bool:
    """True in the process that writes the manifest (the only one without DDP)."""
    from embedlab.runtime import is_rank_zero

    return is_rank_zero()


def iter_shards(out_dir: str | os.PathLike[str]) -> Iterator[Embeddings]:
    """Each finished shard as Embeddings, in order: memory stays at one shard."""
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.is_file():
        raise EmbeddingsError(f"no {MANIFEST} in {out}: not a folder of sharded embeddings (embed_to_shards)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        count = -(-manifest["images"] // manifest["shard_size"])
    except (ValueError, KeyError, TypeError):
        raise EmbeddingsError(f"{path} is damaged: run the same `embedlab embed` command again to rewrite it") from None
    classes = manifest.get("class_names")
    done = finished_shards(out, count, manifest["shard_size"], manifest["images"])  # the files, not the list
    if len(done) < count:
        first = sorted(set(range(count)) - {entry["index"] for entry in done})[0]
        raise EmbeddingsError(
            f"{out} is not complete: {len(done)} of {count} shards are whole (shard {first} is missing, cut short or "
            f"does not match its metadata); run the same `embedlab embed` command again to finish or repair it"
        )
    for entry in done:
        vectors_path, metadata_path = shard_files(out, entry["index"])
        meta = _parquet().read_table(metadata_path).to_pydict()
        labels = np.asarray(meta["label"]) if all(x >= 0 for x in meta["label"]) else None
        yield Embeddings(
            np.load(vectors_path),
            meta["filename"],
            labels,
            classes if labels is not None else None,
            name=str(manifest.get("model", "")),
            meta={k: manifest[k] for k in ("model", "image_size", "embedding_dim") if k in manifest},
        )


def load_shards(out_dir: str | os.PathLike[str]) -> Embeddings:
    """Every finished shard of out_dir as one Embeddings (needs N x D floats of memory: use iter_shards for more)."""
    import torch

    parts = list(iter_shards(out_dir))
    if not parts:
        raise EmbeddingsError(f"{out_dir} holds no finished shard yet")
    labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])
    first = parts[0]
    return Embeddings(
        torch.cat([p.vectors for p in parts]),
        [f for p in parts for f in p.filenames],
        labels,
        first.class_names if labels is not None else None,
        name=first.name,
        meta=first.meta,
    )
