"""Make a notebook's missing inputs on the spot, so every notebook also runs alone in a fresh, empty runtime.

Notebooks find each other's results in the run directory. Opened on its own (a Colab badge gives a fresh
runtime), a notebook finds nothing there: these functions make what is missing with the notebook's own
parameters, and say what they do and how long it takes. Each returns at once when the input already exists.

    root = ensure_dataset(p)                         # notebook 01's dataset (prepared now if missing)
    model = load_backbone(ensure_backbone(p))        # notebook 02's model (a short training if missing)
    embeddings = ensure_embeddings(p, "ssl", "imagenet")   # notebook 03's embeddings

With a `pretrained_url` parameter (an http(s) address or a local file), a missing model or embedding set comes from
a results archive (made with `pack_run` / `embedlab pack`, fetched with the resumable, checked download of
embedlab.datasets) instead of being computed; the archive's thumbnails stand in for the images, so notebooks 04-06
run from it without preparing the dataset. Only a cell that needs every full-size image prepares the dataset.
The archive defines what is compared: a set it lacks (it was made with other settings) is left out in one line
naming the settings that differ, never made from a dataset download; and its finished model replaces a
half-trained export left in run_dir by an interrupted training, saying so.

This module sits above the stages it calls (datasets, models, training, embedding) and below the pipeline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from embedlab.rundir import ARCHIVED_THUMBNAILS, PUBLISHED, RunDir
from embedlab.settings import EmbedSettings, TrainSettings

if TYPE_CHECKING:
    from embedlab.course.params import NotebookParams
    from embedlab.embedding import Embeddings

EMBEDDING_NAMES = ("ssl", "imagenet", "random", "pca")
CONCATENATION = "imagenet+pca"  # the off-the-shelf concatenation baseline: its parts' names joined by "+"


def _say(message: str) -> None:
    """Tell the learner what is being made and why (one line in the notebook's output)."""
    print(message, flush=True)


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

    root = p.run.recorded_root()
    if root is not None:
        return root
    cached = p.run.recorded_thumbnails()
    if cached is not None and p.run.dataset_info.is_file() and p.run.dataset_record().get("root"):
        _say(f"The dataset is not on this machine (a fresh runtime?): using its thumbnails in {cached}.")
        return cached
    data = p.data
    _say(
        f"No dataset recorded in {p.run.root} (notebook 01 makes it): preparing {data.dataset!r} now — "
        f"{dataset_plan(p)}."
    )
    root = prepare(data.dataset, data.data_dir, limit=data.limit_per_class)
    report = make_thumbnails(root, data.thumbnail_size, out_root=p.thumbnail_dir(root))
    p.run.record_dataset(root, dataset=data.dataset, thumbnail_size=data.thumbnail_size, thumbnails=report.out_root)
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


ARCHIVE_THUMBNAIL_LIMIT = 64 * 2**20  # bytes of thumbnails an archive carries at most (a few MB for the demo)


def _thumbnail_files(run: RunDir) -> tuple[Path | None, list[Path]]:
    """The run's complete thumbnail cache and its files, or (None, []) without one or when it is over the limit."""
    folder = run.recorded_thumbnails()
    if folder is None:
        return None, []
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
    if sum(f.stat().st_size for f in files) > ARCHIVE_THUMBNAIL_LIMIT:
        return None, []
    return folder, files


def pack_run(run_dir: str | Path, archive: str | Path | None = None) -> Path:
    """Zip a finished run's results for `pretrained_url`: exported model, embeddings, 2-D maps, config, metrics and
    the thumbnails (when they fit in ARCHIVE_THUMBNAIL_LIMIT). Default archive: the run's results.zip."""
    import zipfile

    from embedlab._io import atomic_path

    run = RunDir(Path(run_dir).resolve())
    if not run.exported.is_file():
        missing = run.exported.relative_to(run.root).as_posix()
        raise FileNotFoundError(f"{run.root} has no {missing}: train the model (notebook 02) before packing")
    target = Path(archive) if archive is not None else run.results_archive
    skip = {run.dataset_info, run.archived_thumbnails}
    files = sorted(
        f
        for part in PUBLISHED
        if run.root / part not in skip
        for f in ([run.root / part] if (run.root / part).is_file() else (run.root / part).rglob("*"))
        if f.is_file()
    )
    thumbs, thumb_files = _thumbnail_files(run)
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.relative_to(run.root).as_posix())
        for f in thumb_files:
            zf.write(f, f"{ARCHIVED_THUMBNAILS}/{f.relative_to(thumbs).as_posix()}")
        info = {"dataset": run.dataset_record().get("dataset"), "root": None, "archived_thumbnails": bool(thumb_files)}
        zf.writestr(run.dataset_info.name, json.dumps(info, indent=1))
    return target


