"""Embed every image of a dataset with a backbone (or a raw-pixel PCA baseline); save and load the result.

`embed(...)` returns an `Embeddings` object: one float32 vector per image, with the image's filename (relative to
the dataset root, "<class>/<file>"), its label and the class names. Files: `.pt` (a dict with `embeddings` and
`filenames`, loadable with `torch.load(path, weights_only=True)`, like LightlyTrain's), `.npy` (the vectors; the
other fields in a `.json` sidecar next to it) and `.npz` (everything, optionally compressed).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlab._io import atomic_open, atomic_path, remove_stale_temps, write_json
from embedlab._progress import tqdm

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
    """Write embeddings atomically; format by suffix: .pt, .npy (+ .json sidecar), .npz (compress optional)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise EmbeddingsError(f"cannot save embeddings to {path}: use a {', '.join(SAVE_FORMATS)} suffix")
    if path.parent.is_dir():  # leftovers of an earlier save of this file that was killed mid-write
        remove_stale_temps(path.parent, recursive=False, prefix=f".{path.name}.")
    _write_skipped(emb, skipped_path(path))
    if suffix == ".pt":
        labels = None if emb.labels is None else torch.from_numpy(emb.labels.copy())
        payload = {**_fields(emb), "embeddings": emb.vectors.contiguous(), "labels": labels}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    elif suffix == ".npy":
        with atomic_open(path, "wb") as handle:  # a handle: np.save would append ".npy" to the temp name
            np.save(handle, emb.numpy())
        write_json(npy_sidecar(path), {"format": "embedlab-embeddings", "vectors": path.name, **_fields(emb)})
    else:
        arrays: dict[str, np.ndarray] = {
            "vectors": emb.numpy(),
            "filenames": np.asarray(emb.filenames, dtype=str),
            "name": np.asarray(emb.name),
            "meta": np.asarray(json.dumps(_plain(emb.meta))),
        }
        if emb.labels is not None:
            arrays["labels"] = emb.labels
        if emb.class_names is not None:
            arrays["class_names"] = np.asarray(emb.class_names, dtype=str)
        with atomic_open(path, "wb") as handle:
            (np.savez_compressed if compress else np.savez)(handle, **arrays)
    return path


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


def _load_npz(path: Path) -> Embeddings:
    """Read an .npz written by save_embeddings (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "vectors" not in data or "filenames" not in data:
                raise EmbeddingsError(
                    f"{path} is not an embeddings .npz: expected arrays 'vectors' and "
                    f"'filenames', found {list(data.keys())[:5]}."
                )
            return Embeddings(
                vectors=torch.from_numpy(data["vectors"]),
                filenames=data["filenames"].tolist(),
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
    """Load embeddings saved as .pt, .npy (+ .json sidecar) or .npz; clear error for missing/foreign files."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise EmbeddingsError(f"cannot load embeddings from {path}: expected a {', '.join(SAVE_FORMATS)} file")
    if not path.is_file():
        raise EmbeddingsError(
            f"embeddings file not found: {path}. Run the embedding step (notebook 03 / "
            f"embedlab.embed(...).save(path)) first."
        )
    return {".pt": _load_pt, ".npy": _load_npy, ".npz": _load_npz}[suffix](path)


# ------------------------------------------------------------------------------------------------ embedding


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as torch.device, checked to exist on this machine."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise EmbeddingsError(f"device {device!r} is not a device name: use auto, cpu, cuda, cuda:1, mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            have = f"cuda:0 to cuda:{count - 1}" if count else "no CUDA GPU: use cpu or auto"
            raise EmbeddingsError(f"device {device!r} is not on this machine ({have})")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EmbeddingsError(f"device {device!r} is not available here: use cpu or auto")
    return dev


def resize_crop(image: Any, size: int) -> Any:
    """torchvision's Resize(size) + CenterCrop(size) on a PIL image, skipping the steps that change nothing."""
    from PIL import Image

    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short != size:
        new_short, new_long = size, int(size * long / short)
        w, h = (new_short, new_long) if w <= h else (new_long, new_short)
        image = image.resize((w, h), Image.BILINEAR)
    if (w, h) != (size, size):
        top, left = round((h - size) / 2.0), round((w - size) / 2.0)
        image = image.crop((left, top, left + size, top + size))
    return image


def open_image(path: str | os.PathLike[str], size: int) -> Any:
    """Decode an image as RGB within the pixel budget; a big JPEG decodes at a reduced scale still >= size (PIL
    draft: 2-3x faster); an extreme aspect ratio is center-cropped first (see embedlab.datasets.open_rgb)."""
    from embedlab.datasets import open_rgb

    return open_rgb(path, size)


