"""The `Embeddings` container and its files: `.pt` (loadable with `torch.load(path, weights_only=True)`, like
LightlyTrain's), `.npy` (the vectors; the other fields in a `.json` sidecar next to it) and `.npz` (everything,
optionally compressed). Every save is atomic."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlab._io import atomic_open, remove_stale_temps, torch_save, write_failed, write_json

SAVE_FORMATS = (".pt", ".npy", ".npz")


class EmbeddingsError(RuntimeError):
    """An embeddings file is missing, unreadable or not an embeddings file; or embed() got a bad input."""


@dataclass
class Embeddings:
    """One vector per image plus what identifies it: filename, label, class names, and how it was made."""

    vectors: torch.Tensor
    filenames: list[str]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Normalise types (float32 [N, D] CPU tensor, int64 labels) and check that lengths agree."""
        self.vectors = torch.as_tensor(self.vectors).detach().to("cpu", torch.float32)
        if self.vectors.ndim != 2:
            raise EmbeddingsError(f"vectors must be 2-D [N, D], got shape {tuple(self.vectors.shape)}")
        self.filenames = [str(f) for f in self.filenames]
        if len(self.filenames) != len(self.vectors):
            raise EmbeddingsError(f"{len(self.filenames)} filenames for {len(self.vectors)} vectors")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
            if len(self.labels) != len(self.vectors):
                raise EmbeddingsError(f"{len(self.labels)} labels for {len(self.vectors)} vectors")
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.vectors.shape[1])

    def numpy(self) -> np.ndarray:
        """The vectors as a float32 NumPy array [N, D]."""
        return self.vectors.numpy()

    def save(self, path: str | os.PathLike[str], *, compress: bool = False) -> Path:
        """Save by suffix (.pt / .npy + .json sidecar / .npz), atomically; returns the path."""
        return save_embeddings(self, path, compress=compress)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Embeddings:
        """Load a file written by save (or a LightlyTrain-style .pt with embeddings + filenames)."""
        return load_embeddings(path)

    def __repr__(self) -> str:
        classes = "no labels" if self.class_names is None else f"{len(self.class_names)} classes"
        return f"Embeddings(name={self.name!r}, n={len(self)}, dim={self.dim}, {classes})"


# ------------------------------------------------------------------------------------------------ save / load


def _plain(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Meta as JSON-safe primitives, so .pt stays loadable with weights_only=True."""
    return dict(json.loads(json.dumps(dict(meta), default=str)))


def npy_sidecar(path: str | os.PathLike[str]) -> Path:
    """Where a .npy file's filenames/labels/class names live: the same path with a .json suffix."""
    return Path(path).with_suffix(".json")


def _fields(emb: Embeddings) -> dict[str, Any]:
    """Everything except the vectors, as plain Python values."""
    return {
        "filenames": list(emb.filenames),
        "labels": None if emb.labels is None else [int(x) for x in emb.labels],
        "class_names": emb.class_names,
        "name": emb.name,
        "meta": _plain(emb.meta),
    }


def skipped_path(path: str | os.PathLike[str]) -> Path:
    """Where the list of images left out of an embeddings file goes: <name>.skipped.json beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.skipped.json")


def _write_skipped(emb: Embeddings, path: Path) -> None:
    """Write the skipped-images list (count + files + reasons) beside the embeddings, or remove an old one."""
    skipped = emb.meta.get("skipped_images") or []
    if skipped:
        write_json(
            path, {"embeddings": path.name.replace(".skipped.json", ""), "count": len(skipped), "skipped": skipped}
        )
    else:
        path.unlink(missing_ok=True)


def save_embeddings(emb: Embeddings, path: str | os.PathLike[str], *, compress: bool = False) -> Path:
    """Write embeddings atomically; format by suffix: .pt, .npy (+ .json sidecar), .npz (compress optional).

    The skipped-images list is written after the vectors, so a failed save (a full disk: one OSError naming the
    file) leaves no list without its embeddings."""
    path = Path(path)
    if path.is_dir():  # a folder of shards is written by embed_to_shards, shard by shard, never replaced whole
        raise EmbeddingsError(
            f"cannot save embeddings to {path}: it is a folder; give a file ending in {', '.join(SAVE_FORMATS)} "
            f"(embed_to_shards writes folders of shards)"
        )
    suffix = path.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise EmbeddingsError(f"cannot save embeddings to {path}: use a {', '.join(SAVE_FORMATS)} suffix")
    if path.parent.is_dir():  # leftovers of an earlier save of this file that was killed mid-write
        remove_stale_temps(path.parent, recursive=False, prefix=f".{path.name}.")
    try:
        _write_vectors(emb, path, suffix, compress)
        _write_skipped(emb, skipped_path(path))
    except OSError as error:
        raise write_failed(path, error) from None
    return path


def _write_vectors(emb: Embeddings, path: Path, suffix: str, compress: bool) -> None:
    """The vectors and fields in the format of `suffix` (see save_embeddings)."""
    if suffix == ".pt":
        labels = None if emb.labels is None else torch.from_numpy(emb.labels.copy())
        torch_save({**_fields(emb), "embeddings": emb.vectors.contiguous(), "labels": labels}, path)
    elif suffix == ".npy":
        with atomic_open(path, "wb") as handle:  # a handle: np.save would append ".npy" to the temp name
            np.save(handle, emb.numpy())
        write_json(npy_sidecar(path), {"format": "embedlab-embeddings", "vectors": path.name, **_fields(emb)})
    else:
        arrays: dict[str, np.ndarray] = {
            "vectors": emb.numpy(),
            "filenames_utf8": _utf8_json(emb.filenames),  # bytes as long as the names (not N x longest x 4)
            "name": np.asarray(emb.name),
            "meta": np.asarray(json.dumps(_plain(emb.meta))),
        }
        if emb.labels is not None:
            arrays["labels"] = emb.labels
        if emb.class_names is not None:
            arrays["class_names"] = np.asarray(emb.class_names, dtype=str)
        with atomic_open(path, "wb") as handle:
            (np.savez_compressed if compress else np.savez)(handle, **arrays)


def _load_pt(path: Path) -> Embeddings:
    """Read a .pt dict with at least `embeddings` and `filenames`."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise EmbeddingsError(
            f"{path} is not a readable embeddings .pt file ({type(exc).__name__}); "
            f"it may be corrupt or not saved by embedlab/LightlyTrain."
        ) from None
    if not isinstance(data, Mapping) or "embeddings" not in data or "filenames" not in data:
        keys = list(data)[:5] if isinstance(data, Mapping) else type(data).__name__
        raise EmbeddingsError(
            f"{path} is not an embeddings file: expected a dict with 'embeddings' and "
            f"'filenames', found {keys}. (A model checkpoint? Use embed(data, model=path).)"
        )
    labels = data.get("labels")
    return Embeddings(
        vectors=data["embeddings"],
        filenames=list(data["filenames"]),
        labels=None if labels is None else np.asarray(labels),
        class_names=data.get("class_names"),
        name=str(data.get("name") or path.stem),
        meta=dict(data.get("meta") or {}),
    )