def fetch_pretrained(p: NotebookParams, replace: tuple[str, ...] = ()) -> bool:
    """Unpack the results archive at p["pretrained_url"] (an http(s) address or a local file) into run_dir,
    existing files kept except those under the `replace` paths; False when the notebook has none."""
    import shutil

    from embedlab._io import atomic_path
    from embedlab.datasets import download, extract
    from embedlab.datasets.archives import RESULTS_ARCHIVE_LIMITS

    url = p.declared.get("pretrained_url")
    if not url:
        return False
    local = not str(url).startswith(("http://", "https://"))
    name = str(url).rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "pretrained.zip"
    _say(f"Using the published results in {url} instead of computing them (no dataset needed for them).")
    archive = Path(url).expanduser() if local else download(url, p.run.root / "downloads" / name)
    if not archive.is_file():
        raise FileNotFoundError(f"pretrained_url: no results archive at {archive} (a path on Drive: is it mounted?)")
    folder = extract(archive, _unpacked(p), limits=RESULTS_ARCHIVE_LIMITS)
    for source in sorted(f for f in folder.rglob("*") if f.is_file()):
        relative = source.relative_to(folder)
        target = p.run.root / relative
        replaced = any(relative.as_posix().startswith(part) for part in replace)
        if relative.parts[0] in PUBLISHED and (replaced or not target.exists()):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    return True


def _unpacked(p: NotebookParams) -> Path:
    """Where the results archive of pretrained_url is unpacked inside the run."""
    return p.run.root / "downloads" / "pretrained"