class FolderImages(torch.utils.data.Dataset):
    """(uint8 [S, S, 3] tensor, label, filename) for chosen images of an ImageFolder: the lean loader of embed()."""

    def __init__(self, folder: Any, size: int, indices: list[int] | None = None) -> None:
        chosen = range(len(folder.filenames)) if indices is None else indices
        self.root = Path(folder.root)
        self.size = size
        self.filenames = [folder.filenames[i] for i in chosen]
        self.labels = [int(folder.labels[i]) for i in chosen]
        self.classes = list(folder.classes)
        self.labeled = bool(getattr(folder, "labeled", True))
        self.skipped: list[tuple[str, str]] = list(getattr(folder, "skipped", []))  # found when the folder was read

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str, str]:
        """(image, label, filename, error): decoded, resized + center-cropped, HWC uint8 (normalised per batch on
        the device). A file that fails to decode gives a blank image and the reason as ``error`` ("" when fine):
        the embedding loop drops such rows and reports them, so no image ever gets a silent zero vector."""
        from embedlab.datasets import DatasetError

        filename = self.filenames[index]
        try:
            image = resize_crop(open_image(self.root / filename, self.size), self.size)
        except DatasetError as exc:
            blank = torch.zeros((self.size, self.size, 3), dtype=torch.uint8)
            return blank, self.labels[index], filename, " ".join(str(exc).split())
        return torch.from_numpy(np.array(image, dtype=np.uint8)), self.labels[index], filename, ""


