"""`embed`: every image of a folder through a backbone (or the raw-pixel PCA baseline), as `Embeddings`."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlab._progress import tqdm
from embedlab.embedding.images import FolderImages, _batches, _class_info, _dataset, _loader, _report_skipped
from embedlab.embedding.store import Embeddings, EmbeddingsError
from embedlab.runtime import autocast_dtype, device_precision, resolve_device, tune_for_gpu


class _Normalize(torch.nn.Module):
    """uint8 NHWC batch -> float NCHW (channels_last), scaled to [0, 1], ImageNet-normalised, all at once."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(x / 255 - mean) / std without a per-image pass."""
        x = x.permute(0, 3, 1, 2)  # an NHWC buffer viewed as NCHW is channels_last already
        return (x.float() * self.scale - self.shift).contiguous(memory_format=torch.channels_last)


def _resolve_model(model: Any, weights: str | None) -> tuple[Any, str]:
    """The backbone (`models.resolve_backbone`: a name, run directory, .ckpt / exported .pt or a Backbone) and the
    default name of its embedding set."""
    from embedlab.models import BACKBONES, Backbone, BackboneLoadError, resolve_backbone

    if isinstance(model, Backbone):
        return model, model.name
    try:
        backbone = resolve_backbone(model, weights)
    except BackboneLoadError as exc:
        if isinstance(model, (str, os.PathLike)) and Path(model).exists():
            raise  # the file is there but unusable: BackboneLoadError says why
        raise EmbeddingsError(str(exc)) from None
    if isinstance(model, str) and model in BACKBONES:
        return backbone, f"{model}_{weights or 'random'}"
    method = backbone.meta.get("method")
    return backbone, f"{method}_{backbone.name}" if method else Path(model).stem


def resolve_image_size(backbone: Any, image_size: int | None) -> int:
    """The size to embed at: explicit > stored with the model (training size) > 224; warn on a mismatch."""
    from embedlab.models import DEFAULT_IMAGE_SIZE

    stored = backbone.meta.get("image_size") if hasattr(backbone, "meta") else None
    if image_size is None:
        return int(stored or DEFAULT_IMAGE_SIZE)
    if stored and int(stored) != int(image_size):
        warnings.warn(
            f"{backbone.name} was trained at {stored} px but is embedded at {image_size} px; "
            f"a network sees objects at the scale it was trained on, so quality usually drops. "
            f"Leave image_size=None to use {stored}.",
            stacklevel=3,
        )
    return int(image_size)


def _inference_net(backbone: torch.nn.Module) -> torch.nn.Module:
    """uint8 NHWC batches in, vectors out: the backbone behind its input normalisation, in eval mode, channels_last
    (shared by `embed` and the sharded, Lightning-run `embed_to_shards`)."""
    from embedlab.transforms import normalization

    net = torch.nn.Sequential(_Normalize(*normalization(getattr(backbone, "name", None))), backbone)
    return net.eval().to(memory_format=torch.channels_last)


