"""Make a notebook's missing inputs on the spot, so every notebook also runs alone in a fresh, empty runtime.

Notebooks find each other's results in the run directory. Opened on its own (a Colab badge gives a fresh
runtime), a notebook finds nothing there: these functions make what is missing with the notebook's own
parameters, and say what they do and how long it takes. Each returns at once when the input already exists.

    root = ensure_dataset(p)                         # notebook 01's dataset (prepared now if missing)
    model = load_backbone(ensure_backbone(p))        # notebook 02's model (a short training if missing)
    embeddings = ensure_embeddings(p, "ssl", "imagenet")   # notebook 03's embeddings

With a `pretrained_url` parameter, a missing model or embedding set comes from a published run archive (made with
`pack_run`, fetched with the resumable, checked download of embedlab.datasets) instead of being computed.

This module sits above the stages it calls (datasets, models, training, embedding) and below the pipeline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from embedlab.rundir import PUBLISHED, RunDir
from embedlab.settings import EmbedSettings, TrainSettings

if TYPE_CHECKING:
    from embedlab.embedding import Embeddings
    from embedlab.params import NotebookParams

EMBEDDING_NAMES = ("ssl", "imagenet", "random", "pca")


def _say(message: str) -> None:
    """Tell the learner what is being made and why (one line in the notebook's output)."""
    print(message, flush=True)


def _recorded_root(p: NotebookParams) -> Path | None:
    """The dataset root notebook 01 recorded for this run, when it is still on disk."""
    if not p.run.dataset_info.is_file():
        return None
    root = Path(json.loads(p.run.dataset_info.read_text(encoding="utf-8"))["root"])
    return root if root.is_dir() else None


def dataset_plan(p: NotebookParams) -> str:
    """What preparing this notebook's dataset involves and about how long it takes, in one phrase."""
    from embedlab.datasets import DATASETS

    data = p.data
    spec = DATASETS.get(data.dataset)
    if spec is None:
        return f"checking your folder {data.dataset} and caching {data.thumbnail_size} px thumbnails"
    if spec.url is None:
        return "writing the embedded copy as PNG files: seconds"
    if (data.data_dir / spec.name / "raw").is_dir():
        return f"{spec.name} is already downloaded: checking it and caching thumbnails, a minute or less"
    return (
        f"downloading {spec.title} ({spec.image_format}): minutes, depending on the connection "
        f"(the bar shows the time left); then {data.thumbnail_size} px thumbnails"
    )


def ensure_dataset(p: NotebookParams) -> Path:
    """The run's dataset root: the one notebook 01 recorded, else prepared now (with thumbnails) and recorded."""
    from embedlab.datasets import make_thumbnails, prepare

    root = _recorded_root(p)
    if root is not None:
        return root
    data = p.data
    _say(
        f"No dataset recorded in {p.run.root} (notebook 01 makes it): preparing {data.dataset!r} now — "
        f"{dataset_plan(p)}."
    )
    root = prepare(data.dataset, data.data_dir, limit=data.limit_per_class)
    make_thumbnails(root, data.thumbnail_size)
    p.run.record_dataset(root, dataset=data.dataset, thumbnail_size=data.thumbnail_size)
    return root


def training_plan(p: NotebookParams, images: int) -> str:
    """What a fallback training run will do and its time cap, in one phrase."""
    t = p.train or TrainSettings()
    steps = t.epochs * max(images // max(min(t.batch_size, images), 1), 1)
    if t.max_steps is not None:
        steps = min(steps, t.max_steps)
    cap = (
        f", stopped after at most {math.ceil(t.max_time / 60)} minute(s)"
        if t.max_time
        else " (no time cap: set max_train_minutes in train_if_missing to bound it)"
    )
    return (
        f"{t.method} on a {t.backbone}, {t.epochs} epoch(s) over {images} images at {t.image_size} px "
        f"(up to {steps} steps){cap}"
    )


def pack_run(run_dir: str | Path, archive: str | Path) -> Path:
    """Zip a finished run's published part (exported model, embeddings, 2-D maps, config) for `pretrained_url`."""
    import zipfile

    from embedlab._io import atomic_path

    run = RunDir(Path(run_dir).resolve())
    root = run.root
    if not run.exported.is_file():
        missing = run.exported.relative_to(root).as_posix()
        raise FileNotFoundError(f"{root} has no {missing}: train the model (notebook 02) before packing")
    files = sorted(
        f
        for name in PUBLISHED
        for f in ([root / name] if (root / name).is_file() else (root / name).rglob("*"))
        if f.is_file()
    )
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.relative_to(root).as_posix())
    return Path(archive)


def fetch_pretrained(p: NotebookParams) -> bool:
    """Download and unpack the run archive at p["pretrained_url"] into run_dir (existing files kept); False if unset."""
    import shutil

    from embedlab._io import atomic_path
    from embedlab.datasets import download, extract

    url = p.declared.get("pretrained_url")
    if not url:
        return False
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "pretrained.zip"
    _say(
        f"Fetching the published model and embeddings from {url} instead of computing them "
        f"(the bar shows the time left)."
    )
    folder = extract(download(url, p.run.root / "downloads" / name), p.run.root / "downloads" / "pretrained")
    for source in sorted(f for f in folder.rglob("*") if f.is_file()):
        relative = source.relative_to(folder)
        target = p.run.root / relative
        if relative.parts[0] in PUBLISHED and not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    return True


def ensure_backbone(p: NotebookParams) -> Path:
    """The run's exported backbone: notebook 02's, else the published one (pretrained_url), else a short training."""
    from embedlab.datasets import ImageFolder
    from embedlab.training import train

    if p.run.exported.is_file() or (fetch_pretrained(p) and p.run.exported.is_file()):
        return p.run.exported
    if p.train is None:
        raise ValueError(f"notebook {p.notebook} has no training settings to make a model with")
    ensure_dataset(p)
    images = p.run.image_root(p.train.image_size)
    count = len(ImageFolder(images, limit_per_class=p.train.limit))
    _say(
        f"No trained model in {p.run.root} (notebook 02 makes it): training a short one first — "
        f"{training_plan(p, count)}. Notebook 02 trains a better one."
    )
    train(images, p.run.root, **p.train_args)
    return p.run.exported


def make_embedding(p: NotebookParams, name: str) -> Embeddings:
    """Embed the run's images as notebook 03 does for `name` (ssl, imagenet, random or pca)."""
    import torch

    from embedlab.embedding import embed, embed_pca
    from embedlab.models import create_backbone, load_backbone

    if name not in EMBEDDING_NAMES:
        raise ValueError(f"no recipe for embedding set {name!r}; notebook 03 makes {', '.join(EMBEDDING_NAMES)}")
    settings = p.embed or EmbedSettings()
    root = ensure_dataset(p)
    if name == "imagenet":
        return embed(
            root,
            settings.imagenet_model,
            weights="imagenet",
            image_size=max(settings.imagenet_image_sizes),  # notebook 03: `imagenet` is the largest size
            name=name,
            **settings.loader_args(),
        )
    model = load_backbone(ensure_backbone(p))
    size = int(model.meta["image_size"])
    if name == "pca":
        return embed_pca(root, dimensions=settings.pca_dimensions, image_size=size, seed=settings.seed, name=name)
    if name == "random":
        torch.manual_seed(settings.seed)
        model = create_backbone(model.name, None, small_images=model.small_images, layers=model.layers)
    return embed(p.run.image_root(size), model, image_size=size, name=name, **settings.loader_args())


def ensure_embeddings(p: NotebookParams, *needed: str) -> dict[str, Embeddings]:
    """Every embedding set of the run, loaded; the `needed` ones made now (as notebook 03 would) when missing."""
    from embedlab.embedding import load_embeddings

    ensure_dataset(p)  # the images: the notebooks show them next to the vectors
    missing = [name for name in needed if not p.run.embedding(name).is_file()]
    if missing and fetch_pretrained(p):
        missing = [name for name in missing if not p.run.embedding(name).is_file()]
    for name in missing:
        _say(
            f"No {name!r} embeddings in {p.run.root} (notebook 03 makes them): embedding the images now "
            f"(the bar shows the time left)."
        )
        make_embedding(p, name).save(p.run.embedding(name))
    return {name: load_embeddings(p.run.embedding(name)) for name in p.run.embedding_names()}