def embedding_transform(image_size: int, backbone: Any = None) -> Callable[[Any], torch.Tensor]:
    """PIL image -> normalised float tensor: Resize + CenterCrop + ToTensor + ImageNet Normalize (for one image)."""
    from torchvision import transforms

    from embedlab.models import normalization

    mean, std = normalization(backbone)
    return transforms.Compose(
        [
            transforms.Resize(image_size),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


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


def _dataset(data: Any, size: int, limit: int | None, verify: str = "header") -> FolderImages:
    """The images to embed: a dataset folder path or an embedlab ImageFolder (its own transform is not used)."""
    from embedlab.datasets import ImageFolder

    if isinstance(data, (str, os.PathLike)):
        return FolderImages(ImageFolder(data, limit_per_class=limit, verify=verify), size)
    if not all(hasattr(data, a) for a in ("root", "filenames", "labels", "classes")):
        raise EmbeddingsError(f"data must be a dataset folder or an embedlab ImageFolder, not {type(data).__name__}")
    if limit is None:
        return FolderImages(data, size)
    taken: dict[int, int] = {}
    indices = []
    for i, label in enumerate(data.labels):  # the first `limit` images of each class, in order
        if taken.get(label, 0) < limit:
            taken[label] = taken.get(label, 0) + 1
            indices.append(i)
    return FolderImages(data, size, indices)


def _resolve_model(model: Any, weights: str | None) -> tuple[Any, str]:
    """Backbone from a name, a .ckpt / exported .pt path, or an existing Backbone; plus a default name."""
    from embedlab import models

    if isinstance(model, models.Backbone):
        return model, model.name
    if isinstance(model, str) and model in models.BACKBONE_NAMES:
        return models.create_backbone(model, weights), f"{model}_{weights or 'random'}"
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise EmbeddingsError(
                f"model {str(model)!r} is neither a backbone name "
                f"({', '.join(models.BACKBONE_NAMES)}) nor an existing file."
            )
        backbone = models.load_backbone(path)
        method = backbone.meta.get("method")
        return backbone, f"{method}_{backbone.name}" if method else path.stem
    raise EmbeddingsError(
        f"model must be a backbone name, a checkpoint/backbone path or a Backbone, not {type(model).__name__}"
    )


def resolve_image_size(backbone: Any, image_size: int | None) -> int:
    """The size to embed at: explicit > stored with the model (training size) > 224; warn on a mismatch."""
    from embedlab.models import DEFAULT_IMAGE_SIZE

    stored = backbone.meta.get("image_size") if hasattr(backbone, "meta") else None
    if image_size is None:
        return int(stored or DEFAULT_IMAGE_SIZE)
    if stored and int(stored) != int(image_size):
        warnings.warn(
            f"{backbone.name} was trained at {stored} px but is embedded at {image_size} px; "
            f"quality usually drops (measured: kNN 0.74 -> 0.60 for 64 px embedded at 224). "
            f"Leave image_size=None to use {stored}.",
            stacklevel=3,
        )
    return int(image_size)


def default_num_workers(device: torch.device) -> int:
    """DataLoader workers: several on GPU (decode must keep up); 0 on CPU where decoding is cheap next to compute."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, max(cpus - 1, 1)) if device.type == "cuda" else 0


def _loader(dataset: Any, batch_size: int, device: torch.device, num_workers: int | str) -> Any:
    """Ordered DataLoader; pinned memory and persistent workers on CUDA."""
    workers = default_num_workers(device) if num_workers == "auto" else int(num_workers)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )


def _batches(loader: Any, batch_size: int, pad: bool) -> Iterator[tuple[torch.Tensor, int, Any, list[str], list[str]]]:
    """(images, n_real, labels, filenames, errors) per batch; with pad, every batch is padded to batch_size."""
    for images, labels, filenames, errors in loader:
        n = len(images)
        if pad and n < batch_size:
            images = torch.cat([images, images[-1:].expand(batch_size - n, *images.shape[1:])])
        yield images, n, labels, list(filenames), list(errors)


def _report_skipped(skipped: list[tuple[str, str]], root: Any) -> list[dict[str, str]]:
    """Warn once about the images left out (count + examples) and return them for the embeddings' meta."""
    if skipped:
        from embedlab.datasets import DatasetWarning

        examples = "; ".join(f"{name} ({why[:120]})" for name, why in skipped[:3])
        warnings.warn(
            f"{root}: skipped {len(skipped)} file(s) that could not be used, e.g. {examples}. They have "
            "no vector; the list is in meta['skipped_images'] and, once saved, in <name>.skipped.json.",
            DatasetWarning,
            stacklevel=3,
        )
    return [{"filename": name, "reason": why} for name, why in skipped]


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
    """Run the backbone over all batches (inference mode, channels_last, bf16 autocast on CUDA only)."""
    from embedlab.models import normalization

    was_training = backbone.training
    net = torch.nn.Sequential(_Normalize(*normalization(getattr(backbone, "name", None))), backbone)
    net = net.to(device).eval().to(memory_format=torch.channels_last)
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
    cuda = device.type == "cuda"  # bf16 autocast on GPU only: on CPU it is ~20x slower here
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    outputs, labels, filenames = [], [], []
    with torch.inference_mode(), autocast, tqdm(total=total, unit="img", desc=desc, disable=not progress) as bar:
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


def _class_info(dataset: FolderImages) -> tuple[list[str] | None, bool]:
    """Class names and whether the labels mean anything (a folder of loose images is unlabeled)."""
    return (dataset.classes or None), dataset.labeled


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
    class_names, labeled = _class_info(dataset)
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
        **{k: v for k, v in backbone.meta.items() if k in ("method", "augment", "epoch", "source")},
    }
    return Embeddings(
        vectors=vectors,
        filenames=filenames,
        labels=np.asarray(labels) if labeled else None,
        class_names=class_names if labeled else None,
        name=name,
        meta=meta,
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
    from sklearn.decomposition import PCA

    dataset = _dataset(data, image_size, limit, verify)
    loader = _loader(dataset, batch_size, torch.device("cpu"), 0)
    rows, labels, filenames = [], [], []
    for images, batch_labels, batch_files, errors in tqdm(loader, desc=f"load pixels for {name}", disable=not progress):
        keep = [i for i, error in enumerate(errors) if not error]
        dataset.skipped.extend((batch_files[i], errors[i]) for i, error in enumerate(errors) if error)
        rows.append(images[keep].reshape(len(keep), -1).float().div_(255.0).numpy())
        labels.extend(int(batch_labels[i]) for i in keep)
        filenames.extend(batch_files[i] for i in keep)
    if not filenames:
        example = dataset.skipped[0][1] if dataset.skipped else "the dataset is empty"
        raise EmbeddingsError(f"none of the {len(dataset)} images could be decoded, e.g. {example}")
    pixels = np.concatenate(rows)
    components = max(1, min(dimensions, pixels.shape[0], pixels.shape[1]))
    pca = PCA(n_components=components, random_state=seed)
    vectors = pca.fit_transform(pixels).astype(np.float32)
    class_names, labeled = _class_info(dataset)
    meta = {
        "model": "pca",
        "image_size": image_size,
        "embedding_dim": components,
        "seed": seed,
        "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4),
        "data_root": str(dataset.root),
        "skipped_images": _report_skipped(dataset.skipped, dataset.root),
    }
    return Embeddings(
        vectors=torch.from_numpy(vectors),
        filenames=filenames,
        labels=np.asarray(labels) if labeled else None,
        class_names=class_names if labeled else None,
        name=name,
        meta=meta,
    )