def _stopped_at(run: RunDir) -> int | None:
    """The step at which the run's exported backbone was saved by an interrupted training (half-trained), else None."""
    from embedlab.models import sidecar_path

    try:
        meta = json.loads(sidecar_path(run.exported).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta.get("stopped_at_step") if isinstance(meta, dict) else None


def _prefer_archive(p: NotebookParams) -> None:
    """A half-trained export in run_dir gives way to pretrained_url's finished model (and its "ssl" set), saying so."""
    stopped = _stopped_at(p.run) if p.run.exported.is_file() and p.declared.get("pretrained_url") else None
    if stopped is not None:
        _say(f"run_dir holds a half-trained model (training stopped at step {stopped}): the finished model of "
             f"pretrained_url replaces it, with its 'ssl' embeddings.")  # fmt: skip
        fetch_pretrained(p, replace=("exported/", "embeddings/ssl."))


def _archive_differences(p: NotebookParams) -> list[tuple[str, object, object]]:
    """(setting, the archive's value, this notebook's value) for each setting that made the unpacked archive's
    sets and differs here: the dataset, the ImageNet model and its input sizes."""
    from embedlab.embedding import load_embeddings

    folder, settings = _unpacked(p), p.embed or EmbedSettings()
    try:
        dataset = json.loads((folder / p.run.dataset_info.name).read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError):
        dataset = None
    names = sorted(f.stem for f in (folder / "embeddings").glob("imagenet*.pt") if "+" not in f.stem)
    metas = {name: load_embeddings(folder / "embeddings" / f"{name}.pt").meta or {} for name in names}
    sizes = sorted(int(m["image_size"]) for m in metas.values() if m.get("image_size"))
    model = (metas.get("imagenet") or {}).get("backbone")
    several = "imagenet_image_sizes" in p.declared
    found = {
        "dataset": (dataset, p.data.dataset),
        "imagenet_model": (model, settings.imagenet_model),
        "imagenet_image_sizes" if several else "imagenet_image_size": (
            sizes if several else (sizes or [None])[-1],
            sorted(imagenet_sizes(p)) if several else max(imagenet_sizes(p)),
        ),
    }
    return [(name, theirs, ours) for name, (theirs, ours) in found.items() if theirs is not None and theirs != ours]


def _within_archive(p: NotebookParams, missing: list[str]) -> list[str]:
    """The sets still missing after the archive was unpacked that are made without the dataset (a concatenation of
    saved parts); the others are left out in one line naming the settings that differ: the archive defines what is
    compared, and no dataset is downloaded for it."""
    parts_saved = {n: all(p.run.embedding(part).is_file() for part in n.split("+")) for n in missing}
    makeable = [n for n in missing if n == CONCATENATION and parts_saved[n]]
    skipped = [n for n in missing if n not in makeable]
    if skipped:
        differs = "; ".join(f"{n}: {a!r} in the archive, {b!r} here" for n, a, b in _archive_differences(p))
        why = f"the archive was made with other settings ({differs})" if differs else "the archive has no such sets"
        _say(f"pretrained_url: {why}: comparing the archive's sets without {', '.join(map(repr, skipped))}, no "
             f"dataset download (pretrained_url=None makes them from the dataset).")  # fmt: skip
    return makeable


def ensure_images(p: NotebookParams, image_size: int = 64) -> Path:
    """A folder of the run's images for pictures and maps: the dataset's (thumbnails when big enough), or the
    thumbnails of a results archive; the dataset is prepared only when neither is there."""
    if not p.run.has_images():
        fetch_pretrained(p)
    if not p.run.has_images():
        ensure_dataset(p)
    return p.run.image_root(image_size)


def ensure_backbone(p: NotebookParams) -> Path:
    """The run's exported backbone: notebook 02's, else the published one (pretrained_url), else a short training."""
    from embedlab.datasets import ImageFolder
    from embedlab.training import train

    _prefer_archive(p)
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
    """Embed the run's images as notebook 03 does for `name` (ssl, imagenet, random, pca, ...); the concatenation
    "imagenet+pca" is made from the saved sets it names, without embedding the images again."""
    import torch

    from embedlab.embedding import embed, embed_pca
    from embedlab.models import create_backbone, load_backbone

    sizes = imagenet_sizes(p)
    if name not in comparison_sets(p):
        raise ValueError(f"no recipe for embedding set {name!r}; notebook 03 makes {', '.join(comparison_sets(p))}")
    if name == CONCATENATION:
        return _concatenation(p, name)
    settings = p.embed or EmbedSettings()
    root = ensure_dataset(p)
    if name.startswith("imagenet"):  # "imagenet" is the largest size, "imagenet-64" another (as notebook 03 names)
        size = max(sizes) if name == "imagenet" else int(name.rsplit("-", 1)[1])
        return embed(
            p.run.image_root(size),
            settings.imagenet_model,
            weights="imagenet",
            image_size=size,
            name=name,
            **settings.loader_args(),
        )
    if name == "teacher":
        from embedlab.methods.distillation import teacher_backbone

        teacher, size = teacher_row(p)  # type: ignore[misc] - comparison_sets lists "teacher" only when there is one
        return embed(
            p.run.image_root(size), teacher_backbone(teacher), image_size=size, name=name, **settings.loader_args()
        )
    model = load_backbone(ensure_backbone(p))
    size = int(model.meta["image_size"])
    if name == "pca":
        return embed_pca(root, dimensions=settings.pca_dimensions, image_size=size, seed=settings.seed, name=name)
    if name == "random":
        torch.manual_seed(settings.seed)
        model = create_backbone(model.name, None, small_images=model.small_images, layers=model.layers)
    return embed(p.run.image_root(size), model, image_size=size, name=name, **settings.loader_args())


def _concatenation(p: NotebookParams, name: str) -> Embeddings:
    """The parts named in `name` ("imagenet+pca": the ImageNet model at its largest size and the raw-pixel PCA),
    read from the run (made first only when missing), each centred and L2-normalised, then concatenated."""
    from embedlab.embedding import concatenate_embeddings, load_embeddings

    parts = {}
    for part in name.split("+"):
        path = p.run.embedding(part)
        parts[part] = load_embeddings(path) if path.is_file() else make_embedding(p, part)
    return concatenate_embeddings(parts, name=name)


def imagenet_sizes(p: NotebookParams) -> tuple[int, ...]:
    """The input sizes the notebook embeds the ImageNet model at: its imagenet_image_sizes, else its one
    imagenet_image_size (notebooks 04-06 declare one size, notebook 03 and 05 a list)."""
    settings = p.embed or EmbedSettings()
    if "imagenet_image_sizes" in p.declared:
        return tuple(settings.imagenet_image_sizes)
    return (settings.imagenet_image_size,)


def teacher_row(p: NotebookParams) -> tuple[str, int] | None:
    """(teacher, input size) when the run's model was distilled from a teacher that is not already one of the
    ImageNet rows (DINOv2 for the `full` preset): notebook 03 embeds it as a baseline. None otherwise."""
    from embedlab.models import sidecar_path

    meta_path = sidecar_path(p.run.exported)
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if meta.get("method") != "distillation" or not meta.get("teacher"):
        return None
    teacher, size = str(meta["teacher"]), int(meta.get("teacher_image_size") or 224)
    settings = p.embed or EmbedSettings()
    if teacher == settings.imagenet_model and size in imagenet_sizes(p):
        return None
    return teacher, size


def comparison_sets(p: NotebookParams) -> tuple[str, ...]:
    """Every embedding set notebook 03 makes for these parameters: the trained model, the ImageNet model at each
    size ("imagenet" the largest, "imagenet-<px>" the others), the distillation teacher when it is not one of those
    (`teacher_row`), the floors (random init, raw-pixel PCA), and last "imagenet+pca", the concatenation of the
    saved "imagenet" and "pca" sets: the best baseline a user can build without training."""
    sizes = sorted(imagenet_sizes(p))
    teacher = ("teacher",) if teacher_row(p) else ()
    return ("ssl", "imagenet", *(f"imagenet-{s}" for s in sizes[:-1]), *teacher, "random", "pca", CONCATENATION)


def ensure_embeddings(p: NotebookParams, *needed: str) -> dict[str, Embeddings]:
    """Every embedding set of the run, loaded; the `needed` ones fetched from the results archive or made now (as
    notebook 03 would) when missing. Without `needed`: every set notebook 03 makes (`comparison_sets`). With
    pretrained_url, the archive's sets are what is compared: one it lacks is left out, naming the settings that
    differ, rather than made from a dataset download."""
    from embedlab.embedding import load_embeddings

    _prefer_archive(p)
    needed = needed or comparison_sets(p)
    missing = [name for name in needed if not p.run.embedding(name).is_file()]
    if missing and fetch_pretrained(p):
        missing = _within_archive(p, [name for name in missing if not p.run.embedding(name).is_file()])
    for name in missing:
        how = (
            f"concatenating the saved {' and '.join(map(repr, name.split('+')))} sets now (seconds)"
            if name == CONCATENATION
            else "embedding the images now (the bar shows the time left)"
        )
        _say(f"No {name!r} embeddings in {p.run.root} (notebook 03 makes them): {how}.")
        make_embedding(p, name).save(p.run.embedding(name))
    return {name: load_embeddings(p.run.embedding(name)) for name in p.run.embedding_names()}
