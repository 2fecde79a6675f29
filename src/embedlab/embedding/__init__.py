"""Embed every image of a dataset with a backbone (or a raw-pixel PCA baseline); save and load the result.

`embed(...)` returns an `Embeddings` object: one float32 vector per image, with the image's filename (relative to
the dataset root, "<class>/<file>"), its label and the class names. One file per concern:

============  ==========================================================================================
store.py      Embeddings, EmbeddingsError, save_embeddings / load_embeddings (.pt, .npy + .json, .npz)
images.py     the images embed reads (decoded, resized, centre-cropped, batched), embedding_transform
inference.py  embed (a backbone over every image) and embed_pca (the raw-pixel baseline)
combine.py    concatenate_embeddings (sets of the same images, centred, L2-normalised, side by side)
shards.py     embed_to_shards (a folder streamed to fixed-size shards, resumable), iter_shards, load_shards
============  ==========================================================================================

Every public name is re-exported here (``from embedlab.embedding import embed``).
"""

from __future__ import annotations

from embedlab.embedding.combine import concatenate_embeddings
from embedlab.embedding.images import FolderImages, embedding_transform, open_image, resize_crop
from embedlab.embedding.inference import embed, embed_pca, resolve_image_size
from embedlab.embedding.shards import embed_to_shards, iter_shards, load_shards
from embedlab.embedding.store import (
    SAVE_FORMATS,
    Embeddings,
    EmbeddingsError,
    load_embeddings,
    npy_sidecar,
    save_embeddings,
    skipped_path,
)
from embedlab.runtime import resolve_device  # the one device resolver; still importable here (the CLI uses it)

__all__ = [
    "SAVE_FORMATS",
    "Embeddings",
    "EmbeddingsError",
    "FolderImages",
    "concatenate_embeddings",
    "embed",
    "embed_pca",
    "embed_to_shards",
    "embedding_transform",
    "iter_shards",
    "load_embeddings",
    "load_shards",
    "npy_sidecar",
    "open_image",
    "resize_crop",
    "resolve_image_size",
    "save_embeddings",
    "skipped_path",
]
_ = resolve_device  # kept importable as embedlab.embedding.resolve_device (src/embedlab/cli/data.py, cli/embed.py)
