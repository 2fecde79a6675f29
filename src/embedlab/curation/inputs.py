"""The inputs of every curation function: vectors (Embeddings, array or tensor) checked, L2-normalised, chunked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from embedlab.embedding import Embeddings

#: How many similarities one chunk may hold (float32: 4 bytes each -> 128 MiB).
_CHUNK_ELEMENTS = 2**25

VectorsLike = Union["Embeddings", np.ndarray, torch.Tensor, Sequence[Sequence[float]]]
QueryLike = int | str | Path | Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor | Any


class CurationError(ValueError):
    """A curation input is unusable (empty, wrong shape, unknown filename, bad parameter)."""


# --------------------------------------------------------------------------------------------- inputs


def _vectors(data: VectorsLike) -> torch.Tensor:
    """Return the raw float32 [N, D] matrix of an Embeddings object or array-like."""
    raw = getattr(data, "vectors", data)
    if isinstance(raw, torch.Tensor):
        matrix = raw.detach().to("cpu", torch.float32)
    else:
        matrix = torch.as_tensor(np.asarray(raw, dtype=np.float32))
    if matrix.ndim != 2:
        raise CurationError(f"expected embeddings of shape [N, D], got shape {tuple(matrix.shape)}")
    if matrix.shape[0] == 0:
        raise CurationError("the embeddings are empty (0 rows): embed some images first")
    if not torch.isfinite(matrix).all():
        raise CurationError("the embeddings contain NaN or infinite values; re-embed the images")
    return matrix


def _normalized(data: VectorsLike) -> torch.Tensor:
    """Return the rows L2-normalized, so a dot product is the cosine similarity."""
    return torch.nn.functional.normalize(_vectors(data), dim=1)


def _filenames(data: VectorsLike) -> list[str] | None:
    """Return the filenames stored with the embeddings, if any."""
    names = getattr(data, "filenames", None)
    return list(names) if names is not None else None


def _labels(data: VectorsLike | np.ndarray | Sequence[int] | None) -> np.ndarray | None:
    """Return integer labels from an Embeddings object or an array, or None."""
    if data is None:
        return None
    raw = getattr(data, "labels", data) if hasattr(data, "vectors") else data
    if raw is None:
        return None
    return np.asarray(raw).astype(np.int64).reshape(-1)


def _chunk_rows(n_columns: int) -> int:
    """Rows per chunk so that one chunk of similarities stays within `_CHUNK_ELEMENTS`."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_columns))


def _check_k(k: int, available: int, what: str = "k") -> None:
    """Raise a clear error when `k` is not in 1..available."""
    if k < 1:
        raise CurationError(f"{what} must be at least 1, got {k}")
    if k > available:
        raise CurationError(f"{what}={k} is larger than the {available} candidate images; use a smaller {what}")


def center(data: VectorsLike) -> Any:
    """Subtract the mean vector, so cosine similarity measures how images differ rather than what they share.

    CNN features are non-negative (ReLU, then average pooling), so every pair of raw vectors has a high cosine
    similarity (often 0.8-0.99) and fixed thresholds mean little; centred vectors spread over the whole range.
    Returns an Embeddings copy (same filenames and labels) for an Embeddings input, else a float32 array.
    """
    matrix = _vectors(data)
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    if hasattr(data, "vectors") and hasattr(data, "filenames"):
        import copy

        result = copy.copy(data)
        result.vectors = centred
        meta = dict(getattr(data, "meta", {}) or {})
        meta["centered"] = True
        result.meta = meta
        return result
    return centred.numpy()
