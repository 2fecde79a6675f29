"""Embedding that streams to shards and resumes, for folders too big to hold at once (a photo library).

`embed_to_shards(folder, model, out_dir)` writes, shard by shard, the layout that embedding readers and FAISS
index builders already read (clip-retrieval's):

    out_dir/img_emb/img_emb_0000.npy           float32 [rows, D], the vectors of one shard
    out_dir/metadata/metadata_0000.parquet      filename, label, class: one row per vector, in the same order
    out_dir/manifest.json                       model, image size, class names, and every finished shard

Only one shard's vectors are in memory at a time. A shard is recorded in the manifest after both of its files are
written (each atomically), so a killed run restarted with the same command skips the finished shards and
recomputes at most the one it was in. `load_embeddings(out_dir)` reads the whole set back; `iter_shards` one
shard at a time. Parquet needs pyarrow (`pip install "embedlab[scale]"`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.embedding.store import Embeddings, EmbeddingsError

SHARD_SIZE = 10_000  # images per shard: at D=2048 a shard's vectors are 80 MB, its loss on a kill minutes of work
MANIFEST = "manifest.json"
LAYOUT = "img_emb/*.npy + metadata/*.parquet"


@dataclass
class _Slice:
    """The images of one shard, shaped like an ImageFolder for `embed` (root, filenames, labels, classes)."""

    root: Path
    filenames: list[str]
    labels: list[int]
    classes: list[str]
    labeled: bool = True
    skipped: list[tuple[str, str]] = field(default_factory=list)


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
    found = json.loads(path.read_text(encoding="utf-8"))
    differs = [k for k, v in expected.items() if found.get(k) != v]
    if differs:
        raise EmbeddingsError(
            f"{out_dir} holds shards of another job (different {', '.join(differs)}): use a new out_dir or delete it"
        )
    return found


def _write_shard(emb: Embeddings, out_dir: Path, index: int, classes: list[str], images: int) -> dict[str, Any]:
    """Write one shard's vectors and metadata (each atomically); its manifest entry."""
    import pyarrow as pa

    from embedlab._io import atomic_open

    vectors_path, metadata_path = shard_files(out_dir, index)
    for folder in (vectors_path.parent, metadata_path.parent):
        folder.mkdir(parents=True, exist_ok=True)
    with atomic_open(vectors_path, "wb") as handle:
        np.save(handle, emb.numpy().astype(np.float32))
    labels = [int(x) for x in emb.labels] if emb.labels is not None else [-1] * len(emb)
    table = pa.table(
        {
            "filename": emb.filenames,
            "label": labels,
            "class": [classes[x] if x >= 0 else "" for x in labels],
        }
    )
    with atomic_open(metadata_path, "wb") as handle:
        _parquet().write_table(table, handle)
    return {"index": index, "rows": len(emb), "skipped": images - len(emb)}  # undecodable files get no vector


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
    num_workers: int | str = "auto",
    progress: bool = True,
    verify: str = "header",
) -> Path:
    """Embed every image of a folder into fixed-size shards under out_dir; resumes where a killed run stopped.

    Same model, size and loader options as `embed`. Returns out_dir. Rerunning a finished job does nothing.
    """
    from embedlab._io import remove_stale_temps, write_json
    from embedlab._progress import tqdm
    from embedlab.datasets import ImageFolder
    from embedlab.embedding.inference import _resolve_model, embed, resolve_image_size

    _parquet()
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise EmbeddingsError(f"shard_size must be a positive integer, got {shard_size!r}")
    out = Path(out_dir)
    remove_stale_temps(out)  # a write killed between writing and renaming
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
    manifest = _read_manifest(out, expected)
    done = {entry["index"] for entry in manifest["shards"]}
    shards = range(-(-len(folder.filenames) // shard_size))
    for index in tqdm(shards, desc=f"shards of {name}", unit="shard", disable=not progress):
        if index in done:
            continue
        rows = slice(index * shard_size, (index + 1) * shard_size)
        part = _Slice(Path(folder.root), list(folder.filenames[rows]), list(folder.labels[rows]), list(folder.classes))
        part.labeled = bool(getattr(folder, "labeled", True))
        emb = embed(part, backbone, image_size=size, batch_size=batch_size, device=device, num_workers=num_workers,
                    progress=False, name=name)  # fmt: skip
        manifest["shards"].append(_write_shard(emb, out, index, list(folder.classes), len(part.filenames)))
        manifest["embedding_dim"] = emb.dim
        write_json(out / MANIFEST, manifest)
    manifest["complete"] = len(manifest["shards"]) == len(shards)
    write_json(out / MANIFEST, manifest)
    return out


def iter_shards(out_dir: str | os.PathLike[str]) -> Iterator[Embeddings]:
    """Each finished shard as Embeddings, in order: memory stays at one shard."""
    out = Path(out_dir)
    path = out / MANIFEST
    if not path.is_file():
        raise EmbeddingsError(f"no {MANIFEST} in {out}: not a folder of sharded embeddings (embed_to_shards)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    classes = manifest.get("class_names")
    for entry in sorted(manifest["shards"], key=lambda e: e["index"]):
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