def _forward_all(
    backbone: torch.nn.Module,
    loader: Any,
    device: torch.device,
    *,
    total: int,
    compile: bool,
    progress: bool,
    desc: str,
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Run the backbone over all batches (inference mode, channels_last, autocast on CUDA only: `autocast_for`)."""
    was_training = backbone.training
    net = _inference_net(backbone).to(device)
    if device.type == "cuda":
        tune_for_gpu()
    try:
        return _run_batches(net, loader, device, total=total, compile=compile, progress=progress, desc=desc)
    finally:
        backbone.train(was_training)  # a caller's model (e.g. mid-training) gets its mode back


def _run_batches(
    net: torch.nn.Module, loader: Any, device: torch.device, *, total: int, compile: bool, progress: bool, desc: str
) -> tuple[torch.Tensor, list[int], list[str]]:
    """The inference loop of _forward_all: one forward per batch, vectors gathered on the CPU.

    Rows whose image failed to decode are dropped and appended to ``loader.dataset.skipped``.
    """
    skipped = loader.dataset.skipped
    run = torch.compile(net) if compile else net
    outputs, labels, filenames = [], [], []
    with (
        torch.inference_mode(),
        autocast_for(device),
        tqdm(total=total, unit="img", desc=desc, disable=not progress) as bar,
    ):
        for images, n, batch_labels, batch_files, errors in _batches(loader, loader.batch_size, compile):
            out = run(images.to(device, non_blocking=True))[:n]
            keep = [i for i in range(n) if not errors[i]]
            skipped.extend((batch_files[i], errors[i]) for i in range(n) if errors[i])
            outputs.append(out[keep].float().to("cpu") if len(keep) < n else out.float().to("cpu"))
            labels.extend(int(batch_labels[i]) for i in keep)
            filenames.extend(batch_files[i] for i in keep)
            bar.update(n)
    if not filenames:
        raise EmbeddingsError(
            "no images to embed (the dataset is empty)"
            if not skipped
            else f"none of the {len(skipped)} images could be decoded, e.g. {skipped[0][1]}"
        )
    return torch.cat(outputs), labels, filenames


def autocast_for(device: torch.device) -> Any:
    """The autocast of embedding on `device`: the dtype the one precision rule (runtime.resolve_precision) gives it,
    bf16 from compute capability 8.0, fp16 below (a T4); none on the CPU (bf16 is ~20x slower there)."""
    dtype = autocast_dtype(device_precision(device))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _labeled(dataset: FolderImages, labels: list[int]) -> dict[str, Any]:
    """The labels and class names of an Embeddings, or None for both when the folder is unlabeled."""
    class_names, labeled = _class_info(dataset)
    return {"labels": np.asarray(labels) if labeled else None, "class_names": class_names if labeled else None}


def embed(
    data: Any,
    model: Any = "resnet18",
    *,
    weights: str | None = "imagenet",
    image_size: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    num_workers: int | str = "auto",
    limit: int | None = None,
    name: str | None = None,
    progress: bool = True,
    compile: bool = False,
    verify: str = "header",
) -> Embeddings:
    """Embed every image of a folder/ImageFolder with a named backbone, checkpoint, exported backbone or Backbone.

    image_size None uses the size stored with the checkpoint/exported backbone (its training size), else 224.
    weights applies to a backbone name only ("imagenet" or None for random init). limit = images per class.
    compile=True runs torch.compile (worth it for large jobs: ~2x on CPU at 224 px; slow to start).
    Files that cannot be used (not images, over the pixel budget, damaged: found by ``verify="header"`` when the
    folder is read, ``"full"`` decodes every file first, or while embedding) get no vector: they are warned
    about and listed in ``meta["skipped_images"]`` (and saved beside the embeddings as <name>.skipped.json).
    """
    backbone, default_name = _resolve_model(model, weights)
    size = resolve_image_size(backbone, image_size)
    dev = resolve_device(device)
    dataset = _dataset(data, size, limit, verify)
    loader = _loader(dataset, batch_size, dev, num_workers)
    name = name or default_name
    start = time.perf_counter()
    vectors, labels, filenames = _forward_all(
        backbone, loader, dev, total=len(dataset), compile=compile, progress=progress, desc=f"embed {name}"
    )
    seconds = time.perf_counter() - start
    meta = {
        "model": str(model) if not hasattr(model, "name") else model.name,
        "backbone": backbone.name,
        "weights": backbone.weights,
        "image_size": size,
        "embedding_dim": int(vectors.shape[1]),
        "device": str(dev),
        "batch_size": batch_size,
        "num_workers": loader.num_workers,
        "compile": compile,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(vectors) / seconds, 2),
        "data_root": str(dataset.root),
        "skipped_images": _report_skipped(dataset.skipped, dataset.root),
        **{k: v for k, v in backbone.meta.items() if k in ("method", "augment", "epoch", "source", "teacher_of")},
    }
    return Embeddings(vectors=vectors, filenames=filenames, name=name, meta=meta, **_labeled(dataset, labels))


def _pixels(
    dataset: FolderImages, batch_size: int, desc: str, progress: bool
) -> tuple[np.ndarray, list[int], list[str]]:
    """Every decodable image as a row of [0, 1] pixel values (undecodable ones go to `dataset.skipped`)."""
    loader = _loader(dataset, batch_size, torch.device("cpu"), 0)
    rows, labels, filenames = [], [], []
    for images, batch_labels, batch_files, errors in tqdm(loader, desc=desc, disable=not progress):
        keep = [i for i, error in enumerate(errors) if not error]
        dataset.skipped.extend((batch_files[i], errors[i]) for i, error in enumerate(errors) if error)
        rows.append(images[keep].reshape(len(keep), -1).float().div_(255.0).numpy())
        labels.extend(int(batch_labels[i]) for i in keep)
        filenames.extend(batch_files[i] for i in keep)
    if not filenames:
        example = dataset.skipped[0][1] if dataset.skipped else "the dataset is empty"
        raise EmbeddingsError(f"none of the {len(dataset)} images could be decoded, e.g. {example}")
    return np.concatenate(rows), labels, filenames


def _check_spread(pixels: np.ndarray, root: Any) -> None:
    """PCA of one image, or of images that are all the same, gives only zero vectors: refuse it, saying why."""
    if len(pixels) < 2 or not np.ptp(np.asarray(pixels).reshape(len(pixels), -1), axis=0).any():
        what = f"{len(pixels)} usable image" if len(pixels) < 2 else f"{len(pixels)} images that are all identical"
        raise EmbeddingsError(
            f"{root} holds {what}: PCA would give every image a zero vector; use at least 2 different images "
            "or a backbone (model='resnet18', --model resnet18)"
        )


def embed_pca(
    data: Any,
    *,
    dimensions: int = 50,
    image_size: int = 32,
    limit: int | None = None,
    seed: int = 0,
    name: str = "pca",
    batch_size: int = 256,
    progress: bool = True,
    verify: str = "header",
) -> Embeddings:
    """Raw-pixel baseline: resize/center-crop to image_size, flatten, PCA to `dimensions` (fewer if N or D is).

    Unusable files are skipped and reported as in embed().
    """
    from embedlab.projection import reduce_pca

    dataset = _dataset(data, image_size, limit, verify)
    start = time.perf_counter()
    pixels, labels, filenames = _pixels(dataset, batch_size, f"load pixels for {name}", progress)
    _check_spread(pixels, dataset.root)
    vectors, explained = reduce_pca(pixels, dimensions, seed=seed)
    seconds = time.perf_counter() - start
    meta = {
        "model": "pca",
        "image_size": image_size,
        "embedding_dim": int(vectors.shape[1]),
        "seed": seed,
        "explained_variance": round(explained, 4),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(vectors) / max(seconds, 1e-9), 2),
        "data_root": str(dataset.root),
        "skipped_images": _report_skipped(dataset.skipped, dataset.root),
    }
    return Embeddings(
        vectors=torch.from_numpy(vectors), filenames=filenames, name=name, meta=meta, **_labeled(dataset, labels)
    )