def _load_npy(path: Path) -> Embeddings:
    """Read vectors from .npy and the other fields from the .json sidecar (index numbers if it is missing)."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise EmbeddingsError(f"{path} is not a readable .npy array ({exc}).") from None
    sidecar = npy_sidecar(path)
    if not sidecar.is_file():
        warnings.warn(
            f"{path}: no sidecar {sidecar.name} with filenames; using row numbers as filenames.", stacklevel=3
        )
        return Embeddings(
            vectors=torch.from_numpy(vectors), filenames=[str(i) for i in range(len(vectors))], name=path.stem
        )
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmbeddingsError(f"sidecar {sidecar} of {path} is not valid JSON ({exc}).") from None
    return Embeddings(
        vectors=torch.from_numpy(vectors),
        filenames=info.get("filenames", []),
        labels=info.get("labels"),
        class_names=info.get("class_names"),
        name=info.get("name") or path.stem,
        meta=info.get("meta") or {},
    )


def _utf8_json(names: list[str]) -> np.ndarray:
    """Filenames as the UTF-8 bytes of a JSON list: a fixed-width string array would cost N x longest x 4."""
    return np.frombuffer(json.dumps(names, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def _npz_filenames(data: Any) -> list[str]:
    """The filenames of an .npz: the UTF-8 JSON bytes, or the string array older files hold."""
    if "filenames_utf8" in data:
        return [str(name) for name in json.loads(data["filenames_utf8"].tobytes().decode("utf-8"))]
    return data["filenames"].tolist()


def _load_npz(path: Path) -> Embeddings:
    """Read an .npz written by save_embeddings (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "vectors" not in data or not {"filenames", "filenames_utf8"} & set(data.keys()):
                raise EmbeddingsError(
                    f"{path} is not an embeddings .npz: expected arrays 'vectors' and "
                    f"'filenames', found {list(data.keys())[:5]}."
                )
            return Embeddings(
                vectors=torch.from_numpy(data["vectors"]),
                filenames=_npz_filenames(data),
                labels=data.get("labels"),
                class_names=data["class_names"].tolist() if "class_names" in data else None,
                name=str(data["name"]) if "name" in data else path.stem,
                meta=json.loads(str(data["meta"])) if "meta" in data else {},
            )
    except EmbeddingsError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/format errors of a damaged file
        raise EmbeddingsError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}).") from None


def load_embeddings(path: str | os.PathLike[str]) -> Embeddings:
    """Load embeddings saved as .pt, .npy (+ .json sidecar) or .npz, or a folder of shards (`embed_to_shards`);
    clear error for missing/foreign files."""
    path = Path(path)
    if path.is_dir() and (path / "manifest.json").is_file():  # a folder of shards (embed_to_shards)
        from embedlab.embedding.shards import load_shards

        return load_shards(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise EmbeddingsError(f"cannot load embeddings from {path}: expected a {', '.join(SAVE_FORMATS)} file")
    if not path.is_file():
        raise EmbeddingsError(
            f"embeddings file not found: {path}. Run the embedding step (notebook 03 / "
            f"embedlab.embed(...).save(path)) first."
        )
    return {".pt": _load_pt, ".npy": _load_npy, ".npz": _load_npz}[suffix](path)
